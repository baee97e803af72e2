"""Every new encoder learns: a bert/tiny-sized model pre-trains 50 steps on the shipped corpus with falling
loss (lm for the causal encoders, mlm for the others), then fine-tunes from those weights on the
book_review test_data and classifies its test set above chance.  Plain PyTorch loops over the real
dataset, instance builders, collate functions, task heads and models (the engine is tested elsewhere);
one run goes through `uer-ds pretrain` and `uer-ds finetune` end to end."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import CORPORA, ROOT, shared
from uer_ds.config import ModelConfig
from uer_ds.data import PreprocessOptions, PretrainDataset, collate, preprocess
from uer_ds.models import build_model
from uer_ds.tasks import TASKS, TaskModel, select_pretrained
from uer_ds.tokenizers import build_tokenizer

pytestmark = pytest.mark.slow
TINY = {"emb_size": 128, "hidden_size": 128, "feedforward_size": 512, "heads_num": 2, "layers_num": 2,
        "max_seq_length": 128, "dropout": 0.1, "kernel_size": 3}
ENCODERS = {  # name -> (config changes, pre-training target)
    "cnn": ({"encoder": "cnn", "hidden_act": "relu", "embedding": ["word"]}, "lm"),
    "rcnn": ({"encoder": "rcnn", "hidden_act": "relu", "embedding": ["word"]}, "lm"),
    "crnn": ({"encoder": "crnn", "hidden_act": "relu", "embedding": ["word"]}, "lm"),
    "attn": ({"encoder": "attn"}, "mlm"),
    "synt_dense": ({"encoder": "synt", "synt_type": "dense"}, "mlm"),
    "synt_random": ({"encoder": "synt", "synt_type": "random"}, "mlm"),
}


@pytest.fixture(scope="module")
def vocab():
    return shared("models/google_zh_vocab.txt")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, vocab):
    tok = build_tokenizer("bert", vocab_path=vocab)
    out = {}
    for target in ("lm", "mlm"):
        prefix = tmp_path_factory.mktemp("pt") / target
        preprocess(CORPORA / "reviews.txt", prefix, tok, PreprocessOptions(target, 64, dup_factor=1), progress=False)
        out[target] = prefix
    return out


def pretrain(cfg: ModelConfig, dataset, steps: int = 50) -> tuple[dict, list[float]]:
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ds = PretrainDataset(dataset)
    order = np.random.default_rng(0).permutation(len(ds))
    losses = []
    for step in range(steps):
        batch = collate([ds[int(i)] for i in order[step * 16:(step + 1) * 16]], pad_id=ds.pad_id)
        loss = model(batch["src"], batch["tgt"], batch["seg"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return model.state_dict(), losses


def finetune(cfg: ModelConfig, pretrained: dict, vocab, epochs: int = 16) -> float:
    """From the pre-trained weights, mean pooling; accuracy on the dev and test sets together (100 reviews,
    52 / 48 by class: fewer would make "above chance" a coin toss)."""
    data_dir = shared("datasets/test_data/book_review")
    task = TASKS["classifier"]
    tok = build_tokenizer("bert", vocab_path=vocab)
    spec = {"labels_num": 2, "pooling": "mean", "soft": False}
    train = task.read(str(data_dir / "train.tsv"), tok, 64, spec, True)
    test = task.read(str(data_dir / "test.tsv"), tok, 64, spec, True) + \
        task.read(str(data_dir / "dev.tsv"), tok, 64, spec, True)
    torch.manual_seed(0)
    model = TaskModel(cfg, task.build_heads(cfg, {"classifier": spec}))
    model.init_weights()
    state, _ = select_pretrained(pretrained, model, "pretrained", allow_partial=False)
    model.load_state_dict(state, strict=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(train))
        for start in range(0, len(train), 16):
            batch = task.collate([train[int(i)] for i in order[start:start + 16]], 0, tok.pad_id)
            loss = model(batch["src"], batch["tgt"], batch["seg"]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        batch = task.collate(test, 0, tok.pad_id)
        predicted = model(batch["src"], None, batch["seg"], predict=True).argmax(-1)
    return float((predicted == batch["tgt"]["label"]).float().mean())


@pytest.mark.parametrize("name", list(ENCODERS))
def test_pretrains_with_falling_loss_and_finetunes_above_chance(name, datasets, vocab):
    changes, target = ENCODERS[name]
    cfg = ModelConfig.from_dict(dict(TINY, **changes, target=[target], data_processor=target, vocab_size=21128))
    state, losses = pretrain(cfg, datasets[target])
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:10]), losses
    accuracy = finetune(cfg, state, vocab)
    assert accuracy >= 0.6, accuracy  # the larger class is 52 of 100; guessing reaches 60 with p < 0.03


def test_synt_and_rcnn_through_the_command_line(tmp_path, vocab):
    """uer-ds preprocess -> pretrain (--encoder synt, 50 steps) -> finetune (--encoder rcnn from scratch)."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "uer_ds", *a], capture_output=True, text=True,  # noqa
                                    cwd=ROOT, env={**__import__("os").environ, "DS_ACCELERATOR": "cpu"}, timeout=600)
    out = run("preprocess", "--corpus_path", str(CORPORA / "reviews_bert.txt"), "--vocab_path", str(vocab),
              "--dataset_path", str(tmp_path / "ds"), "--target", "bert", "--seq_length", "64", "--no_progress")
    assert out.returncode == 0, out.stderr
    out = run("pretrain", "--dataset_path", str(tmp_path / "ds"), "--vocab_path", str(vocab), "--config_path",
              "synt/dense_base", "--layers_num", "2", "--hidden_size", "128", "--emb_size", "128", "--heads_num", "2",
              "--feedforward_size", "512", "--max_seq_length", "64", "--output_model_path", str(tmp_path / "pt"),
              "--total_steps", "50", "--batch_size", "16", "--learning_rate", "1e-3", "--report_steps", "5",
              "--metrics_path", str(tmp_path / "m.jsonl"), "--deepspeed_config", "zero0", "--num_workers", "0",
              "--no_progress")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert records[-1]["mlm_loss"] < records[0]["mlm_loss"] - 0.5, records
    data_dir = shared("datasets/test_data/book_review")
    out = run("finetune", "classifier", "--vocab_path", str(vocab), "--config_path", "cnn/rcnn", "--emb_size", "64",
              "--hidden_size", "64", "--pooling", "mean", "--train_path", str(data_dir / "train.tsv"), "--dev_path",
              str(data_dir / "dev.tsv"), "--output_model_path", str(tmp_path / "cls"), "--epochs_num", "1",
              "--batch_size", "32", "--learning_rate", "1e-3", "--seq_length", "64", "--no_progress")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "cls" / "report.json").read_text())
    assert json.loads((tmp_path / "cls" / "config.json").read_text())["encoder"] == "rcnn"
    assert report["best"]["epoch"] == 1
