"""Tokenizers against known outputs, and BERT ids against Hugging Face on thousands of real lines."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CORPORA, shared
from uer_ds.tokenizers import TOKENIZERS, Vocab, build_tokenizer
from uer_ds.tokenizers.bert import BertTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_bert(tokens, lower=True):
    return BertTokenizer(Vocab(SPECIALS + tokens), do_lower_case=lower)


def test_bert_basic_rules_known_outputs():
    tok = make_bert(["hello", "world", "un", "##aff", "##able", ",", "!", "cafe", "我", "爱", "北", "京", "runn",
                     "##ing", "$", "5"])
    assert tok.tokenize("Hello, WORLD!") == ["hello", ",", "world", "!"]
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tok.tokenize("Café") == ["cafe"]  # lower-cased, accent stripped
    assert tok.tokenize("我爱北京") == ["我", "爱", "北", "京"]  # CJK characters split
    assert tok.tokenize("running$5") == ["runn", "##ing", "$", "5"]  # ASCII symbols split like punctuation
    assert tok.tokenize("xyz") == ["[UNK]"]  # no piece matches
    assert tok.tokenize("hel\x00lo\ufffd wor\u200bld") == ["hello", "world"]  # NUL, U+FFFD, Cf dropped
    assert tok.tokenize("a" * 101) == ["[UNK]"]  # over-long word
    assert tok.tokenize(" \t\n\u3000 ") == []


def test_bert_control_and_space_characters():
    tok = make_bert(["ab", "a", "##b", "b"])
    assert tok.tokenize("a\x0bb") == ["ab"]  # vertical tab is a control character: dropped, not a space
    assert tok.tokenize("a\u2028b") == ["a", "b"]  # line separator is white space
    assert tok.tokenize("a\u200bb") == ["ab"]  # zero-width space (Cf): dropped


def test_cased_vocab_keeps_case_and_accents():
    tok = make_bert(["Café", "Hello"], lower=False)
    assert tok.tokenize("Café Hello") == ["Café", "Hello"]


def test_ids_tokens_and_text_round_trip(sample_vocab):
    tok = build_tokenizer("bert", vocab_path=sample_vocab)
    ids = tok.encode("这本书的情节非常精彩。The plot is gripping!")
    assert tok.unk_id not in ids
    assert tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(ids)) == ids
    assert tok.decode(ids).replace(" ", "") == "这本书的情节非常精彩。theplotisgripping!"
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.decode([tok.cls_id] + ids + [tok.sep_id]) == tok.decode(ids)
    assert tok.identity()["vocab_size"] == tok.vocab_size == len(sample_vocab.read_text().splitlines())


def test_char_and_space_tokenizers(tmp_path):
    vocab = tmp_path / "v.txt"
    vocab.write_text("\n".join(SPECIALS + ["我", "爱", "ab", "c"]) + "\n")
    char = build_tokenizer("char", vocab_path=vocab)
    assert char.tokenize("我 爱x") == ["我", "爱", "x"]
    assert char.encode("我 爱x") == [5, 6, 1]
    space = build_tokenizer("space", vocab_path=vocab)
    assert space.tokenize(" ab  c\td ") == ["ab", "c", "d"]
    assert space.encode("ab c d") == [7, 8, 1]


def test_sentencepiece_tokenizer_equals_the_library():
    import sentencepiece

    model = shared("models/cluecorpussmall_spm.model")
    tok = build_tokenizer("spm", spm_model_path=model)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    text = "中文预训练模型在多个任务上取得了很好的效果。"
    assert tok.encode(text) == sp.encode(text)
    assert tok.convert_tokens_to_ids(tok.tokenize(text)) == sp.encode(text)
    assert tok.decode(tok.encode(text)) == text
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    # a model without BERT's tokens falls back to its own conventions (and reports what it lacks)
    bpe = build_tokenizer("bert", spm_model_path=shared("models/sentencepiece.bpe.model"))
    assert bpe.special_tokens["cls"] == "<s>" and bpe.special_tokens["sep"] == "</s>"
    with pytest.raises(ValueError, match=r"lacks special token\(s\) \[MASK\]"):
        bpe.require_special("cls", "mask")


def test_build_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError,
                       match="tokenizer has value 'wordpiece': must be one of bert, char, space, word, spm"):
        build_tokenizer("wordpiece", vocab_path="x")
    with pytest.raises(FileNotFoundError, match="vocab_path '.*nope.txt': no such file"):
        build_tokenizer("bert", vocab_path=tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="needs vocab_path"):
        build_tokenizer("char")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.txt: the vocabulary is empty"):
        build_tokenizer("bert", vocab_path=empty)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"[PAD]\n[UNK]\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1.txt:3: invalid UTF-8 at byte 15"):
        build_tokenizer("bert", vocab_path=latin1)
    assert set(TOKENIZERS) == {"bert", "char", "space", "word", "spm"}


@pytest.mark.data
def test_issue_case_a_cased_vocabulary_is_not_lower_cased_by_default():
    """google_cased_en_vocab.txt lower-cased by default turned 'John Smith ... Paris' into
    'j ##oh ##n s ##mith ... par ##is' (with 0 unknown tokens to warn anyone)."""
    text = "John Smith moved to Paris."
    cased = build_tokenizer("bert", vocab_path=shared("models/google_cased_en_vocab.txt"))
    assert not cased.do_lower_case
    assert cased.tokenize(text) == ["John", "Smith", "moved", "to", "Paris", "."]
    uncased = build_tokenizer("bert", vocab_path=shared("models/google_uncased_en_vocab.txt"))
    assert uncased.do_lower_case and uncased.tokenize(text) == ["john", "smith", "moved", "to", "paris", "."]
    assert build_tokenizer("bert", vocab_path=shared("models/google_zh_vocab.txt")).do_lower_case
    # SentencePiece: the vocabulary is the model's pieces
    assert build_tokenizer("spm", spm_model_path=shared("models/sentencepiece.bpe.model")).do_lower_case
    assert not build_tokenizer("spm", spm_model_path=shared("models/cluecorpussmall_spm.model")).do_lower_case


@pytest.mark.data
def test_do_lower_case_forced_against_the_vocabulary_is_a_warning_naming_both():
    from uer_ds.tokenizers import CaseMismatchWarning

    cased = shared("models/google_cased_en_vocab.txt")
    with pytest.warns(CaseMismatchWarning, match=r"do_lower_case is true, but the vocabulary .*google_cased_en_vocab"
                                                 r"\.txt is cased: 8,368 of its 27,055 entries with letters have"):
        forced = build_tokenizer("bert", vocab_path=cased, do_lower_case=True)
    assert forced.tokenize("John") == ["j", "##oh", "##n"]  # what the user asked for, warned
    with pytest.warns(CaseMismatchWarning, match=r"do_lower_case is false, but the vocabulary .*google_uncased_en"
                                                 r"_vocab\.txt is uncased: 2 of its 27,048"):
        build_tokenizer("bert", vocab_path=shared("models/google_uncased_en_vocab.txt"), do_lower_case=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # agreeing with the vocabulary, or a vocabulary without letters: quiet
        build_tokenizer("bert", vocab_path=cased, do_lower_case=False)
        build_tokenizer("char", vocab_path=make_vocab_file(shared, ["我", "爱"]), do_lower_case=True)


def make_vocab_file(_, tokens):
    import tempfile

    path = Path(tempfile.mkdtemp()) / "v.txt"
    path.write_text("\n".join(SPECIALS + tokens) + "\n", encoding="utf-8")
    return path


def test_vocab_lines_end_at_newline_only_and_a_bom_is_removed(tmp_path):
    """The Chinese BERT vocabulary has U+2028 entries (ids 343 and 13502): splitlines() would shift every
    later id.  A BOM written by an editor would otherwise turn [PAD] into '\ufeff[PAD]'."""
    path = tmp_path / "v.txt"
    path.write_bytes("\ufeff[PAD]\r\n[UNK]\n\u2028\n##\u2028\nx\u0085y\n".encode("utf-8"))
    vocab = Vocab.load(path)
    assert vocab.id_to_token == ["[PAD]", "[UNK]", "\u2028", "##\u2028", "x\u0085y"]
    assert build_tokenizer("bert", vocab_path=path).pad_id == 0


# ---- equality with Hugging Face on the real corpora --------------------------------------------
def _lines(path, column=None, limit=None):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if column is not None:
                fields = line.split("\t")
                if len(fields) <= column:
                    continue
                line = fields[column]
            if line.strip():
                out.append(line)
            if limit and len(out) >= limit:
                break
    return out


CASES = [  # (vocab, lower-case, corpus, TSV column)
    ("google_zh_vocab.txt", True, "corpora/CLUECorpusSmall_sampled.txt", None),
    ("google_zh_vocab.txt", True, "corpora/CLUECorpusSmall_bert_sampled.txt", None),
    ("google_zh_vocab.txt", True, "corpora/book_review_cls.txt", 1),
    ("google_zh_vocab.txt", True, "corpora/news-commentary-v13-en-zh_sampled.txt", None),
    ("google_uncased_en_vocab.txt", True, "corpora/news-commentary-v13-en-zh_sampled.txt", 0),
    ("google_cased_en_vocab.txt", False, "corpora/news-commentary-v13-en-zh_sampled.txt", 0),
]


@pytest.mark.data
@pytest.mark.parametrize("vocab, lower, corpus, column", CASES, ids=lambda v: str(v).split("/")[-1])
def test_bert_ids_equal_hugging_face_on_real_corpora(vocab, lower, corpus, column):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizer as HFBertTokenizer

    vocab_path, corpus_path = shared(f"models/{vocab}"), shared(corpus)
    lines = _lines(corpus_path, column)
    assert len(lines) >= 1000
    ours = build_tokenizer("bert", vocab_path=vocab_path, do_lower_case=lower)
    fast = BertWordPieceTokenizer(str(vocab_path), lowercase=lower)
    transformers_tok = HFBertTokenizer(str(vocab_path), do_lower_case=lower)
    expected = [e.ids for e in fast.encode_batch(lines, add_special_tokens=False)]
    mismatches = []
    for number, (line, want) in enumerate(zip(lines, expected), 1):
        got = ours.encode(line)
        if got != want:
            mismatches.append(f"{corpus}:{number}: {line[:80]!r}\n  ours {ours.convert_ids_to_tokens(got)[:20]}"
                              f"\n  HF   {ours.convert_ids_to_tokens(want)[:20]}")
    assert not mismatches, f"{len(mismatches)} of {len(lines)} lines differ:\n" + "\n".join(mismatches[:10])
    for line in lines[:500]:  # transformers' BertTokenizer agrees too
        assert ours.encode(line) == transformers_tok.convert_tokens_to_ids(transformers_tok.tokenize(line)), line


def test_shipped_corpus_is_fully_covered_by_its_vocab(sample_vocab):
    tok = build_tokenizer("bert", vocab_path=sample_vocab)
    lines = _lines(CORPORA / "reviews.txt")
    unknown = sum(tok.encode(line).count(tok.unk_id) for line in lines)
    assert len(lines) == 2000 and unknown == 0
