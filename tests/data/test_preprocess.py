"""Corpus -> .bin/.idx -> ids: round trips against the tokenizers, workers, and bad input."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import CORPORA, ROOT, shared
from uer_ds.data import MMapDataset, PreprocessOptions, preprocess, write_dataset
from uer_ds.data import preprocessing as preprocess_module
from uer_ds.data.mmap_dataset import BIN_HEADER, IDX_HEADER
from uer_ds.tokenizers import Vocab, build_tokenizer
from uer_ds.tokenizers.bert import BertTokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("bert", vocab_path=CORPORA / "vocab.txt")


def run(corpus, out, tokenizer, target="mlm", processes=1, **options):
    return preprocess(corpus, out, tokenizer, PreprocessOptions(data_processor=target, seq_length=64, **options),
                      processes_num=processes, progress=False)


def outputs(prefix) -> list[str]:
    folder, name = os.path.split(prefix)
    return sorted(f for f in os.listdir(folder) if f.startswith(name))


# ---- round trips -------------------------------------------------------------------------------
def read_documents(path, corpus_format):
    """The corpus's documents as lists of texts, read independently of the code under test."""
    docs, current = [], []
    with open(path, encoding="utf-8-sig") as f:
        for line in f.read().split("\n"):
            line = line.rstrip("\r")
            if corpus_format == "bert":
                if not line.strip():
                    if current:
                        docs.append(current)
                    current = []
                else:
                    current.append(line)
            elif line.strip():
                docs.append(line.split("\t")[1:] if corpus_format == "cls" else [line])
    if current:
        docs.append(current)
    return docs


@pytest.mark.parametrize("name,target,fmt", [("reviews.txt", "mlm", "lines"), ("reviews_bert.txt", "bert", "bert"),
                                             ("reviews_cls.txt", "cls", "cls")])
def test_round_trip_every_document(tmp_path, tok, name, target, fmt):
    meta = run(CORPORA / name, tmp_path / "out", tok, target)
    ds = MMapDataset(tmp_path / "out")
    docs = read_documents(CORPORA / name, fmt)
    assert ds.num_documents == len(docs) == meta["counts"]["documents"]
    for d, texts in enumerate(docs):
        sequences = ds.document_sequences(d)
        assert [s.tolist() for s in sequences] == [tok.encode(t) for t in texts]
        assert tok.convert_ids_to_tokens(ds.document(d).tolist()) == [t for x in texts for t in tok.tokenize(x)]
    ds.validate()
    assert meta["tokenizer"] == tok.identity() and meta["vocab_size"] == tok.vocab_size == 417
    assert meta["data_processor"] == target and meta["seq_length"] == 64
    assert ds.dtype == np.uint16 and ds.num_tokens == meta["counts"]["tokens"]
    if fmt == "cls":
        labels = [int(line.split("\t")[0]) for line in (CORPORA / name).read_text(encoding="utf-8").splitlines()]
        assert ds.labels.tolist() == labels and meta["labels_num"] == 2
    disk = os.path.getsize(tmp_path / "out.bin") + os.path.getsize(tmp_path / "out.idx")
    padding = 4 * len(ds) % 8  # the int64 offsets start 8-byte aligned
    assert disk == 24 + 2 * ds.num_tokens + 48 + 12 * len(ds) + padding + 8 * (ds.num_documents + 1) + \
        (8 * ds.num_documents if fmt == "cls" else 0)
    assert outputs(tmp_path / "out") == ["out.bin", "out.idx", "out.json"]


def test_workers_and_chunks_give_identical_files(tmp_path, tok, monkeypatch):
    """P workers over byte ranges and small chunks (documents split across both) == one pass."""
    corpus = CORPORA / "reviews_bert.txt"
    run(corpus, tmp_path / "one", tok, "bert", whole_word_masking=True)
    monkeypatch.setattr(preprocess_module, "CHUNK_BYTES", 997)
    run(corpus, tmp_path / "three", tok, "bert", processes=3, whole_word_masking=True)
    a, b = MMapDataset(tmp_path / "one"), MMapDataset(tmp_path / "three")
    for name in ("lengths", "offsets", "doc_idx", "tokens"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.word_starts(0, a.num_tokens), b.word_starts(0, b.num_tokens))
    # the bytes after the run id are identical
    for suffix, head in ((".bin", BIN_HEADER.size), (".idx", IDX_HEADER.size)):
        one, three = (open(str(tmp_path / n) + suffix, "rb").read() for n in ("one", "three"))
        assert one[head:] == three[head:] and one[:16] == three[:16]


def test_shared_corpus_round_trip_with_workers(tmp_path):
    vocab = shared("models/google_zh_vocab.txt")
    tok = build_tokenizer("bert", vocab_path=vocab)
    corpus = shared("corpora/CLUECorpusSmall_bert_sampled.txt")
    run(corpus, tmp_path / "zh", tok, "albert", processes=2)
    ds = MMapDataset(tmp_path / "zh")
    docs = read_documents(corpus, "bert")
    assert ds.num_documents == len(docs)
    for d in range(0, len(docs), 7):
        assert [s.tolist() for s in ds.document_sequences(d)] == [tok.encode(t) for t in docs[d]]


def test_crlf_bom_blank_and_whitespace_lines(tmp_path, tok):
    text = "第一行。\n\n这本书很好。\n   \t \n\u3000\nThe END.\n"
    (tmp_path / "lf.txt").write_text(text, encoding="utf-8")
    (tmp_path / "crlf.txt").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    meta_lf = run(tmp_path / "lf.txt", tmp_path / "lf", tok)
    meta_crlf = run(tmp_path / "crlf.txt", tmp_path / "crlf", tok)
    a, b = MMapDataset(tmp_path / "lf"), MMapDataset(tmp_path / "crlf")
    assert a.tokens.tolist() == b.tokens.tolist() == [i for line in ["第一行。", "这本书很好。", "The END."]
                                                      for i in tok.encode(line)]
    assert meta_lf["counts"]["blank_lines"] == meta_crlf["counts"]["blank_lines"] == 3
    assert len(a) == 3


def test_lines_without_tokens_are_skipped_and_counted(tmp_path, tok):
    (tmp_path / "c.txt").write_text("好书\n\x00\x01\u200b\n好书\n", encoding="utf-8")
    meta = run(tmp_path / "c.txt", tmp_path / "o", tok)
    assert meta["counts"]["empty_lines"] == 1 and meta["counts"]["documents"] == 2


def test_over_long_line(tmp_path, tok, monkeypatch):
    """A line far longer than a chunk is read whole (here 60x the chunk size)."""
    monkeypatch.setattr(preprocess_module, "CHUNK_BYTES", 4096)
    line = "这本书的情节非常精彩。" * 8000
    (tmp_path / "long.txt").write_text("短的一行。\n" + line + "\n最后。\n", encoding="utf-8")
    run(tmp_path / "long.txt", tmp_path / "o", tok, processes=2)
    ds = MMapDataset(tmp_path / "o")
    assert [len(ds[i]) for i in range(3)] == [len(tok.encode("短的一行。")), 11 * 8000, len(tok.encode("最后。"))]


def test_sentencepiece_goes_through_the_python_path(tmp_path):
    tok = build_tokenizer("bert", spm_model_path=shared("models/cluecorpussmall_spm.model"))
    corpus = shared("corpora/literature_mini.txt")
    meta = run(corpus, tmp_path / "spm", tok, "lm")
    ds = MMapDataset(tmp_path / "spm")
    lines = [x for x in corpus.read_text(encoding="utf-8").split("\n") if x.strip()]
    assert [ds[i].tolist() for i in range(len(ds))] == [tok.encode(x) for x in lines]
    assert meta["tokenizer"]["kind"] == "spm" and "spm_model_sha256" in meta["tokenizer"]


# ---- bad input: a clear error, nothing left behind ---------------------------------------------
def assert_fails_cleanly(tmp_path, match, corpus, tokenizer, target="mlm", processes=1, **options):
    with pytest.raises(ValueError, match=match):
        run(corpus, tmp_path / "out", tokenizer, target, processes, **options)
    assert outputs(tmp_path / "out") == []
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f or ".parts-" in f]


@pytest.mark.parametrize("processes", [1, 2])
def test_invalid_utf8_names_line_and_byte(tmp_path, tok, processes):
    good = "好书。\n" * 50
    data = good.encode() + b"bad \xe4\xb8 line\n" + good.encode()
    (tmp_path / "bad.txt").write_bytes(data)
    offset = len(good.encode()) + 4
    assert_fails_cleanly(tmp_path, rf"bad.txt: line 51 \(byte {offset}\): invalid UTF-8: e4 b8 20",
                         tmp_path / "bad.txt", tok, processes=processes)


def test_empty_and_blank_corpora(tmp_path, tok):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert_fails_cleanly(tmp_path, r"empty.txt: the corpus is empty \(0 bytes\)", tmp_path / "empty.txt", tok)
    (tmp_path / "blank.txt").write_text("\n  \n\t\n\u3000\n")
    assert_fails_cleanly(tmp_path, r"blank.txt: no text to train on \(4 lines: 4 blank, 0 without any token\)",
                         tmp_path / "blank.txt", tok)


def test_missing_special_tokens(tmp_path):
    (tmp_path / "c.txt").write_text("ab\n")
    no_mask = BertTokenizer(Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "##b"], source="nomask.txt"))
    assert_fails_cleanly(tmp_path, r"nomask.txt: the vocabulary lacks special token\(s\) \[MASK\]", tmp_path / "c.txt",
                         no_mask, "mlm")
    run(tmp_path / "c.txt", tmp_path / "lm", no_mask, "lm")  # lm needs no [MASK]
    bare = BertTokenizer(Vocab(["a", "##b"], source="bare.txt"))
    assert_fails_cleanly(tmp_path, r"bare.txt: the vocabulary lacks special token\(s\) \[PAD\], \[UNK\], \[CLS\], "
                                   r"\[SEP\]", tmp_path / "c.txt", bare, "lm")


def test_bad_options(tmp_path, tok):
    corpus = CORPORA / "reviews.txt"
    assert_fails_cleanly(tmp_path, "target \\(data processor\\) has value 'nsp': must be one of bert, albert, mlm",
                         corpus, tok, "nsp")
    assert_fails_cleanly(tmp_path, "full_sentences applies to targets mlm and lm, not bert", corpus, tok, "bert",
                         full_sentences=True)
    assert_fails_cleanly(tmp_path, "whole_word_masking and span_masking exclude each other", corpus, tok, "mlm",
                         whole_word_masking=True, span_masking=True)
    with pytest.raises(ValueError, match="seq_length has value 4: must be at least 5 for target bert"):
        preprocess(corpus, tmp_path / "o", tok, PreprocessOptions("bert", seq_length=4))
    with pytest.raises(FileNotFoundError, match="corpus_path '.*nope.txt': no such file"):
        run(tmp_path / "nope.txt", tmp_path / "o", tok)


@pytest.mark.parametrize("line,match", [
    ("x\ttext", r"line 2 \(byte 9\): the label of a cls line must be a non-negative integer below 10\^9: x"),
    ("-1\ttext", r"line 2 \(byte 9\): the label of a cls line must be a non-negative integer below 10\^9: -1"),
    ("1 text without a tab", r"line 2 \(byte 9\): a cls line must be label<TAB>text_a\[<TAB>text_b\]: 1 tab-separated"),
    ("1\ta\tb\tc", r"line 2 \(byte 9\): a cls line must be label<TAB>text_a\[<TAB>text_b\]: more than 3"),
])
def test_bad_cls_lines(tmp_path, tok, line, match):
    (tmp_path / "c.txt").write_text("0\t好书\n" + line + "\n1\t好\n", encoding="utf-8")
    assert_fails_cleanly(tmp_path, match, tmp_path / "c.txt", tok, "cls")


def test_cls_pairs_and_labels(tmp_path, tok):
    (tmp_path / "c.txt").write_text("3\t好书\t不好\n 0 \t书\n", encoding="utf-8")
    meta = run(tmp_path / "c.txt", tmp_path / "o", tok, "cls")
    ds = MMapDataset(tmp_path / "o")
    assert ds.labels.tolist() == [3, 0] and ds.doc_idx.tolist() == [0, 2, 3]
    assert meta["labels_num"] == 4 and meta["label_counts"] == {"0": 1, "3": 1}


def test_failed_run_keeps_the_previous_dataset(tmp_path, tok):
    (tmp_path / "good.txt").write_text("好书\n")
    run(tmp_path / "good.txt", tmp_path / "out", tok)
    before = {f: (tmp_path / f).read_bytes() for f in outputs(tmp_path / "out")}
    (tmp_path / "bad.txt").write_bytes(b"\xff\n")
    with pytest.raises(ValueError, match="invalid UTF-8"):
        run(tmp_path / "bad.txt", tmp_path / "out", tok)
    assert {f: (tmp_path / f).read_bytes() for f in outputs(tmp_path / "out")} == before


def test_cli_success_and_failure(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = [sys.executable, "-m", "uer_ds", "preprocess", "--vocab_path", str(CORPORA / "vocab.txt"), "--no_progress"]
    ok = subprocess.run(base + ["--corpus_path", str(CORPORA / "reviews_cls.txt"), "--dataset_path",
                                str(tmp_path / "cls.pt"), "--target", "cls", "--processes_num", "2"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"wrote {tmp_path / 'cls'}.bin" in ok.stdout and "2,000 documents" in ok.stdout
    assert json.loads((tmp_path / "cls.json").read_text())["counts"]["documents"] == 2000
    (tmp_path / "bad.txt").write_bytes(b"1\tok\n2\t\xc3\x28\n")
    bad = subprocess.run(base + ["--corpus_path", str(tmp_path / "bad.txt"), "--dataset_path", str(tmp_path / "bad"),
                                 "--target", "cls"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert "bad.txt: line 2 (byte 7): invalid UTF-8: c3 28" in bad.stderr
    assert not [f for f in os.listdir(tmp_path) if f.startswith("bad") and f != "bad.txt"]
    unknown = subprocess.run(base + ["--corpus_path", "x", "--target", "nsp"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and "invalid choice: 'nsp'" in unknown.stderr


@pytest.mark.data
def test_issue_case_cased_vocabulary_keeps_case_and_a_forced_mismatch_warns(tmp_path):
    """preprocess with google_cased_en_vocab.txt made 'j ##oh ##n s ##mith ... par ##is' and said '0 unknown'."""
    vocab = shared("models/google_cased_en_vocab.txt")
    (tmp_path / "en.txt").write_text("John Smith moved to Paris.\n", encoding="utf-8")
    base = [sys.executable, "-m", "uer_ds", "preprocess", "--vocab_path", str(vocab), "--no_progress", "--target",
            "mlm", "--seq_length", "16", "--corpus_path", str(tmp_path / "en.txt")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ok = subprocess.run(base + ["--dataset_path", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "warning" not in ok.stderr, ok.stderr
    tokenizer = build_tokenizer("bert", vocab_path=vocab)
    assert tokenizer.convert_ids_to_tokens(MMapDataset(tmp_path / "a")[0]) == ["John", "Smith", "moved", "to", "Paris",
                                                                               "."]
    assert json.loads((tmp_path / "a.json").read_text())["tokenizer"]["do_lower_case"] is False
    forced = subprocess.run(base + ["--dataset_path", str(tmp_path / "b"), "--do_lower_case", "true"],
                            capture_output=True, text=True, env=env)
    assert forced.returncode == 0
    assert f"uer-ds preprocess: warning: do_lower_case is true, but the vocabulary {vocab} is cased" in forced.stderr


# ---- the reader ---------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path):
    prefix = tmp_path / "small"
    write_dataset(prefix, [[[5, 6, 7], [8]], [[9, 10]]], vocab_size=100, labels=[1, 0],
                  word_starts=[[[1, 0, 1], [1]], [[1, 1]]])
    return prefix


def test_reader_access_and_pickle(small):
    ds = MMapDataset(small)
    assert len(ds) == 3 and ds.num_documents == 2 and ds.num_tokens == 6
    assert [ds[i].tolist() for i in range(3)] == [[5, 6, 7], [8], [9, 10]] and ds[-1].tolist() == [9, 10]
    assert ds.document(0).tolist() == [5, 6, 7, 8] and ds.labels.tolist() == [1, 0]
    assert ds.word_starts(1, 6).tolist() == [False, True, True, True, True]
    assert isinstance(ds.tokens, np.memmap)
    blob = pickle.dumps(ds)
    assert len(blob) < 300 and pickle.loads(blob)[0].tolist() == [5, 6, 7]
    with pytest.raises(IndexError, match="sequence 3 out of range"):
        ds[3]


def test_reader_int32_when_the_vocab_is_large(tmp_path):
    write_dataset(tmp_path / "big", [[[70000, 1]]], vocab_size=70001)
    ds = MMapDataset(tmp_path / "big")
    assert ds.dtype == np.int32 and ds[0].tolist() == [70000, 1]


def _corrupt(prefix, suffix, offset=None, data=None, truncate=None):
    path = str(prefix) + suffix
    raw = bytearray(open(path, "rb").read())
    if truncate is not None:
        raw = raw[:truncate]
    if data is not None:
        raw[offset:offset + len(data)] = data
    open(path, "wb").write(bytes(raw))
    return path


@pytest.mark.parametrize("suffix,change,match", [
    (".idx", dict(truncate=60), r"small.idx: truncated or corrupt: its header announces 3 sequences"),
    (".bin", dict(truncate=30), r"small.bin: truncated or corrupt: 6 tokens of 2 bytes need 36 bytes, the file has 30"),
    (".idx", dict(offset=0, data=b"MMIDIDX\x00"), r"small.idx: not a uer_ds index \(magic b'MMIDIDX\\x00'"),
    (".bin", dict(offset=0, data=b"XXXXXXXX"), r"small.bin: not a uer_ds token file"),
    (".idx", dict(offset=8, data=b"\x02\x00\x00\x00"), r"small.idx: format version 2; this uer_ds reads version 1"),
    (".idx", dict(offset=12, data=b"\x07"), r"small.idx: dtype code 7 is not one of \[1, 2\]"),
    (".bin", dict(offset=16, data=b"\x09"), r"small.bin and .*small.idx come from different preprocess runs"),
])
def test_reader_rejects_damaged_files(small, suffix, change, match):
    _corrupt(small, suffix, **change)
    with pytest.raises(ValueError, match=match):
        MMapDataset(small)


def test_reader_missing_files(tmp_path, small):
    with pytest.raises(FileNotFoundError, match=r"nothing.idx: no such file"):
        MMapDataset(tmp_path / "nothing")
    os.remove(str(small) + ".bin")
    with pytest.raises(FileNotFoundError, match=r"small.bin: no such file"):
        MMapDataset(small)
