"""Task data: UER-py TSV reading with its errors (file:line, value, rule), the input layout, and the
epoch plan that every rank must agree on."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from conftest import CORPORA
from uer_ds.tasks import TASKS, TaskDataError
from uer_ds.tasks.data import encode_texts, epoch_plan, eval_batches, train_batches
from uer_ds.tokenizers import build_tokenizer

CLS = TASKS["classifier"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("bert", CORPORA / "vocab.txt")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def read(path, tokenizer, labels_num=None, labelled=True, soft=False, pair=None):
    spec = {"labels_num": labels_num, "soft": soft}
    if pair is not None:
        spec["pair"] = pair
    return CLS.read(path, tokenizer, 32, spec, labelled, CLS.options(soft_targets=soft))


@pytest.mark.parametrize("text, line, message", [
    ("label\ttext_a\n1\t好书\n0\t一般\textra\n", 3, r"3 column\(s\), the header has 2"),
    ("label\ttext_a\n1\t好书\n5\t一般\n", 3,
     r"label 5 is out of range: labels must be in 0\.\.1 \(labels_num is 2\)"),
    ("label\ttext_a\n1\t好书\n-1\t一般\n", 3, r"label -1 is out of range"),
    ("label\ttext_a\nx\t好书\n", 2, r"label 'x' is not an integer"),
    ("label\ttext_a\n1\t \n", 2, r"text_a is empty"),
    ("label\ttext_a\ttext_b\n1\t好书\t\n", 2, r"text_b is empty"),
    ("label\ttext_a\n1\t好书\n\n0\t一般\n", 3, r"empty line"),
])
def test_bad_rows_name_file_line_value_and_rule(tmp_path, tokenizer, text, line, message):
    path = write(tmp_path, "train.tsv", text)
    with pytest.raises(TaskDataError, match=rf"^{re.escape(path)}:{line}: {message}"):
        read(path, tokenizer, labels_num=2)


def test_a_bom_is_removed_and_lines_end_at_newline_only(tmp_path, tokenizer):
    """The issue's case: a BOM before the header made it '\ufefflabel' ('lacks column label' without a
    word about the BOM).  U+2028 / U+0085 inside a text are characters of its line."""
    path = write(tmp_path, "bom.tsv", "\ufefflabel\ttext_a\n1\t好\u2028书\n0\t一\u0085般\n")
    examples = read(path, tokenizer, labels_num=2)
    assert [e.tgt for e in examples] == [1, 0] and [e.source for e in examples] == [f"{path}:2", f"{path}:3"]
    assert examples[0].text["text_a"] == "好\u2028书"
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes(b"label\ttext_a\n1\tcaf\xe9\n")
    with pytest.raises(TaskDataError, match=rf"^{re.escape(str(bad))}:2: invalid UTF-8 at byte 18"):
        read(str(bad), tokenizer, labels_num=2)


def test_bad_headers_and_logits(tmp_path, tokenizer):
    path = write(tmp_path, "a.tsv", "text_a\tlabel_x\n好书\t1\n")
    header = r"header \['text_a', 'label_x'\] lacks column\(s\) \['label'\]"
    with pytest.raises(TaskDataError, match=rf"^{re.escape(path)}:1: {header}"):
        read(path, tokenizer)
    path = write(tmp_path, "b.tsv", "label\ttext_a\tlogits\n1\t好书\t0.5\n")
    with pytest.raises(TaskDataError, match=rf"^{re.escape(path)}:2: logits has 1 value\(s\), expected 2"):
        read(path, tokenizer, labels_num=2, soft=True)
    path = write(tmp_path, "c.tsv", "label\ttext_a\n1\t好书\n")
    with pytest.raises(TaskDataError, match=rf"^{re.escape(path)}:1: .*lacks column\(s\) \['logits'\]"):
        read(path, tokenizer, labels_num=2, soft=True)
    path = write(tmp_path, "d.tsv", "label\ttext_a\ttext_b\n1\t好书\t真的\n")
    with pytest.raises(TaskDataError, match=rf"^{re.escape(path)}:1: .*the model classifies single texts"):
        read(path, tokenizer, labels_num=2, pair=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read(str(tmp_path / "missing.tsv"), tokenizer)


def test_inference_input_ignores_labels_and_extra_columns(tmp_path, tokenizer):
    path = write(tmp_path, "t.tsv", "id\ttext_a\n7\t好书\n8\t一般\n")
    examples = read(path, tokenizer, labels_num=2, labelled=False)
    assert [e.tgt for e in examples] == [None, None]
    assert [e.source for e in examples] == [f"{path}:2", f"{path}:3"]


def test_pair_layout_is_uer_pys(tokenizer):
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    a, b = tokenizer.encode("好书"), tokenizer.encode("一般")
    src, seg = encode_texts(tokenizer, ["好书", "一般"], 64)
    assert src == [cls, *a, sep, *b, sep]
    assert seg == [1] * (len(a) + 2) + [2] * (len(b) + 1)
    src, seg = encode_texts(tokenizer, ["好书", "一般"], 3)  # cut at seq_length, as UER-py does
    assert src == [cls, *a, sep, *b, sep][:3] and seg == [1, 1, 1][: len(seg)]


def test_shipped_splits_read_cleanly(tokenizer):
    examples = read(str(CORPORA / "reviews_cls" / "train.tsv"), tokenizer, labels_num=2)
    assert len(examples) == 700
    assert Counter(e.tgt for e in examples).keys() == {0, 1}
    assert all(len(e.src) <= 32 and e.src[0] == tokenizer.cls_id for e in examples)


def test_epoch_plan_covers_each_example_once_per_rank_set():
    for world in (1, 2, 3):
        plan = epoch_plan([10, 7], batch_size=3, world=world, seed=5, epoch=2)
        assert plan == epoch_plan([10, 7], batch_size=3, world=world, seed=5, epoch=2)  # every rank computes it
        assert plan != epoch_plan([10, 7], batch_size=3, world=world, seed=5, epoch=3)
        for dataset, size in ((0, 10), (1, 7)):
            seen = [i for d, parts in plan if d == dataset for part in parts for i in part]
            if world == 1:
                assert sorted(seen) == list(range(size))  # the last, smaller batch is kept
            else:
                assert len(seen) == len(set(seen)) and len(seen) >= size - world * 3
            assert all(len(parts) == world and all(parts) for d, parts in plan)
        assert {d for d, _ in plan} == {0, 1}


def test_train_batches_interleave_heads_and_align_epochs_to_steps():
    data = [[f"a{i}" for i in range(6)], [f"b{i}" for i in range(4)]]

    def collate(items, head):
        return {"head": head, "items": items}

    # 3 + 2 = 5 micro-batches per epoch; 2 steps of 2 micro-batches keep 4 of them
    stream = train_batches(data, collate, batch_size=2, accumulation_steps=2, rank=0, world=1, seed=1)
    batches = [next(stream) for _ in range(12)]
    assert all(all(x.startswith("ab"[b["head"]]) for x in b["items"]) for b in batches)  # one head per batch
    for epoch in range(3):
        items = [x for b in batches[4 * epoch: 4 * epoch + 4] for x in b["items"]]
        assert len(items) == len(set(items)) == 8  # no example twice within an epoch
    assert {b["head"] for b in batches} == {0, 1}
    assert [b["head"] for b in batches[:4]] != [b["head"] for b in batches[4:8]] or \
        [b["items"] for b in batches[:4]] != [b["items"] for b in batches[4:8]]  # reshuffled per epoch


def test_eval_batches_give_every_rank_the_same_count():
    examples = [type("E", (), {"src": [0] * n})() for n in (5, 1, 3, 9, 2, 2, 7)]
    for world in (1, 2, 3, 4):
        per_rank = [eval_batches(examples, 2, r, world) for r in range(world)]
        assert len({len(b) for b in per_rank}) == 1
        assert sorted({i for b in per_rank for batch in b for i in batch}) == list(range(len(examples)))
    lengths = [len(examples[i].src) for batch in eval_batches(examples, 7, 0, 1) for i in batch]
    assert lengths == sorted(lengths)
