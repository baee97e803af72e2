"""ERNIE 2.0's tasks built at preprocessing: each processor's labels on crafted documents, checked against
labels derived by hand (the permutation table, the distance classes, the per-token relations), and bad
input (file:line errors, nothing written)."""
from __future__ import annotations

import json
from itertools import permutations

import numpy as np
import pytest

from conftest import CORPORA
from uer_ds.data import PreprocessOptions, PretrainDataset, preprocess
from uer_ds.data.ernie import class_permutation, permutation_class, reorder_classes
from uer_ds.data.ernie_corpora import discourse_pairs, read_markers
from uer_ds.textfile import TextFileError
from uer_ds.tokenizers import build_tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# the classes of sentence reordering with up to 3 segments, written out by hand: fewer segments first,
# then the shown orders (the original index of each shown segment) in lexicographic order
HAND_CLASSES = {(0,): 0, (0, 1): 1, (1, 0): 2, (0, 1, 2): 3, (0, 2, 1): 4, (1, 0, 2): 5, (1, 2, 0): 6,
                (2, 0, 1): 7, (2, 1, 0): 8}


def tokenizer(tmp_path, words):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + words) + "\n", encoding="utf-8")
    return build_tokenizer("bert", vocab_path=vocab)


def build(tmp_path, text, words, processor, name=None, **options):
    corpus = tmp_path / f"{name or processor}.txt"
    corpus.write_text(text, encoding="utf-8")
    tok = tokenizer(tmp_path, words)
    prefix = tmp_path / (name or processor)
    preprocess(corpus, prefix, tok, PreprocessOptions(processor, **options), progress=False)
    return PretrainDataset(prefix), tok


def shown(instance, tok):
    n = int((instance["seg"] > 0).sum())
    return tok.convert_ids_to_tokens(instance["src"][:n].tolist())


# ---- sentence reordering -----------------------------------------------------------------------------
def test_permutation_classes_are_the_hand_table():
    assert reorder_classes(1) == 1 and reorder_classes(2) == 3 and reorder_classes(3) == 9
    assert reorder_classes(4) == 33 and reorder_classes(5) == 153
    for order, label in HAND_CLASSES.items():
        assert permutation_class(order) == label
        assert class_permutation(label) == order
    # every class of 4 segments once, and back
    labels = [permutation_class(p) for m in range(1, 5) for p in permutations(range(m))]
    assert sorted(labels) == list(range(33))
    assert all(permutation_class(class_permutation(c)) == c for c in range(153))
    with pytest.raises(ValueError, match="must be in \\[1, 5\\]"):
        reorder_classes(6)
    with pytest.raises(ValueError, match="not a permutation"):
        permutation_class([0, 2])


def test_sentence_reorder_labels_name_the_shown_order(tmp_path):
    # one document of six one-word sentences s0..s5: each shown segment is a run of them, its first word
    # tells which original segment it is
    words = [f"s{i}" for i in range(6)]
    ds, tok = build(tmp_path, "\n".join(words) + "\n", words, "sentence_reorder", seq_length=16,
                    sentence_reorder_segments=3)
    assert len(ds) == 1  # 6 tokens fit the budget 16 - 1 - 3: one chunk
    seen = set()
    for epoch in range(150):
        ds.set_epoch(epoch)
        x = ds[0]
        tokens = shown(x, tok)
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
        segments = " ".join(tokens[1:-1]).split(" [SEP] ")
        firsts = [int(segment.split()[0][1:]) for segment in segments]
        order = tuple(sorted(firsts).index(f) for f in firsts)
        assert int(x["tgt"]["sentence_reorder"]) == HAND_CLASSES[order]
        # the segments, put back in order, are the paragraph; segment ids alternate 1, 2, 1 with each [SEP]
        assert " ".join(s for _, s in sorted(zip(firsts, segments))) == " ".join(words)
        seps = [i for i, t in enumerate(tokens) if t == "[SEP]"]
        assert [int(x["seg"][i]) for i in seps] == [1 + j % 2 for j in range(len(seps))]
        seen.add(order)
    assert seen == set(HAND_CLASSES)  # 150 epochs draw every class of 1..3 segments


def test_sentence_reorder_cuts_a_one_sentence_paragraph_at_tokens(tmp_path):
    ds, tok = build(tmp_path, "a b c d e\n", list("abcde"), "sentence_reorder", seq_length=16)
    for epoch in range(20):
        ds.set_epoch(epoch)
        segments = " ".join(shown(ds[0], tok)[1:-1]).split(" [SEP] ")
        firsts = [s.split()[0] for s in segments]
        order = tuple(sorted(firsts).index(f) for f in firsts)
        assert int(ds[0]["tgt"]["sentence_reorder"]) == HAND_CLASSES[order]


# ---- sentence distance -------------------------------------------------------------------------------
def test_sentence_distance_classes(tmp_path):
    docs = {"a": 5, "b": 4, "c": 2}
    words = [f"{d}{i}" for d, n in docs.items() for i in range(n)]
    text = "\n\n".join("\n".join(f"{d}{i}" for i in range(n)) for d, n in docs.items()) + "\n"
    ds, tok = build(tmp_path, text, words, "sentence_distance", seq_length=8)
    # anchors: sentences with a next one and a non-adjacent one in their document (a0-a3, b0-b2; c has none)
    assert len(ds) == 7
    counts = np.zeros(3, int)
    for epoch in range(30):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            x = ds[i]
            cls_, a, sep1, b, sep2 = shown(x, tok)
            assert (cls_, sep1, sep2) == ("[CLS]", "[SEP]", "[SEP]") and x["seg"][:5].tolist() == [1, 1, 1, 2, 2]
            same, step = a[0] == b[0], int(b[1:]) - int(a[1:])
            expected = 2 if not same else 0 if step == 1 else 1 if abs(step) > 1 else None
            assert expected is not None, f"{a} -> {b}: neither adjacent, nor apart, nor another document"
            assert int(x["tgt"]["sentence_distance"]) == expected, (a, b)
            counts[expected] += 1
    assert counts.min() > 0.25 * counts.sum()  # the three classes about equally often (210 draws)


# ---- token-document relation -------------------------------------------------------------------------
def test_token_document_relation_per_word(tmp_path):
    # one document of four sentences: two segments of two sentences each (at most half the document).
    # stop_tokens_num 1: the most frequent token ('.', also punctuation) and the special tokens get no label.
    text = "the cat sat .\nthe dog playing .\nplay sun .\ncat ran .\n\nsun sun .\n"
    words = [".", "the", "cat", "sat", "dog", "play", "##ing", "sun", "ran"]
    ds, tok = build(tmp_path, text, words, "token_document", seq_length=32, stop_tokens_num=1)
    meta = json.loads((tmp_path / "token_document.json").read_text())["token_document"]
    assert set(meta["stop_ids"]) == {tok.vocab.token_to_id["."]} | {tok.special_id(r) for r in
                                                                    ("pad", "unk", "cls", "sep", "mask")}
    assert meta["continuation_ids"] == [tok.vocab.token_to_id["##ing"]]
    assert len(ds) == 2  # the one-sentence document gives no segment (nothing outside it)
    labelled = [list(zip(shown(ds[i], tok), ds[i]["tgt"]["token_document"].tolist())) for i in range(2)]
    _ = -100
    # segment 1 against 'play sun . cat ran .': cat occurs there; 'play ##ing' is not the word 'play'
    assert labelled[0] == [("[CLS]", _), ("the", 0), ("cat", 1), ("sat", 0), (".", _), ("the", 0), ("dog", 0),
                           ("play", 0), ("##ing", _), (".", _), ("[SEP]", _)]
    # segment 2 against 'the cat sat . the dog playing .'
    assert labelled[1] == [("[CLS]", _), ("play", 0), ("sun", 0), (".", _), ("cat", 1), ("ran", 0), (".", _),
                           ("[SEP]", _)]


# ---- capitalization -----------------------------------------------------------------------------------
def test_capitalization_labels_of_the_cased_text(tmp_path):
    words = ["john", "smith", "moved", "to", "paris", "in", "1998", ".", "the", "un", "mc", "##donald", "'", "s",
             "!", "anna", "met", "nasa", "there"]  # no ',': it reads as [UNK] (punctuation: no label)
    text = "John Smith moved to Paris in 1998. The UN, McDonald's!\nanna met NASA there. Élan\n"
    ds, tok = build(tmp_path, text, words, "capitalization", seq_length=32)
    assert tok.do_lower_case  # the uncased vocabulary: the model sees lower case only
    _ = -100
    got = [list(zip(shown(ds[i], tok), ds[i]["tgt"]["capitalization"].tolist())) for i in range(len(ds))]
    assert got[0] == [("[CLS]", _), ("john", 1), ("smith", 1), ("moved", 0), ("to", 0), ("paris", 1), ("in", 0),
                      ("1998", _), (".", _), ("the", 1), ("un", 1), ("[UNK]", _), ("mc", 1), ("##donald", _), ("'", _),
                      ("s", 0), ("!", _), ("[SEP]", _)]
    # 'Élan' lower-cases and loses its accent to 'elan', not in the vocabulary: one [UNK], labelled by its É
    assert got[1] == [("[CLS]", _), ("anna", 0), ("met", 0), ("nasa", 1), ("there", 0), (".", _), ("[UNK]", 1),
                      ("[SEP]", _)]


def test_capitalization_windows_keep_the_labels_aligned(tmp_path):
    text = "Alpha beta Gamma delta Epsilon zeta Eta theta\n"
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    ds, tok = build(tmp_path, text, words, "capitalization", seq_length=4)
    flat = [(t, y) for i in range(len(ds)) for t, y in zip(shown(ds[i], tok), ds[i]["tgt"]["capitalization"].tolist())
            if t not in ("[CLS]", "[SEP]")]
    assert flat == [(w, int(w in ("alpha", "gamma", "epsilon", "eta"))) for w in words]


def test_capitalization_with_a_cased_vocabulary_warns(tmp_path):
    from uer_ds.tokenizers import CaseMismatchWarning

    (tmp_path / "c.txt").write_text("John met Anna.\n", encoding="utf-8")
    vocab = tmp_path / "cased.txt"
    vocab.write_text("\n".join(SPECIALS + ["John", "met", "Anna", "."]) + "\n", encoding="utf-8")
    tok = build_tokenizer("bert", vocab_path=vocab)
    with pytest.warns(CaseMismatchWarning, match="sees the capitals it is asked to predict"):
        preprocess(tmp_path / "c.txt", tmp_path / "o", tok, PreprocessOptions("capitalization"), progress=False)


# ---- discourse relation ---------------------------------------------------------------------------------
def test_discourse_pairs_from_crafted_documents():
    zh, _ = read_markers("zh")
    cls = {m: i for i, m in enumerate(zh)}
    doc = ["今天下雨了。", "但是我们还是去了公园。", "因为天气很好，所以人很多。", "他很累，不过很开心。"]
    assert discourse_pairs(doc, zh) == [("今天下雨了。", "我们还是去了公园。", cls["但是"]),
                                        ("但是我们还是去了公园。", "天气很好，所以人很多。", cls["因为"]),
                                        ("因为天气很好", "人很多。", cls["所以"]),
                                        ("他很累", "很开心。", cls["不过"])]
    en, _ = read_markers("en")
    cls = {m: i for i, m in enumerate(en)}
    doc = ["It rained.", "However, we went out.", "So it was fun.", "Sorry, but butter is\tnot a marker.",
           "For example, this one.", "Sorted out."]
    assert discourse_pairs(doc, en) == [("It rained.", "we went out.", cls["however"]),
                                        ("However, we went out.", "it was fun.", cls["so"]),
                                        ("Sorry", "butter is not a marker.", cls["but"]),
                                        ("Sorry, but butter is not a marker.", "this one.", cls["for example"])]


def test_discourse_dataset(tmp_path):
    markers = tmp_path / "markers.txt"
    markers.write_text("but\nbecause\n", encoding="utf-8")
    text = "we left .\nbut it rained .\n\nwe stayed because it rained .\nok .\n"
    words = ["we", "left", ".", "but", "it", "rained", "stayed", "because", "ok"]
    ds, tok = build(tmp_path, text, words, "discourse", seq_length=16, discourse_markers=str(markers))
    meta = json.loads((tmp_path / "discourse.json").read_text())
    assert meta["head_config"] == {"discourse_labels_num": 2}
    assert meta["discourse"]["pairs"] == {"but": 1, "because": 0}  # 'because' is not after a clause break
    x = ds[0]
    assert shown(x, tok) == ["[CLS]", "we", "left", ".", "[SEP]", "it", "rained", ".", "[SEP]"]
    assert int(x["tgt"]["discourse"]) == 0 and x["seg"][:9].tolist() == [1] * 5 + [2] * 4


def test_marker_lists_and_their_errors(tmp_path):
    for spec in ("zh", "en"):
        markers, _ = read_markers(spec)
        assert len(markers) >= 10 and len(set(markers)) == len(markers)
    bad = tmp_path / "m.txt"
    bad.write_text("but\nso\nBut\n", encoding="utf-8")
    with pytest.raises(TextFileError, match=r"m.txt:3: discourse marker 'But' is listed twice"):
        read_markers(str(bad))
    bad.write_text("but\n", encoding="utf-8")
    with pytest.raises(TextFileError, match=r"m.txt: 1 discourse marker\(s\): the discourse target needs at least 2"):
        read_markers(str(bad))
    with pytest.raises(FileNotFoundError, match="discourse_markers 'fr': neither a shipped list"):
        read_markers("fr")


def test_a_corpus_without_markers_fails_cleanly(tmp_path):
    (tmp_path / "c.txt").write_text("we left .\nit rained .\n", encoding="utf-8")
    tok = tokenizer(tmp_path, ["we", "left", ".", "it", "rained"])
    with pytest.raises(ValueError, match="c.txt: no sentence pair joined by a discourse marker"):
        preprocess(tmp_path / "c.txt", tmp_path / "o", tok, PreprocessOptions("discourse", discourse_markers="en"),
                   progress=False)
    assert not list(tmp_path.glob("o*"))


# ---- IR relevance -----------------------------------------------------------------------------------
def test_ir_relevance_dataset(tmp_path):
    text = "good book\tgood book here\t0\ngood book\tbad day\t2\n\nbook\tgood\t1\n"
    ds, tok = build(tmp_path, text, ["good", "book", "here", "bad", "day"], "ir_relevance", seq_length=16)
    assert [int(ds[i]["tgt"]["ir_relevance"]) for i in range(len(ds))] == [0, 2, 1]
    assert shown(ds[0], tok) == ["[CLS]", "good", "book", "[SEP]", "good", "book", "here", "[SEP]"]
    assert json.loads((tmp_path / "ir_relevance.json").read_text())["ir_relevance"]["pairs"] == {"0": 1, "1": 1, "2": 1}


@pytest.mark.parametrize("line,match", [
    ("query\ttitle\tlabel", r"ir.txt:2: label 'label' \(field 3\): must be 0 \(strong relevance\), 1 \(weak\) or 2"),
    ("q\tt\t3", r"ir.txt:2: label '3' \(field 3\)"),
    ("q\tt", r"ir.txt:2: an ir_relevance line is query<TAB>title<TAB>label; this one has 2"),
    ("\tt\t0", r"ir.txt:2: the query is empty"),
])
def test_bad_ir_lines_fail_cleanly(tmp_path, line, match):
    (tmp_path / "ir.txt").write_text("a\tb\t0\n" + line + "\n", encoding="utf-8")
    tok = tokenizer(tmp_path, ["a", "b", "q", "t"])
    with pytest.raises(TextFileError, match=match):
        preprocess(tmp_path / "ir.txt", tmp_path / "o", tok, PreprocessOptions("ir_relevance"), progress=False)
    assert not list(tmp_path.glob("o*"))


def test_shipped_ir_file_and_sample_corpus_run_through_every_processor(tmp_path):
    tok = build_tokenizer("bert", vocab_path=CORPORA / "vocab.txt")
    ir = preprocess(CORPORA / "ir_relevance.tsv", tmp_path / "ir", tok, PreprocessOptions("ir_relevance", 64),
                    progress=False)
    assert ir["label_counts"] == {"0": 500, "1": 500, "2": 500}
    for processor in ("token_document", "sentence_reorder", "sentence_distance"):
        preprocess(CORPORA / "reviews_bert.txt", tmp_path / processor, tok, PreprocessOptions(processor, 64),
                   progress=False)
        ds = PretrainDataset(tmp_path / processor)
        assert len(ds) > 1000 and ds[len(ds) - 1]["src"].shape == (64,)


def test_bad_ernie_options(tmp_path):
    tok = build_tokenizer("bert", vocab_path=CORPORA / "vocab.txt")
    with pytest.raises(ValueError, match="sentence_reorder_segments has value 6: must be in \\[1, 5\\]"):
        preprocess(CORPORA / "reviews_bert.txt", tmp_path / "o", tok,
                   PreprocessOptions("sentence_reorder", sentence_reorder_segments=6))
    with pytest.raises(ValueError, match="seq_length has value 6: sentence_reorder with 3 segments needs at least 7"):
        preprocess(CORPORA / "reviews_bert.txt", tmp_path / "o", tok, PreprocessOptions("sentence_reorder", 6))
    assert not list(tmp_path.glob("o*"))
