"""`uer-ds augment` (EDA, Wei & Zou 2019): each operation's invariants over many seeds and texts (swap keeps
the words' multiset, deletion removes words only and never all, insertion adds synonyms only, replacement
puts a word of the same group), the text outside the words kept, labels and other columns kept, N copies
per example, the same output for the same seed, rows with text_b, synonyms from a file and from a model's
embedding neighbours (a worked cosine example), and errors that name file:line and leave no output."""
from __future__ import annotations

import random
import re
from collections import Counter

import pytest
import torch

from conftest import CORPORA, shared
from uer_ds.cli import main
from uer_ds.tasks.augment import (AugmentSettings, SynonymTable, augment_rows, random_deletion,
                                  random_insertion, random_swap, read_rows, segmenter, synonym_replacement)

GROUPS = ["好 棒 不错 精彩", "书 书籍", "喜欢 喜爱", "good great fine", "book novel"]
TEXTS = ["这本书很好看，我喜欢。", "不错 的 书 , 好 好 好", "A good book, a great read.", "书", "好书！", "  书 好 ",
         "冷酷无情地细致描绘了失明症蔓延后的人间地狱，几乎不用形容词。"]


@pytest.fixture
def synonyms(tmp_path):
    path = tmp_path / "syn.txt"
    path.write_text("# groups\n" + "\n".join(GROUPS) + "\n\n", encoding="utf-8")
    return SynonymTable.from_file(str(path))


def group_of(word):
    return {w for g in GROUPS for w in g.split() if word in g.split()} - {word}


def cases():
    """(segmented text, rate, rng) over the texts, the three segmenters and many seeds."""
    for kind in ("jieba", "char", "space"):
        segment = segmenter(kind)
        for text in TEXTS:
            for seed in range(25):
                yield segment(text), (0.1, 0.3, 0.7, 1.0)[seed % 4], random.Random(seed)


def non_space(gaps: list[str]) -> str:
    """The text between the words without its white space: what no operation changes."""
    return re.sub(r"\s", "", "".join(gaps))


def test_segmenters_keep_the_text_and_find_words():
    for kind in ("jieba", "char", "space"):
        for text in TEXTS:
            seg = segmenter(kind)(text)
            assert seg.text() == text and len(seg.gaps) == len(seg.words) + 1
            assert all(re.search(r"\w", w) for w in seg.words)  # punctuation and white space are not words
    assert segmenter("char")("好书！").words == ["好", "书"]
    assert segmenter("space")("A good book, ok").words == ["A", "good", "book,", "ok"]
    assert segmenter("jieba")("这本书很好看").words == ["这", "本书", "很", "好看"]  # jieba's own segmentation
    with pytest.raises(ValueError, match="--segment has value 'bpe': must be one of jieba, char, space"):
        segmenter("bpe")


def test_swap_keeps_the_multiset_of_words_and_the_text_between_them():
    moved = 0
    for seg, rate, rng in cases():
        out = random_swap(seg, rate, rng)
        assert Counter(out.words) == Counter(seg.words) and out.gaps == seg.gaps
        moved += out.words != seg.words
    assert moved > 100  # it does swap


def test_deletion_removes_only_words_and_never_all_of_them():
    removed = 0
    for seg, rate, rng in cases():
        out = random_deletion(seg, rate, rng)
        assert len(out.words) >= min(1, len(seg.words)) and len(out.gaps) == len(out.words) + 1
        it = iter(seg.words)  # the kept words are a subsequence of the original, in order
        assert all(any(w == v for v in it) for w in out.words)
        assert non_space(out.gaps) == non_space(seg.gaps)  # punctuation stays: only words go
        removed += len(out.words) < len(seg.words)
    assert removed > 100
    one = segmenter("char")("书！")
    assert random_deletion(one, 1.0, random.Random(0)).text() == "书！"  # a one-word text keeps its word


def test_insertion_inserts_only_synonyms_of_the_texts_words(synonyms):
    inserted = 0
    for seg, rate, rng in cases():
        out = random_insertion(seg, rate, rng, synonyms)
        added = Counter(out.words) - Counter(seg.words)
        assert not Counter(seg.words) - Counter(out.words) and non_space(out.gaps) == non_space(seg.gaps)
        allowed = set().union(*(group_of(w) for w in seg.words)) if seg.words else set()
        assert set(added) <= allowed
        has = any(group_of(w) for w in seg.words)
        assert sum(added.values()) == (max(1, int(rate * len(seg.words))) if has else 0)
        inserted += sum(added.values())
    assert inserted > 100


def test_synonym_replacement_replaces_with_words_of_the_same_group(synonyms):
    replaced = 0
    for seg, rate, rng in cases():
        out = synonym_replacement(seg, rate, rng, synonyms)
        assert len(out.words) == len(seg.words) and out.gaps == seg.gaps
        mapping = {}
        for before, after in zip(seg.words, out.words):
            if before != after:
                assert after in group_of(before)
                assert mapping.setdefault(before, after) == after  # every occurrence of a word gets one synonym
                replaced += 1
        having = {w for w in seg.words if group_of(w)}
        assert len(mapping) <= max(1, int(rate * len(seg.words)))
        assert len(mapping) == min(len(having), max(1, int(rate * len(seg.words)))) or len(seg.words) == 0
    assert replaced > 50


def test_space_mode_inserts_and_deletes_with_single_spaces(synonyms):
    seg = segmenter("space")("a good book")
    for seed in range(20):
        out = random_insertion(seg, 0.5, random.Random(seed), synonyms).text()
        assert "  " not in out and out == out.strip() and len(out.split()) == 4
        gone = random_deletion(seg, 0.5, random.Random(seed)).text()
        assert "  " not in gone and gone == gone.strip()


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def test_command_keeps_labels_and_columns_writes_n_copies_and_is_deterministic(tmp_path, synonyms, capsys):
    rows = ["label\ttext_a\ttext_b\tqid", "1\t这本书很好看，我喜欢。\t好书！\tq1", "0\t不好看的书\t书 好\tq2",
            "1\t精彩\t不错\tq3"]
    src = write(tmp_path / "in.tsv", rows)
    syn = write(tmp_path / "syn.txt", GROUPS)
    args = ["augment", "--input_path", str(src), "--synonyms_path", str(syn), "--aug_per_example", "5",
            "--no_progress", "--segment", "char"]
    assert main([*args, "--output_path", str(tmp_path / "a.tsv"), "--keep_original"]) == 0
    assert "3 example(s) -> 18 row(s)" in capsys.readouterr().out
    header, out = read(tmp_path / "a.tsv")
    assert header == ["label", "text_a", "text_b", "qid"]
    originals = [r.split("\t") for r in rows[1:]]
    for i, original in enumerate(originals):
        block = out[i * 6: (i + 1) * 6]
        assert block[0] == original  # the example first, then its 5 copies
        assert all(r[0] == original[0] and r[3] == original[3] for r in block)
        assert any(r[1] != original[1] or r[2] != original[2] for r in block[1:])
    assert main([*args, "--output_path", str(tmp_path / "b.tsv"), "--keep_original"]) == 0
    assert (tmp_path / "b.tsv").read_bytes() == (tmp_path / "a.tsv").read_bytes()  # same seed, same output
    assert main([*args, "--output_path", str(tmp_path / "c.tsv"), "--seed", "8"]) == 0
    _, other = read(tmp_path / "c.tsv")
    assert len(other) == 15 and other != [r for k, r in enumerate(out) if k % 6]  # no originals; another seed
    assert main([*args, "--output_path", str(tmp_path / "d.tsv"), "--seed", "8"]) == 0
    assert (tmp_path / "d.tsv").read_bytes() == (tmp_path / "c.tsv").read_bytes()


def test_one_operation_per_copy_round_the_list(tmp_path, synonyms):
    header, rows = read_rows(str(write(tmp_path / "in.tsv", ["label\ttext_a", "1\t好 书 我 喜欢 好 书"])))
    settings = AugmentSettings(("swap", "delete"), {"swap": 0.3, "delete": 0.3, "insert": 0.1, "synonym": 0.1}, 6, 1)
    result = augment_rows(header, rows, settings, segmenter("space"), None, progress=False)
    assert result.by_op == {"swap": 3, "delete": 3} and result.copies == 6
    for _, text in result.rows:
        words = Counter(text.split())
        assert words == Counter("好 书 我 喜欢 好 书".split()) or (words <= Counter("好 书 我 喜欢 好 书".split()))


@pytest.mark.parametrize("lines, message", [
    (["label\ttext_a", "1\tok", "0\ttwo\tcolumns"], r"in.tsv:3: 3 column\(s\), the header has 2"),
    (["label\ttext_a", "1\tok", "0\t "], r"in.tsv:3: text_a is empty"),
    (["label\ttext_a", "\tok"], r"in.tsv:2: label is empty"),
    (["text_a\tlabel2", "ok\t1"], r"in.tsv:1: header \['text_a', 'label2'\] lacks column\(s\) \['label'\]"),
    (["label\ttext_a", "1\tok", "", "0\tfine"], r"in.tsv:3: empty line"),
])
def test_malformed_input_names_file_and_line_and_writes_nothing(tmp_path, capsys, lines, message):
    src = write(tmp_path / "in.tsv", lines)
    out = tmp_path / "out.tsv"
    assert main(["augment", "--input_path", str(src), "--output_path", str(out), "--no_progress"]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.tsv"]


@pytest.mark.parametrize("flags, message", [
    (["--ops", "insert"], "--ops has insert: they need synonyms"),
    (["--ops", "swap,shuffle"], "--ops has 'shuffle': the operations are swap, delete, insert, synonym"),
    (["--swap_rate", "0"], "--swap_rate has value 0.0: must be in (0, 1]"),
    (["--aug_per_example", "0"], "--aug_per_example has value 0: must be positive"),
    (["--synonyms_path", "SYN"], "syn.txt:2: a group of 1 word(s) ('孤'): each line is a group of at least two"),
])
def test_bad_flags_and_synonym_files_are_errors(tmp_path, capsys, flags, message):
    src = write(tmp_path / "in.tsv", ["label\ttext_a", "1\t好书"])
    write(tmp_path / "syn.txt", ["好 棒", "孤"])
    flags = [str(tmp_path / "syn.txt") if f == "SYN" else f for f in flags]
    out = tmp_path / "out.tsv"
    assert main(["augment", "--input_path", str(src), "--output_path", str(out), "--no_progress", *flags]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_synonyms_from_embedding_neighbours_worked_example(tmp_path):
    """The nearest-words worked example: 书's two nearest tokens by cosine are 的 (1/sqrt 2) and 山
    (1/sqrt 5); every other token is orthogonal.  So the synonyms of 书 are exactly {的, 山}."""
    from uer_ds.config import ModelConfig
    from uer_ds.models import build_model, save_model

    vocab = CORPORA / "vocab.txt"
    words = vocab.read_text(encoding="utf-8").splitlines()
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": len(words), "emb_size": 4, "hidden_size": 4,
                                              "heads_num": 1, "feedforward_size": 8})
    model = build_model(cfg)
    table = torch.zeros(len(words), 4)
    table[:, 3] = 1.0
    for word, vector in {"书": [1, 0, 0, 0], "的": [1, 1, 0, 0], "山": [1, 2, 0, 0], "石": [-1, 0, 0, 0]}.items():
        table[words.index(word)] = torch.tensor(vector, dtype=torch.float)
    with torch.no_grad():
        model.embedding.word.embedding.weight.copy_(table)
    save_model(model, tmp_path / "m")
    src = write(tmp_path / "in.tsv", ["label\ttext_a", "1\t书书书书书书书书书书"])
    out = tmp_path / "out.tsv"
    assert main(["augment", "--input_path", str(src), "--output_path", str(out), "--load_model_path",
                 str(tmp_path / "m"), "--vocab_path", str(vocab), "--segment", "char", "--ops", "synonym,insert",
                 "--synonym_topn", "2", "--min_similarity", "0.3", "--aug_per_example", "8", "--no_progress"]) == 0
    _, rows = read(out)
    assert len(rows) == 8
    seen = Counter(c for _, text in rows for c in text)
    assert set(seen) == {"书", "的", "山"} and seen["的"] and seen["山"]


def test_book_review_rows_augment_with_jieba(tmp_path):
    train = shared("datasets/book_review/train.tsv")
    head = train.read_text(encoding="utf-8").splitlines()[:51]
    src = write(tmp_path / "in.tsv", head)
    out = tmp_path / "out.tsv"
    assert main(["augment", "--input_path", str(src), "--output_path", str(out), "--no_progress",
                 "--aug_per_example", "2"]) == 0
    header, rows = read(out)
    labels = [line.split("\t")[0] for line in head[1:]]
    assert header == ["label", "text_a"] and [r[0] for r in rows] == [l for l in labels for _ in range(2)]
