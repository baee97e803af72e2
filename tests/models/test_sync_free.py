"""Issue #9's contract for every model family and task head: a training forward + backward on a batch
from the real collate functions makes the host read nothing back from the device (no `.item()`,
`nonzero`, boolean indexing, `.cpu()`...), and torch.compile traces the forward whole (zero graph
breaks, `torch._dynamo.explain`).  Counted by uer-ds bench overhead's op counter, on the CPU."""
from __future__ import annotations

import argparse
from typing import Optional

import numpy as np
import pytest
import torch
import torch._dynamo

from conftest import CORPORA, shared
from uer_ds.config import ModelConfig
from uer_ds.data.batch import collate, forward_kwargs
from uer_ds.engine.overhead import OpCounter, syncs
from uer_ds.models import build_model

V = 60
SMALL = {"hidden_size": 32, "emb_size": 32, "feedforward_size": 64, "heads_num": 4, "layers_num": 2,
         "vocab_size": V, "dropout": 0.1}
# encoders torch.compile traces whole (the recurrent ones: see RECURRENT)
FAMILIES = {
    "bert": ("bert/tiny", {}),
    "gpt2": ("gpt2/small", {}),
    "albert": ("albert/base", {"emb_size": 16}),
    "gatedcnn": ("cnn/gatedcnn", {"layers_num": 3, "target": ["lm"]}),
    "cnn": ("cnn/cnn", {}),
    "attn": ("attn/base", {}),
    "synt_dense": ("synt/dense_base", {}),
    "synt_random": ("synt/random_base", {}),
}
# encoders with a recurrence: dynamo traces torch.lstm/gru only with torch._dynamo.config.allow_rnn
# (Engine.compile sets it for them)
RECURRENT = {
    "lstm": ("rnn/lstm", {}),
    "gru": ("rnn/gru", {}),
    "bilstm": ("rnn/bilstm", {"tie_weights": False}),
    "bigru": ("rnn/bilstm", {"encoder": "bigru", "tie_weights": False}),
    "rcnn": ("cnn/rcnn", {}),
    "crnn": ("cnn/crnn", {}),
}


def pretraining_batch(cfg: ModelConfig, rows: int = 3, length: int = 12, shorter_by: int = 1,
                     pad_to: Optional[int] = None) -> dict:
    """A collated batch with padding (rows of lengths 12, 11, 10: each `shorter_by` shorter than the
    last) and every target's labels."""
    rng = np.random.default_rng(0)
    instances = []
    for row in range(rows):
        seg = np.zeros(length, np.int64)
        seg[: length - shorter_by * row] = 1
        src = rng.integers(5, V, length) * (seg > 0)
        tgt = {}
        for name in cfg.target:
            if name == "mlm":
                labels = np.full(length, -100)
                labels[[1, 4]] = src[[1, 4]]
                tgt[name] = labels
            elif name in ("sp", "cls"):
                tgt[name] = np.int64(row % 2)
            elif name == "lm":
                tgt[name] = np.where(seg > 0, np.roll(src, -1), -100)
            elif name == "bilm":  # (next token, previous token)
                tgt[name] = np.stack([np.where(seg > 0, np.roll(src, -1), -100),
                                      np.where(seg > 0, np.roll(src, 1), -100)], axis=1)
        instances.append({"src": src, "seg": seg, "tgt": tgt})
    return collate(instances, picked={"mlm": 3}, pad_to=pad_to)


def counted_step(model: torch.nn.Module, batch: dict, labels) -> OpCounter:
    counter = OpCounter()
    with counter:
        counter.start()
        result = model(batch["src"], labels, batch["seg"], **forward_kwargs(batch["info"]))
        result.loss.backward()
        counter.stop()
    return counter


def explained_breaks(model: torch.nn.Module, batch: dict, labels) -> list[str]:
    torch._dynamo.reset()
    try:
        explained = torch._dynamo.explain(model)(batch["src"], labels, batch["seg"], **forward_kwargs(batch["info"]))
    finally:
        torch._dynamo.reset()
    return [str(reason.reason).splitlines()[0] for reason in explained.break_reasons]


@pytest.mark.parametrize("family", list(FAMILIES) + list(RECURRENT))
def test_pretraining_step_reads_nothing_back_and_compiles_whole(family):
    path, extra = FAMILIES[family] if family in FAMILIES else RECURRENT[family]
    cfg = ModelConfig.from_json(path, dict(SMALL, **extra))
    model = build_model(cfg).train()
    batch = pretraining_batch(cfg)
    assert batch["info"].padded
    labels = batch["tgt"] if len(cfg.target) > 1 else batch["tgt"][cfg.target[0]]
    counter = counted_step(model, batch, labels)
    found = {k: v for phase in counter.ops.values() for k, v in phase.items() if syncs({k: v})}
    assert found == {}, f"{family}: device->host reads in a training step: {found}"
    with torch._dynamo.config.patch(allow_rnn=family in RECURRENT):
        assert explained_breaks(model, batch, labels) == []


def test_the_unpadded_path_reads_nothing_back_and_compiles_whole(monkeypatch):
    """Packed tokens through every layer (the reference's varlen attention standing in for the kernel,
    which tests/kernels/test_unpadded.py runs), the MLM gathering packed rows: no host reads, no breaks."""
    from uer_ds.models.encoders import transformer

    monkeypatch.setattr(transformer, "runs_unpadded", lambda mode, x: True)
    cfg = ModelConfig.from_json("bert/tiny", SMALL)
    model = build_model(cfg).train()
    batch = pretraining_batch(cfg)
    assert batch["info"].packing is not None and batch["tgt"]["mlm"].packed_index is not None
    counter = counted_step(model, batch, batch["tgt"])
    found = {k: v for phase in counter.ops.values() for k, v in phase.items() if syncs({k: v})}
    assert found == {}, f"device->host reads in an unpadded training step: {found}"
    assert explained_breaks(model, batch, batch["tgt"]) == []


def test_a_packing_of_another_size_does_not_recompile_the_padded_path():
    """--compile pads pre-training batches to seq_length: with kernels torch the Packing (whose token
    count changes every batch) must not make torch.compile trace again."""
    cfg = ModelConfig.from_json("bert/tiny", SMALL)
    model = build_model(cfg).train()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    try:
        compiled = torch.compile(model, backend=backend, fullgraph=True)
        for shorter_by in (1, 2, 3):  # 33, 30 and 27 real tokens, batches padded to 12
            batch = pretraining_batch(cfg, shorter_by=shorter_by, pad_to=12)
            assert batch["src"].shape == (3, 12) and batch["info"].tokens == 36 - 3 * shorter_by
            compiled(batch["src"], batch["tgt"], batch["seg"], **forward_kwargs(batch["info"]))
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 1, f"{len(graphs)} graphs compiled for batches of one shape"


def test_unpadded_batches_take_the_unmasked_path_decided_on_the_host():
    """BatchInfo.padded is False exactly when no row has padding; the encoder then passes no mask, and
    gives what the masked path gives on the same (unpadded) batch."""
    cfg = ModelConfig.from_json("bert/tiny", dict(SMALL, dropout=0.0))
    model = build_model(cfg).eval()
    batch = pretraining_batch(cfg, rows=1)
    assert not batch["info"].padded
    with torch.no_grad():
        fast = model.encode(batch["src"], batch["seg"], padded=False)
        masked = model.encode(batch["src"], batch["seg"], padded=True)
    torch.testing.assert_close(fast, masked)


def test_dense_mlm_labels_give_the_same_loss_as_picked_positions():
    """Picked (collate's host-found rows) and dense (B, T) labels are the same targets."""
    cfg = ModelConfig.from_json("bert/tiny", dict(SMALL, dropout=0.0))
    model = build_model(cfg)
    batch = pretraining_batch(cfg)
    picked = batch["tgt"]["mlm"]
    keep = picked.labels != -100
    dense = torch.full(batch["src"].shape, -100, dtype=torch.long).reshape(-1)
    dense[picked.index[keep]] = picked.labels[keep]
    a = model(batch["src"], batch["tgt"], batch["seg"]).parts["mlm"]
    b = model(batch["src"], dict(batch["tgt"], mlm=dense.view(batch["src"].shape)), batch["seg"]).parts["mlm"]
    torch.testing.assert_close(a.loss, b.loss)
    assert int(a.denominator) == int(b.denominator) == int(keep.sum()) == 6


# ---- task heads ----------------------------------------------------------------------------------
def task_batch(name: str, argv: list[str]):
    """(model, batch) for a task, read with its own reader and collated as the runner does."""
    from uer_ds.cli.common import model_config_with_vocab, tokenizer_from_args
    from uer_ds.tasks import TASKS, TaskModel
    from uer_ds.cli.finetune import add_finetune_arguments
    from uer_ds.recipes.predict import batch_maker

    task = TASKS[name]
    parser = argparse.ArgumentParser()
    add_finetune_arguments(parser, task)
    vocab = shared("models/google_zh_vocab.txt")
    small = [f"--{k}={v}" for k, v in SMALL.items() if k != "vocab_size"]
    args = parser.parse_args(argv + ["--vocab_path", str(vocab), "--config_path", "bert/tiny",
                                     "--output_model_path", "unused", "--seq_length", "64"] + small)
    tokenizer = tokenizer_from_args(args)
    cfg = model_config_with_vocab(args, tokenizer)
    data = task.load(task.options_from(args), tokenizer, cfg, args.seq_length)
    model = TaskModel(cfg, task.build_heads(cfg, data.heads, task.options_from(args)))
    model.init_weights()
    examples = data.train[0][:4]
    return model.train(), batch_maker(task, list(data.heads), tokenizer.pad_id or 0)(examples, 0)


TASK_ARGS = {
    "classifier": lambda tmp: ["--train_path", str(CORPORA / "reviews_cls" / "train.tsv"),
                               "--dev_path", str(CORPORA / "reviews_cls" / "dev.tsv"), "--pooling", "mean"],
    "ner": lambda tmp: ["--train_path", str(shared("datasets/test_data/msra_ner/train.tsv")),
                        "--dev_path", str(shared("datasets/test_data/msra_ner/dev.tsv")),
                        "--label2id_path", str(shared("datasets/msra_ner/label2id.json"))],
    "ner_crf": lambda tmp: TASK_ARGS["ner"](tmp) + ["--crf"],
    "cmrc": lambda tmp: ["--train_path", str(shared("datasets/test_data/cmrc/train.json")),
                         "--dev_path", str(shared("datasets/test_data/cmrc/dev.json"))],
    "c3": lambda tmp: ["--train_path", str(shared("datasets/c3/dev.json")),
                       "--dev_path", str(shared("datasets/c3/dev.json"))],
    "dbqa": lambda tmp: ["--train_path", str(CORPORA / "dbqa" / "train.tsv"),
                         "--dev_path", str(CORPORA / "dbqa" / "dev.tsv")],
    "multi_label_classifier": lambda tmp: ["--train_path", str(multi_label_file(tmp)),
                                           "--dev_path", str(multi_label_file(tmp))],
    "regression": lambda tmp: ["--train_path", str(regression_file(tmp)), "--dev_path", str(regression_file(tmp))],
}


def regression_file(tmp) -> str:
    path = tmp / "regression.tsv"
    path.write_text("label\ttext_a\ttext_b\n4.5\t很好看的书\t好书\n0.25\t一般\t很差\n-1\t没有\t标签\n3\t情节\t精彩\n",
                    encoding="utf-8")
    return path


def multi_label_file(tmp) -> str:
    path = tmp / "multi_label.tsv"
    path.write_text("label\ttext_a\n0,2\t很好看的书\n1\t一般\n\t没有标签\n2,1,0\t情节精彩\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(TASK_ARGS))
def test_task_heads_train_without_host_reads_and_compile_whole(case, tmp_path):
    model, batch = task_batch(case.removesuffix("_crf"), TASK_ARGS[case](tmp_path))
    counter = counted_step(model, batch, batch["tgt"])
    found = {k: v for phase in counter.ops.values() for k, v in phase.items() if syncs({k: v})}
    assert found == {}, f"{case}: device->host reads in a training step: {found}"
    assert explained_breaks(model, batch, batch["tgt"]) == []
