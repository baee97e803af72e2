"""`uer-ds export onnx`: onnxruntime's probabilities equal PyTorch's within 1e-4 on a dev set, for a
transformer and a recurrent classifier (random weights; the export does not care how they were
trained)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import CORPORA
from uer_ds.cli import main
from uer_ds.config import ModelConfig
from uer_ds.tasks import TASKS, TaskModel
from uer_ds.tasks.data import pad
from uer_ds.tasks.model import load_task_model, write_task_dir
from uer_ds.tokenizers import build_tokenizer

ort = pytest.importorskip("onnxruntime")
VOCAB = CORPORA / "vocab.txt"
DEV = CORPORA / "reviews_cls" / "dev.tsv"


def make_task_dir(directory, overrides, pooling):
    tokenizer = build_tokenizer("bert", VOCAB)
    cfg = ModelConfig.from_json(overrides.pop("config"), dict(overrides, vocab_size=tokenizer.vocab_size))
    heads = {"classifier": {"labels_num": 3, "pooling": pooling, "soft": False, "pair": False}}
    torch.manual_seed(0)
    model = TaskModel(cfg, TASKS["classifier"].build_heads(cfg, heads))
    model.init_weights()
    info = {"task": "classifier", "heads": heads, "seq_length": 48,
            "tokenizer": {"kind": "bert", "do_lower_case": True, "vocab_path": str(VOCAB), **tokenizer.identity()}}
    write_task_dir(directory, model, model.state_dict(), info)
    return tokenizer


@pytest.mark.parametrize("name, overrides, pooling", [
    ("bert", {"config": "bert/tiny"}, "first"),
    ("lstm", {"config": "rnn/lstm", "emb_size": 32, "hidden_size": 32}, "mean"),
])
def test_onnx_probabilities_match_pytorch(tmp_path, capsys, name, overrides, pooling):
    model_dir, out = tmp_path / name, tmp_path / f"{name}.onnx"
    tokenizer = make_task_dir(model_dir, dict(overrides), pooling)
    assert main(["export", "onnx", "--load_model_path", str(model_dir), "--output", str(out),
                 "--check_path", str(DEV)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["examples"] == 150 and report["max_abs_prob_diff"] <= 1e-4 and out.is_file()

    # our own comparison, independent of the command's check: padded batches of real dev texts
    model, _ = load_task_model(model_dir, lambda c, i: TASKS["classifier"].build_heads(c, i["heads"]))
    examples = TASKS["classifier"].read(str(DEV), tokenizer, 48, {"labels_num": 3}, labelled=False)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for start in (0, 64, 128):
        batch = examples[start: start + 40]
        src, seg = pad([e.src for e in batch], 0), pad([e.seg for e in batch], 0)
        assert bool((seg == 0).any())  # batches with padding, of several lengths
        with torch.no_grad():
            prob = torch.softmax(model(src, None, seg, predict=True), -1).numpy()
        onnx_prob = session.run(["prob"], {"src": src.numpy(), "seg": seg.numpy()})[0]
        np.testing.assert_allclose(onnx_prob, prob, atol=1e-4, rtol=0)
        np.testing.assert_allclose(onnx_prob.sum(-1), 1.0, atol=1e-5)


def test_export_refuses_what_is_not_a_task_model(tmp_path, capsys):
    assert main(["export", "onnx", "--load_model_path", str(tmp_path), "--output", str(tmp_path / "x.onnx")]) == 1
    assert f"--load_model_path '{tmp_path}': a directory that is no model" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
