"""The C tokenizer against the Python reference tokenizers (uer_ds/tokenizers), id for id."""
from __future__ import annotations

import unicodedata
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPORA, shared
from uer_ds.data import native
from uer_ds.tokenizers import Vocab, build_tokenizer
from uer_ds.tokenizers.bert import BertTokenizer, basic_tokenize
from uer_ds.tokenizers.simple import CharTokenizer, SpaceTokenizer

pytestmark = pytest.mark.skipif(not native.available(), reason=f"C extension not built: {native.IMPORT_ERROR}")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Text that exercises every rule: controls and NUL/U+FFFD dropped, odd white space, CJK and
# compatibility ideographs, accents, Hangul (NFD -> jamo), Greek sigma in every position, Turkish
# dotted I, non-Mn combining marks (canonical reordering), astral characters, long words, CRLF.
EDGE_TEXTS = [
    "Hello, WORLD! unaffable running$5 café CAFÉ naïve Ångström",
    "我爱北京天安门。中华人民共和国，成立于１９４９年！",
    "hel\x00lo\ufffd wor\u200bld a\x0bb a\u2028b a\x1cb a\x85b a\u3000b \t\r\n end",
    "ΣΑΣ ΟΔΟΣ. ΟΔΟΣ: ΑΣ.Β Σ ΑΣ, σας Ο'ΣΑΣ ΌΣΟΣ",
    "İstanbul İİ ǅemal Ǆ ᾼ ﬁ ß ẞ",
    "\u1d16d\u1d165 a\u0301\u0316 x\u302e\u0301y \U0001D16D\U0001D165",
    "\uf900\uf901\ufa0e \U0002F800 \u4e00\u9fff 豈",
    "한국어 텍스트 감사합니다",
    "emoji 😀👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and \U00020000\U0002A6D6",
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " " + "é" * 101,
    "tab\tsep\u00a0nbsp\u2003em\u202fnarrow \ufeffbom",
    "«quotes» — dash… ¿qué? ¡sí! 「括弧」『二重』〜",
]


def _vocab_for(texts: list[str], lower: bool) -> Vocab:
    """A vocabulary that covers the texts' words partly, so WordPiece matches, splits and fails."""
    words, chars = set(), set()
    for text in texts:
        for word in basic_tokenize(text, lower):
            chars.update(word)
            if len(word) > 1 and zlib.crc32(word.encode()) % 3:
                words.add(word[: max(1, len(word) // 2)])
    cont = sorted({"##" + c for c in chars if ord(c) % 2}) + ["##ing", "##ble", "##s"]
    return Vocab(SPECIALS + sorted(words) + sorted(c for c in chars if ord(c) % 5) + cont)


def _pairs(texts: list[str]):
    for lower in (True, False):
        vocab = _vocab_for(texts, lower)
        yield BertTokenizer(vocab, do_lower_case=lower)
        yield CharTokenizer(vocab, do_lower_case=lower)
        yield SpaceTokenizer(vocab, do_lower_case=lower)


@pytest.mark.parametrize("tok", list(_pairs(EDGE_TEXTS)), ids=lambda t: f"{t.kind}-lower{t.do_lower_case}")
def test_edge_cases_equal_python(tok):
    enc = native.native_encoder(tok)
    for text in EDGE_TEXTS:
        assert enc.encode(text) == tok.encode(text), text
        assert enc.encode(text.encode("utf-8")) == tok.encode(text), text


def test_known_outputs():
    tok = BertTokenizer(Vocab(SPECIALS + ["hello", ",", "world", "!", "un", "##aff", "##able", "我", "爱", "cafe", "北"]))
    enc = native.native_encoder(tok)
    ids = enc.encode("Hello, WORLD! unaffable 我爱北京 Café")
    assert tok.convert_ids_to_tokens(ids) == ["hello", ",", "world", "!", "un", "##aff", "##able", "我", "爱", "北",
                                              "[UNK]", "cafe"]


def _corpus_lines(path, fields: bool = False):
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            line = line.rstrip("\n")
            yield from (line.split("\t")[1:] if fields else [line])


def _assert_equal_on(tok, paths, fields=False):
    enc = native.native_encoder(tok)
    lines = 0
    for path in paths:
        for line in _corpus_lines(path, fields):
            lines += 1
            if enc.encode(line) != tok.encode(line):
                pytest.fail(f"{path}: C and Python differ on {line!r}: {enc.encode(line)} != {tok.encode(line)}")
    assert lines > 0


@pytest.mark.parametrize("kind,lower", [("bert", True), ("bert", False), ("char", False), ("char", True),
                                        ("space", False), ("space", True)])
def test_shipped_corpora_equal_python(kind, lower, sample_vocab):
    tok = build_tokenizer(kind, vocab_path=sample_vocab, do_lower_case=lower)
    _assert_equal_on(tok, [CORPORA / "reviews.txt", CORPORA / "reviews_bert.txt"])
    _assert_equal_on(tok, [CORPORA / "reviews_cls.txt"], fields=True)


SHARED_CORPORA = ["CLUECorpusSmall_sampled.txt", "CLUECorpusSmall_bert_sampled.txt", "CLUECorpusSmall_5000_lines_bert.txt",
                  "book_review_cls.txt", "literature_mini.txt", "literature_mini_bert.txt", "literature_mini_cls.txt",
                  "literature_mini_s2s.txt", "news-commentary-v13-en-zh_sampled.txt"]


@pytest.mark.parametrize("vocab,kind,lower,corpora", [
    ("google_zh_vocab.txt", "bert", True, SHARED_CORPORA),
    ("google_uncased_en_vocab.txt", "bert", True, ["news-commentary-v13-en-zh_sampled.txt", "literature_mini.txt"]),
    ("google_cased_en_vocab.txt", "bert", False, ["news-commentary-v13-en-zh_sampled.txt", "literature_mini.txt"]),
    ("google_zh_vocab.txt", "char", False, ["CLUECorpusSmall_5000_lines_bert.txt", "news-commentary-v13-en-zh_sampled.txt"]),
    ("google_zh_vocab.txt", "space", True, ["news-commentary-v13-en-zh_sampled.txt"]),
])
def test_shared_corpora_equal_python(vocab, kind, lower, corpora):
    tok = build_tokenizer(kind, vocab_path=shared(f"models/{vocab}"), do_lower_case=lower)
    _assert_equal_on(tok, [shared(f"corpora/{name}") for name in corpora])


def test_unicode_tables_follow_the_reference_rules():
    from uer_ds.data import unicode_tables

    flags = unicode_tables.build()[0]
    unicode_tables.check(flags)  # class, punctuation and white space of all 1.1M code points
    assert flags[0] & 3 == 0 and flags[0xFFFD] & 3 == 0  # NUL and U+FFFD dropped
    assert flags[ord("Σ")] & unicode_tables.SIGMA and flags[0x1D165] & unicode_tables.RARE


# ---- arbitrary input: never a crash; valid UTF-8 gives the Python ids --------------------------
_FUZZ_TEXTS = EDGE_TEXTS + ["abc def", "ab##c", "[UNK] [CLS]"]
_FUZZ_TOKENIZERS = list(_pairs(_FUZZ_TEXTS))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), which=st.integers(0, len(_FUZZ_TOKENIZERS) - 1))
def test_arbitrary_bytes(data, which):
    tok = _FUZZ_TOKENIZERS[which]
    enc = native.native_encoder(tok)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        with pytest.raises(native.CorpusError) as caught:
            enc.encode(data)
        assert caught.value.args[0] == "invalid UTF-8" and caught.value.args[1] == err.start
        return
    assert enc.encode(data) == tok.encode(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80),
       which=st.integers(0, len(_FUZZ_TOKENIZERS) - 1))
def test_arbitrary_text(text, which):
    tok = _FUZZ_TOKENIZERS[which]
    assert native.native_encoder(tok).encode(text) == tok.encode(text)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), mode=st.integers(0, 2))
def test_arbitrary_chunks_never_crash(data, mode):
    enc = native.native_encoder(_FUZZ_TOKENIZERS[0])
    try:
        out = enc.encode_chunk(data, mode, 0, True, True)
    except native.CorpusError as err:
        rule, offset, _ = err.args
        assert 0 <= offset <= len(data) and rule
        return
    assert len(out["ids"]) // 2 == len(out["word_starts"]) == sum(memoryview(out["seq_lengths"]).cast("i"))


# ---- word starts (whole-word masking) ---------------------------------------------------------
def test_word_starts_known_output():
    tok = BertTokenizer(Vocab(SPECIALS + ["北", "京", "是", "首", "都", ",", "hello", "##s", "world", "."]))
    enc = native.native_encoder(tok)
    ids, starts = enc.encode("北京 是 首都, hellos world.北京", word_starts=True)
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens == ["北", "京", "是", "首", "都", ",", "hello", "##s", "world", ".", "北", "京"]
    assert list(starts) == [1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0]


@settings(max_examples=50, deadline=None)
@given(words=st.lists(st.text(alphabet="我爱北京天安门abcxyz", min_size=1, max_size=5), min_size=1, max_size=20))
def test_word_starts_count_the_words_of_segmented_text(words):
    """Words joined by spaces: one start per word, the first token of each word's tokens."""
    vocab = Vocab(SPECIALS + list("我爱北京天安门") + ["ab", "##c", "x", "##y", "##z", "a", "##b"])
    for tok in (BertTokenizer(vocab), CharTokenizer(vocab)):
        enc = native.native_encoder(tok)
        ids, starts = enc.encode(" ".join(words), word_starts=True)
        per_word = [len(tok.encode(w)) for w in words]
        expected = [int(i == 0) for n in per_word for i in range(n)]
        assert list(starts) == expected and ids == tok.encode(" ".join(words))


def test_fallback_is_used_for_context_dependent_words():
    """Final sigma: 'ΟΔΟΣ' lower-cases to 'οδος' with a final ς; per-character mapping would give σ."""
    tok = BertTokenizer(Vocab(SPECIALS + ["οδος", "οδοσ", "σας"]))
    enc = native.native_encoder(tok)
    assert tok.convert_ids_to_tokens(enc.encode("ΟΔΟΣ ΣΑΣ")) == ["οδος", "σας"]
    assert unicodedata.normalize("NFD", "ς") == "ς"


def test_native_needs_unk_and_a_known_kind(tmp_path):
    with pytest.raises(ValueError, match=r"lacks special token\(s\) \[UNK\]"):
        native.native_encoder(BertTokenizer(Vocab(["a", "b"])))
    model = shared("models/cluecorpussmall_spm.model")
    with pytest.raises(ValueError, match="handles bert, char and space, not 'spm'"):
        native.native_encoder(build_tokenizer("spm", spm_model_path=model))
