"""Character offsets of tokens (Tokenizer.encode_with_offsets), for every registered tokenizer: the ids
are the tokenizer's own, the spans obey the contract, and they equal an outside reference where there
is one (Hugging Face `tokenizers` for BERT; the characters themselves for char and space)."""
from __future__ import annotations

import json

import pytest

from conftest import CORPORA, shared
from uer_ds.tokenizers import TOKENIZERS, Tokenizer, Vocab, build_tokenizer
from uer_ds.tokenizers.base import OffsetsUnsupported, gives_offsets

# The issue's cases: characters BERT drops inside a word (soft hyphen, zero-width space, a C0 control)
# must not split it, in MRC windows as in pre-training.
ISSUE_TEXTS = ["The infor\u00admation desk of Micro\u200bsoft opened in 1998.",
               "The infor\x10mation desk of Micro\u200bsoft opened in 1998."]
ISSUE_TOKENS = ["the", "information", "desk", "of", "microsoft", "opened", "in", "1998", "."]

TRICKY = ISSUE_TEXTS + [
    "  Café naïve İstanbul ΟΔΟΣ Straße ﬁne  ",           # accents, expanding lower-case, ligature
    "《战国无双3》是由光荣和ω-force开发的 Hello World，USS Port Royal CG-73\u200b好 tokenization",
    "a\x00b\ufffdc \u3000 d\u2028e\u0085f\tg\r\nh", "\u0301x \u0301", "", "   ", "x" * 150 + " y",
    "emoji 😀👍🏽 and 𠀀 (outside the BMP)",
]


def contexts(limit: int = 60) -> list[str]:
    """Real contexts (CMRC) and English lines (news commentary), plus the tricky texts."""
    out = list(TRICKY)
    cmrc = shared("datasets/test_data/cmrc/train.json")
    for article in json.loads(cmrc.read_text(encoding="utf-8"))["data"]:
        out += [p["context"] for p in article["paragraphs"]]
    with open(shared("corpora/news-commentary-v13-en-zh_sampled.txt"), encoding="utf-8") as f:
        out += [line.rstrip("\n") for _, line in zip(range(limit), f)]
    return out


def make(kind: str, vocab: str = "google_zh_vocab.txt", lower=None) -> Tokenizer:
    if kind == "spm":
        return build_tokenizer("spm", spm_model_path=shared("models/cluecorpussmall_spm.model"), do_lower_case=lower)
    return build_tokenizer(kind, vocab_path=shared(f"models/{vocab}"), do_lower_case=lower)


def check_contract(tokenizer: Tokenizer, text: str) -> list[tuple[int, int]]:
    ids, spans = tokenizer.encode_with_offsets(text)
    assert ids == tokenizer.encode(text), text
    assert len(spans) == len(ids)
    assert all(0 <= a <= b <= len(text) for a, b in spans), (text, spans)
    assert all(a1 <= a2 and b1 <= b2 for (a1, b1), (a2, b2) in zip(spans, spans[1:])), (text, spans)
    return spans


@pytest.mark.data
def test_issue_case_bert_uncased_english_keeps_words_whole():
    tokenizer = make("bert", "google_uncased_en_vocab.txt")
    for text in ISSUE_TEXTS:
        ids, spans = tokenizer.encode_with_offsets(text)
        assert tokenizer.convert_ids_to_tokens(ids) == ISSUE_TOKENS
        assert [text[a:b] for a, b in spans][1] == text[4:16]  # 'infor?mation': the dropped character inside
        assert [text[a:b] for a, b in spans][4] == text[25:35]


@pytest.mark.data
@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
@pytest.mark.parametrize("lower", [False, True])
def test_every_registered_tokenizer_keeps_the_contract(kind, lower):
    tokenizer = make(kind, lower=lower)
    if not gives_offsets(tokenizer):
        with pytest.raises(OffsetsUnsupported, match=f"tokenizer '{tokenizer.kind}' cannot give"):
            tokenizer.encode_with_offsets("text")
        return
    for text in contexts():
        check_contract(tokenizer, text)


@pytest.mark.data
@pytest.mark.parametrize("vocab, lower", [("google_zh_vocab.txt", True), ("google_uncased_en_vocab.txt", True),
                                          ("google_cased_en_vocab.txt", False)])
def test_bert_spans_equal_hugging_face_offsets(vocab, lower):
    from tokenizers import BertWordPieceTokenizer

    ours = make("bert", vocab, lower)
    theirs = BertWordPieceTokenizer(str(shared(f"models/{vocab}")), lowercase=lower)
    compared = 0
    for text in contexts(limit=400):
        if "ΟΔΟΣ" in text:  # final sigma: Python lower-cases it by context, HF by character (other ids)
            continue
        ids, spans = ours.encode_with_offsets(text)
        encoding = theirs.encode(text, add_special_tokens=False)
        assert ids == encoding.ids, text
        assert spans == [tuple(o) for o in encoding.offsets], text
        compared += len(ids)
    assert compared > 20_000


@pytest.mark.data
@pytest.mark.parametrize("kind", ["char", "space"])
def test_char_and_space_spans_hold_their_token(kind):
    tokenizer = make(kind, lower=True)
    for text in contexts():
        ids, spans = tokenizer.encode_with_offsets(text)
        tokens = tokenizer.tokenize(text)
        if kind == "space":
            assert [text[a:b].lower() for a, b in spans] == tokens, text
        else:  # one character each; "İ" lower-cases to two, both spanning it; "Σ" to "ς" at a word end
            for token, (a, b) in zip(tokens, spans):
                assert b == a + 1 and token.casefold() in text[a].casefold(), text


@pytest.mark.data
def test_sentencepiece_spans_hold_the_piece():
    """Each piece's span is its surface in the text, as SentencePiece reports it, without the white
    space a '\u2581' piece begins with; the spans cover every non-space character once."""
    tokenizer = make("spm")
    sp = tokenizer.sp
    for text in contexts():
        ids, spans = tokenizer.encode_with_offsets(text)
        covered = [0] * len(text)
        for piece_id, (a, b) in zip(ids, spans):
            piece = sp.id_to_piece(piece_id).replace("\u2581", "")
            if piece_id != sp.unk_id() and piece:
                assert sp.normalize(text[a:b]).replace("\u2581", "") == piece, (text, text[a:b], piece)
            for i in range(a, b):
                covered[i] += 1
        assert all(c == 1 or (c == 0 and text[i].isspace()) for i, c in enumerate(covered)), text


def test_a_tokenizer_without_offsets_is_refused_by_mrc(tmp_path):
    from uer_ds.tasks import TASKS

    class NoOffsets(Tokenizer):
        kind = "nooffsets"

        def tokenize(self, text):
            return text.split()

    tokenizer = NoOffsets(Vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]))
    assert not gives_offsets(tokenizer) and gives_offsets(TOKENIZERS["bert"])
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"data": [{"paragraphs": [{"context": "a a", "qas": [
        {"id": "1", "question": "a", "answers": [{"text": "a", "answer_start": 0}]}]}]}]}))
    spec = {"doc_stride": 8, "max_query_length": 8, "max_answer_length": 4, "n_best_size": 2}
    able = ", ".join(k for k, cls in TOKENIZERS.items() if gives_offsets(cls))
    with pytest.raises(ValueError, match=f"--tokenizer nooffsets: reading comprehension needs each token's "
                                         f"character offsets .* use one that can \\({able}\\)"):
        TASKS["cmrc"].read(str(data), tokenizer, 32, spec, labelled=True)


def test_shipped_vocab_offsets_without_shared_data(sample_vocab):
    tokenizer = build_tokenizer("bert", vocab_path=sample_vocab)
    text = "这本书的情节\u00ad非常精彩。The plot is gripping!"
    ids, spans = tokenizer.encode_with_offsets(text)
    assert ids == tokenizer.encode(text)
    assert [text[a:b] for a, b in spans][:7] == ["这", "本", "书", "的", "情", "节", "非"]
    assert CORPORA.is_dir()
