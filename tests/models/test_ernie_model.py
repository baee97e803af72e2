"""ERNIE 2.0 in the model: the task embedding (its sum, its default id, its config rules), the six heads
(losses against torch's cross-entropy on the labelled rows, exact zeros on no labels), and a schedule's
training step for every task: no host reads, one graph (torch.compile traces it whole)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import CORPORA
from uer_ds.config import ModelConfig
from uer_ds.models import build_model

V = 417  # corpora/vocab.txt
SMALL = {"hidden_size": 32, "emb_size": 32, "feedforward_size": 64, "heads_num": 4, "layers_num": 2,
         "vocab_size": V, "dropout": 0.0}
ERNIE_TARGETS = ["capitalization", "token_document", "sentence_reorder", "sentence_distance", "discourse",
                 "ir_relevance"]


def ernie_config(**extra) -> ModelConfig:
    values = dict(SMALL, embedding=["word", "pos", "seg", "task"], task_types_num=4, target=["mlm"] + ERNIE_TARGETS,
                  discourse_labels_num=18)
    values.update(extra)
    return ModelConfig.from_json("bert/tiny", values)


def test_the_task_embedding_adds_the_row_of_each_rows_task():
    torch.manual_seed(0)
    cfg = ernie_config(task_id=2)
    model = build_model(cfg).eval()
    emb = model.embedding
    src = torch.randint(5, V, (3, 7))
    seg = torch.ones(3, 7, dtype=torch.long)
    task = torch.tensor([0, 3, 1])
    by_hand = (emb.word.embedding.weight[src] + emb.pos.embedding.weight[:7] + emb.seg.embedding.weight[seg]
               + emb.task.embedding.weight[task][:, None, :])
    expected = F.layer_norm(by_hand, (32,), emb.layer_norm.weight, emb.layer_norm.bias, cfg.layernorm_eps)
    torch.testing.assert_close(emb(src, seg, task=task), expected)
    # per-position ids (Hugging Face's task_type_ids shape) give the same
    torch.testing.assert_close(emb(src, seg, task=task[:, None].expand(3, 7)), expected)
    # without ids: the config's task_id for every row
    torch.testing.assert_close(emb(src, seg), emb(src, seg, task=torch.full((3,), 2)))
    assert not torch.allclose(emb(src, seg, task=torch.zeros(3, dtype=torch.long)), emb(src, seg))
    # the model reads the ids from tgt["task_type"]
    hidden = model.encode(src, seg)
    assert torch.allclose(hidden, model.encoder(emb(src, seg), seg, padded=None))


@pytest.mark.parametrize("extra,match", [
    ({"task_id": 4}, r"--task_id has value 4: must be in \[0, task_types_num \(4\)\)"),
    ({"task_types_num": 0}, r"--task_types_num has value 0: must be positive"),
    ({"sentence_reorder_segments": 6}, r"--sentence_reorder_segments has value 6: must be in \[1, 5\]"),
    ({"discourse_labels_num": 0}, r"--discourse_labels_num has value 0: the discourse target needs at least 2"),
])
def test_config_rules(extra, match):
    with pytest.raises(ValueError, match=match):
        ernie_config(**extra)


def test_heads_against_cross_entropy_and_zero_on_no_labels():
    torch.manual_seed(1)
    cfg = ernie_config(sentence_reorder_segments=4)
    model = build_model(cfg)
    hidden = torch.randn(3, 6, 32)
    seg = torch.ones(3, 6, dtype=torch.long)
    classes = {"sentence_reorder": 33, "sentence_distance": 3, "discourse": 18, "ir_relevance": 3}
    for name, k in classes.items():
        head = model.target[name]
        labels = torch.tensor([0, k - 1, -100])
        logits = head.logits(hidden)
        assert logits.shape == (3, k)
        result = head(hidden, labels, seg)
        torch.testing.assert_close(result.loss, F.cross_entropy(logits[:2], labels[:2]))
        assert int(result.denominator) == 2 and int(result.correct) == int((logits[:2].argmax(-1) == labels[:2]).sum())
    for name in ("capitalization", "token_document"):
        head = model.target[name]
        labels = torch.full((3, 6), -100)
        labels[0, 1], labels[2, 5], labels[1, 0] = 1, 0, 1
        logits = head.logits(hidden)  # (3, 6, 2)
        keep = labels != -100
        result = head(hidden, labels, seg)
        torch.testing.assert_close(result.loss, F.cross_entropy(logits[keep], labels[keep]))
        assert int(result.denominator) == 3
    # no labels: an exact zero whose gradient reaches every parameter of the head as exact zeros
    for name in ERNIE_TARGETS:
        head = model.target[name]
        head.zero_grad()
        labels = torch.full((3,) if head.label_kind == "sequence" else (3, 6), -100)
        loss = head(hidden, labels, seg).loss
        loss.backward()
        assert float(loss.detach()) == 0.0
        assert all(p.grad is not None and not p.grad.any() for p in head.parameters()), name


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """One TaskStream per task of a schedule over the shipped corpus (mlm + the six ERNIE processors)."""
    from uer_ds.data import PreprocessOptions, PretrainDataset, preprocess
    from uer_ds.data.registry import DATA_PROCESSORS
    from uer_ds.engine.schedule import TaskStream
    from uer_ds.models.targets import TARGETS
    from uer_ds.tokenizers import build_tokenizer

    tmp = tmp_path_factory.mktemp("ernie")
    tok = build_tokenizer("bert", vocab_path=CORPORA / "vocab.txt")
    corpora = {"mlm": "reviews.txt", "capitalization": "reviews.txt", "ir_relevance": "ir_relevance.tsv",
               "discourse": tmp / "discourse_corpus.txt"}
    # the sample corpus has no discourse marker: every second sentence of a review gets one
    docs = (CORPORA / "reviews_bert.txt").read_text(encoding="utf-8").split("\n\n")[:300]
    corpora["discourse"].write_text("\n\n".join("\n".join(("不过" if k % 2 else "其实") + s if i == 1 else s
                                                          for i, s in enumerate(d.split("\n")))
                                                for k, d in enumerate(docs)), encoding="utf-8")
    out = {}
    names = ["mlm"] + ERNIE_TARGETS
    kinds = {n: TARGETS[n].label_kind for n in names}
    for task_id, processor in enumerate(names):
        preprocess(CORPORA / corpora.get(processor, "reviews_bert.txt"), tmp / processor, tok,  # (absolute stays)
                   PreprocessOptions(processor, 24, dup_factor=1), progress=False)
        own = set(DATA_PROCESSORS[processor])
        out[processor] = TaskStream(PretrainDataset(tmp / processor), task_id % 4,
                                    {n: k for n, k in kinds.items() if n not in own})
    return out


def test_a_schedule_step_of_every_task_reads_nothing_back_and_compiles_whole(streams):
    import sys

    sys.path.insert(0, str(CORPORA.parent / "tests" / "models"))
    from test_sync_free import counted_step, explained_breaks
    from uer_ds.engine.overhead import syncs

    cfg = ernie_config(dropout=0.1)
    cfg = cfg.replace(discourse_labels_num=int(streams["discourse"].dataset.meta["head_config"]["discourse_labels_num"]))
    model = build_model(cfg).train()
    for name, stream in streams.items():
        batch = stream.collate([stream[i] for i in range(4)])
        assert set(batch["tgt"]) == set(cfg.target) | {"task_type"}
        assert batch["info"].predictions[name] > 0
        assert all(batch["info"].predictions[other] == 0 for other in cfg.target if other != name)
        counter = counted_step(model, batch, batch["tgt"])
        found = {k: v for phase in counter.ops.values() for k, v in phase.items() if syncs({k: v})}
        assert found == {}, f"{name}: device->host reads in a schedule step: {found}"
        result = model(batch["src"], batch["tgt"], batch["seg"])
        assert set(result.parts) == set(cfg.target)
        assert all(float(result.parts[o].loss.detach()) == 0.0 for o in cfg.target if o != name)
        assert float(result.parts[name].loss.detach()) > 0
        assert explained_breaks(model, batch, batch["tgt"]) == [], name


def test_task_ids_change_the_encoding_only_through_the_task_row(streams):
    cfg = ernie_config()
    cfg = cfg.replace(discourse_labels_num=int(streams["discourse"].dataset.meta["head_config"]["discourse_labels_num"]))
    model = build_model(cfg).eval()
    stream = streams["sentence_distance"]
    batch = stream.collate([stream[i] for i in range(3)])
    assert batch["tgt"]["task_type"].tolist() == [stream.task_id] * 3
    with torch.no_grad():
        a = model(batch["src"], batch["tgt"], batch["seg"]).parts["sentence_distance"].loss
        model.embedding.task.embedding.weight[stream.task_id] += 1.0
        b = model(batch["src"], batch["tgt"], batch["seg"]).parts["sentence_distance"].loss
        model.embedding.task.embedding.weight[(stream.task_id + 1) % 4] += 1.0
        c = model(batch["src"], batch["tgt"], batch["seg"]).parts["sentence_distance"].loss
    assert not torch.equal(a, b) and torch.equal(b, c)
    assert np.isfinite(float(a))
