"""The `word` tokenizer (jieba) and subword features: segmentation against jieba itself on real lines,
character offsets, word vocabularies, the subword table, and an out-of-vocabulary word's representation."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

import jieba
import numpy as np
import pytest
import torch

from conftest import CORPORA, ROOT, shared
from uer_ds.config import ModelConfig
from uer_ds.models import build_model
from uer_ds.tokenizers import Vocab, build_tokenizer
from uer_ds.tokenizers.bert import is_cjk
from uer_ds.tokenizers.subword import SubwordTable

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def real_lines(limit: int = 400) -> list[str]:
    path = shared("corpora/book_review_cls.txt")
    lines = [line.split("\t", 1)[1] for line in path.read_text(encoding="utf-8").splitlines()[:limit]]
    return [line for line in lines if line.strip()]


@pytest.fixture(scope="module")
def word_vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "words.txt"
    words = ["这", "本书", "非常", "好看", "。", "北京", "hello,"]
    path.write_text("\n".join(SPECIALS + words) + "\n", encoding="utf-8")
    return path


def test_segmentation_equals_jieba_on_real_lines():
    """On every real line whose fields without CJK are plain letters/digits, the tokens are jieba.lcut's
    words minus white space (fields without CJK are whole tokens: English by white space)."""
    tok = build_tokenizer("word", vocab_path=CORPORA / "vocab.txt", do_lower_case=False)
    compared = 0
    for line in real_lines():
        fields = line.split()
        if not all(any(is_cjk(ord(c)) for c in f) or f.isalnum() for f in fields):
            continue
        assert tok.tokenize(line) == [w for w in jieba.lcut(line) if not w.isspace()], line
        compared += 1
    assert compared > 300


def test_english_is_split_by_white_space_and_chinese_by_jieba():
    tok = build_tokenizer("word", vocab_path=CORPORA / "vocab.txt", do_lower_case=True)
    text = "Hello, World!  这本书非常好看"
    assert tok.tokenize(text) == ["hello,", "world!"] + jieba.lcut("这本书非常好看")


def test_offsets_are_the_words_spans():
    tok = build_tokenizer("word", vocab_path=CORPORA / "vocab.txt", do_lower_case=False)
    for line in real_lines(100) + ["  前面有空格 and trailing  ", "a\u3000全角空格b"]:
        ids, spans = tok.encode_with_offsets(line)
        assert ids == tok.encode(line)
        assert [line[a:b] for a, b in spans] == tok.tokenize(line)
        assert all(a < b for a, b in spans) and all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))


def test_word_vocabulary_counts_the_tokenizers_words(tmp_path):
    lines = real_lines(200)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "uer_ds", "build-vocab", "--kind", "word", "--corpus_path",
                          str(corpus), "--output_path", str(tmp_path / "v.txt"), "--min_count", "2"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    vocab = (tmp_path / "v.txt").read_text(encoding="utf-8").splitlines()
    counts = Counter(w for line in lines for field in line.split()
                     for w in (jieba.lcut(field) if any(is_cjk(ord(c)) for c in field) else [field]))
    expected = {w for w, n in counts.items() if n >= 2}
    assert vocab[:5] == SPECIALS and set(vocab[5:]) == expected
    assert [counts[w] for w in vocab[5:]] == sorted((counts[w] for w in vocab[5:]), reverse=True)


def test_subword_table_rows_extended_ids_and_complete(word_vocab):
    chars = Vocab(SPECIALS + list("这本书非常好看北京天安门"))
    tok = build_tokenizer("word", vocab_path=word_vocab)
    table = SubwordTable(tok.vocab, chars)
    tok.use_subwords(table)
    ids = tok.encode("这本书非常好看，北京天安门")  # "，" and "天安门" are outside the word vocabulary
    V = len(tok.vocab)
    words = tok.tokenize("这本书非常好看，北京天安门")
    assert [tok.vocab.get(w, -1) for w in words] == [i if i < V else -1 for i in ids]
    assert sorted(i for i in ids if i >= V) == [V, V + 1] and tok.convert_ids_to_tokens(ids) == words
    rows = table.rows(np.array(ids))
    for word, row in zip(words, rows):
        expected = [chars.get(c, chars.get("[UNK]")) for c in word]
        assert row[:len(word)].tolist() == expected and (row[len(word):] == -1).all()
    assert table.rows(np.array([tok.vocab.get("[PAD]")]))[0].tolist() == [-1] * table.width
    assert table.rows(np.array([tok.vocab.get("[MASK]")]))[0, :2].tolist() == [chars.get("[MASK]"), -1]
    batch = table.complete({"src": torch.tensor([ids]), "seg": torch.ones(1, len(ids), dtype=torch.long),
                            "tgt": {"label": torch.tensor([1])}})
    assert batch["src"].max() < V and (batch["src"][0][torch.tensor(ids) >= V] == tok.unk_id).all()
    assert batch["tgt"]["sub"].shape == (1, len(ids), table.width) and batch["tgt"]["label"].tolist() == [1]


def test_subword_table_needs_an_unk_character():
    with pytest.raises(ValueError, match=r"the sub-vocabulary lacks \[UNK\]"):
        SubwordTable(Vocab(SPECIALS), Vocab(["[PAD]", "a"], source="chars.txt"))


def _model(subencoder: str, sub_vocab: int = 20) -> torch.nn.Module:
    cfg = ModelConfig.from_dict({"vocab_size": 12, "sub_vocab_size": sub_vocab, "subword_type": "char",
                                 "subencoder": subencoder, "emb_size": 8, "hidden_size": 8, "layers_num": 1,
                                 "sub_layers_num": 2, "kernel_size": 2, "dropout": 0.0, "encoder": "lstm",
                                 "embedding": ["word"], "target": ["lm"], "remove_embedding_layernorm": True})
    torch.manual_seed(0)
    return build_model(cfg).eval()


@pytest.mark.parametrize("subencoder", ["avg", "lstm", "gru", "cnn"])
def test_an_oov_word_has_a_representation_of_its_characters(subencoder):
    """Two words outside the vocabulary are both [UNK] to the word embedding; their characters tell them
    apart, and a word's representation depends only on its own characters (not on the row's padding)."""
    model = _model(subencoder)
    unk = 1
    src = torch.tensor([[unk, unk, unk, unk]])
    seg = torch.ones_like(src)
    sub = torch.full((1, 4, 5), -1)
    sub[0, 0, :2] = torch.tensor([5, 6])         # word "ab"
    sub[0, 1, :3] = torch.tensor([7, 8, 9])      # word "cde"
    sub[0, 2, :2] = torch.tensor([5, 6])         # "ab" again
    sub[0, 3, :1] = torch.tensor([1])            # the [UNK] token itself: its one character
    with torch.no_grad():
        emb = model.embedding(src, seg, sub)[0]  # (4, E)
        narrow = model.embedding(src[:, :1], seg[:, :1], sub[:, :1, :2])[0, 0]  # the same word, less padding
    assert not torch.allclose(emb[0], emb[1]) and not torch.allclose(emb[0], emb[3])
    torch.testing.assert_close(emb[0], emb[2])
    torch.testing.assert_close(emb[0], narrow, rtol=1e-5, atol=1e-6)


def test_avg_and_cnn_subencoders_compute_their_formula():
    model = _model("avg")
    table = model.embedding.subword.embedding.weight
    sub = torch.tensor([[[3, 4, 5, -1]]])
    with torch.no_grad():
        got = model.embedding.subword(sub)[0, 0]
    torch.testing.assert_close(got, table[[3, 4, 5]].mean(0))
    model = _model("cnn")
    conv, table = model.embedding.subword.subencoder.conv, model.embedding.subword.embedding.weight
    with torch.no_grad():
        got = model.embedding.subword(sub)[0, 0]
        x = torch.cat([torch.zeros(1, 8), table[[3, 4, 5]]])  # left padding of kernel_size - 1 = 1
        windows = [conv.weight.flatten(1) @ x[i:i + 2].T.flatten() + conv.bias for i in range(3)]
        expected = torch.relu(torch.stack(windows)).max(0).values
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_a_subword_model_refuses_a_batch_without_characters():
    model = _model("avg")
    with pytest.raises(ValueError, match=r"its batches need tgt\['sub'\]"):
        model.encode(torch.tensor([[3, 4]]), torch.ones(1, 2, dtype=torch.long))


@pytest.mark.parametrize("values, message", [
    ({"subword_type": "bpe"}, r"key 'subword_type' has value 'bpe': must be one of none, char"),
    ({"subword_type": "char", "subencoder": "transformer"}, r"key 'subencoder' has value 'transformer': must be "
                                                            r"one of avg, lstm, gru, cnn"),
    ({"subword_type": "char", "sub_layers_num": 0}, r"key 'sub_layers_num' has value 0: must be positive"),
])
def test_subword_config_errors(values, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict({"encoder": "lstm", "target": ["lm"], **values})


def test_subword_model_needs_its_character_vocabulary():
    cfg = ModelConfig.from_dict({"encoder": "lstm", "target": ["lm"], "subword_type": "char", "vocab_size": 9})
    with pytest.raises(ValueError, match=r"sub_vocab_size is 0: subword_type 'char' needs a character vocabulary"):
        build_model(cfg)


def test_subwords_need_the_word_tokenizer(tmp_path):
    (tmp_path / "chars.txt").write_text("\n".join(SPECIALS + ["a"]) + "\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "uer_ds", "model", "summary", "--config_path", "rnn/lstm",
                          "--vocab_path", str(CORPORA / "vocab.txt"), "--sub_vocab_path", str(tmp_path / "chars.txt"),
                          "--subword_type", "char"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and "need --tokenizer word, not 'bert'" in out.stderr, out.stderr


def test_word_datasets_and_pretraining_instances_with_characters(tmp_path):
    from uer_ds.data import MMapDataset, PreprocessOptions, PretrainDataset, collate, preprocess
    from uer_ds.tools.vocab import build_counted

    lines = (CORPORA / "reviews.txt").read_text(encoding="utf-8").splitlines()[:300]
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    build_counted([corpus], tmp_path / "words.txt", "word", min_count=3)
    build_counted([corpus], tmp_path / "chars.txt", "char")
    tok = build_tokenizer("word", vocab_path=tmp_path / "words.txt")
    preprocess(corpus, tmp_path / "ds", tok, PreprocessOptions("mlm", 48, dup_factor=1), progress=False)
    data = MMapDataset(tmp_path / "ds")
    assert [list(np.asarray(data[i])) for i in range(len(lines))] == [tok.encode(line) for line in lines]

    table = SubwordTable(tok.vocab, Vocab.load(tmp_path / "chars.txt"))
    ds = PretrainDataset(tmp_path / "ds", subwords=table)
    mask_row = table.rows(np.array([tok.mask_id]))[0]
    for i in range(0, len(ds), 7):
        x = ds[i]
        n = int((x["seg"] > 0).sum())
        assert np.array_equal(x["tgt"]["sub"][:n], table.rows(x["src"][:n]))  # the masked tokens' characters
        assert (x["tgt"]["sub"][n:] < 0).all()
        masked = x["src"][:n] == tok.mask_id
        assert (x["tgt"]["sub"][:n][masked] == mask_row).all()
    batch = collate([ds[i] for i in range(4)], pad_id=tok.pad_id)
    cfg = ModelConfig.from_dict({"vocab_size": tok.vocab_size, "sub_vocab_size": table.sub_vocab_size,
                                 "subword_type": "char", "subencoder": "gru", "emb_size": 16, "hidden_size": 16,
                                 "layers_num": 1, "encoder": "lstm", "embedding": ["word"], "target": ["mlm"],
                                 "data_processor": "mlm"})
    model = build_model(cfg)
    result = model(batch["src"], batch["tgt"], batch["seg"])
    result.loss.backward()
    assert torch.isfinite(result.loss) and model.embedding.subword.embedding.weight.grad.abs().sum() > 0
