"""`uer-ds bench finetune`: fine-tuning steps through the real engine on a real TSV, real tokens counted
apart from padding (on the CPU: the command and its accounting; speed is measured on a GPU)."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT, shared

sys.path.insert(0, str(ROOT / "tests" / "engine"))
from engine_utils import run_job  # noqa: E402


@pytest.mark.slow
@pytest.mark.usefixtures("deepspeed_ops")
def test_bench_finetune_counts_real_tokens_apart_from_padding(tmp_path):
    data = shared("datasets/test_data/book_review")
    out = tmp_path / "ft.json"
    proc = run_job([sys.executable, "-m", "uer_ds", "bench", "finetune", "--config_path", "bert/tiny",
                    "--vocab_path", str(shared("models/google_zh_vocab.txt")), "--train_path", str(data / "train.tsv"),
                    "--dev_path", str(data / "dev.tsv"), "--seq_length", "64", "--batch_size", "8", "--steps", "4",
                    "--warmup_steps", "1", "--deepspeed_config", "zero0", "--json_path", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "tokens_per_s" in proc.stdout and "padding" in proc.stdout
    result = json.loads(out.read_text())
    assert result["kernels"] == "auto" and result["steps"] == 4 and result["batch_size"] == 8
    # batches padded to their longest row: real tokens are the positions less the padding share
    assert 0.2 < result["padding"] < 0.95, result["padding"]
    assert result["tokens_per_s"] == pytest.approx(result["padded_positions_per_s"] * (1 - result["padding"]))
    assert result["samples_per_s"] * result["step_time_s"] == pytest.approx(8)


def test_synthetic_examples_follow_the_real_length_distribution(sample_vocab):
    """--synthetic_lengths (for a GPU machine without the data): rows that the classifier's own reader
    tokenizes to lengths drawn from book_review's histogram."""
    import numpy as np

    from uer_ds.kernels import lengths
    from uer_ds.tasks import TASKS
    from uer_ds.recipes.bench_finetune import synthetic_tsv
    from uer_ds.tokenizers import build_tokenizer

    tokenizer = build_tokenizer("bert", vocab_path=sample_vocab)
    path = synthetic_tsv(tokenizer, "book_review", 128, 3000, seed=0)
    read = [len(e.src) for e in TASKS["classifier"].read(path, tokenizer, 128, {}, True)]
    counts = lengths.load()["book_review"]["128"]["counts"]
    expected = sum(int(k) * v for k, v in counts.items()) / sum(counts.values())
    assert len(read) == 3000 and max(read) <= 128
    assert abs(np.mean(read) - expected) < 2.0, (np.mean(read), expected)
