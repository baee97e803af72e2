"""uer-ds nearest-words (worked cosine example; contextual vectors from transformers), build-vocab and
diff-vocab (worked examples; tokenization against the `tokenizers` library), average (identity and
means)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tool_cases import VOCAB, hf_tokenizer, make

from uer_ds.cli import main
from uer_ds.config import ModelConfig
from uer_ds.models import build_model, load_model, save_model
from uer_ds.tokenizers import build_tokenizer
from uer_ds.tools.nearest import nearest_dependent

WORDS = VOCAB.read_text(encoding="utf-8").splitlines()


def _parse(text):
    """UER-py's output: 'Target word: w' then 'word<TAB>similarity' lines, blank between words."""
    blocks = {}
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        word = [l for l in lines if l.startswith("Target word: ")][0].removeprefix("Target word: ")
        blocks[word] = [(w, float(s)) for w, s in (l.split("\t") for l in lines if "\t" in l)]
    return blocks


def test_nearest_words_from_embeddings_worked_example(tmp_path, capsys):
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": len(WORDS), "emb_size": 4, "hidden_size": 4,
                                              "heads_num": 1, "feedforward_size": 8})
    model = build_model(cfg)
    table = torch.zeros(len(WORDS), 4)
    table[:, 3] = 1.0  # every other word points along axis 3: cosine 0 with the words below
    chosen = {"书": [1, 0, 0, 0], "的": [1, 1, 0, 0], "山": [1, 2, 0, 0], "石": [-1, 0, 0, 0], "好": [0, 1, 0, 0]}
    for word, vector in chosen.items():
        table[WORDS.index(word)] = torch.tensor(vector, dtype=torch.float)
    with torch.no_grad():
        model.embedding.word.embedding.weight.copy_(table)
    save_model(model, tmp_path / "m")
    (tmp_path / "w.txt").write_text("书\n", encoding="utf-8")
    assert main(["nearest-words", "--load_model_path", str(tmp_path / "m"), "--vocab_path", str(VOCAB),
                 "--test_path", str(tmp_path / "w.txt"), "--topn", "3"]) == 0
    got = _parse(capsys.readouterr().out)["书"]
    # cos(书, 的) = 1/sqrt(2), cos(书, 山) = 1/sqrt(5); 书 itself is never listed; then the cosine-0 words
    assert [w for w, _ in got[:2]] == ["的", "山"]
    assert got[0][1] == pytest.approx(1 / np.sqrt(2), abs=1e-4) and got[1][1] == pytest.approx(1 / np.sqrt(5), abs=1e-4)
    assert got[2][1] == pytest.approx(0.0, abs=1e-4)
    (tmp_path / "w2.txt").write_text("书\n\n的\n", encoding="utf-8")
    assert main(["nearest-words", "--load_model_path", str(tmp_path / "m"), "--vocab_path", str(VOCAB),
                 "--test_path", str(tmp_path / "w2.txt"), "--topn", "3"]) == 1
    assert "w2.txt:2: empty line: every line is a word" in capsys.readouterr().err


def test_nearest_words_in_context_match_transformers(tmp_path):
    hf, ours_dir = make("bert", tmp_path)
    candidates = ["书", "的", "山", "石", "好", "河", "人", "语", "言"]
    found = nearest_dependent(load_model(ours_dir), build_tokenizer("bert", VOCAB), [(1, "书", "这本书很好看。")],
                              topn=4, candidates=candidates, batch_size=3)[0].found
    tok = hf_tokenizer()
    ids = tok("这本书很好看。")["input_ids"]
    position = ids.index(tok.convert_tokens_to_ids("书"))
    with torch.no_grad():
        def vector(word):
            src = list(ids)
            src[position] = tok.convert_tokens_to_ids(word)
            return hf(input_ids=torch.tensor([src])).last_hidden_state[0, position].numpy()

        query = vector("书")
        sims = {w: float(np.dot(query, vector(w)) / np.linalg.norm(query) / np.linalg.norm(vector(w)))
                for w in candidates if w != "书"}
    expected = sorted(sims, key=sims.get, reverse=True)[:4]
    assert [w for w, _ in found] == expected
    assert [s for _, s in found] == pytest.approx([sims[w] for w in expected], abs=1e-5)
    with pytest.raises(ValueError, match="the word '山' is not a token of its context"):
        nearest_dependent(load_model(ours_dir), build_tokenizer("bert", VOCAB), [(4, "山", "这本书很好看。")],
                          candidates=candidates)


# ---- vocabularies -----------------------------------------------------------------------------------------
def test_build_wordpiece_vocab(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    corpus = VOCAB.parent / "reviews.txt"
    assert main(["build-vocab", "--corpus_path", str(corpus), "--output_path", str(tmp_path / "v.txt"),
                 "--vocab_size", "600"]) == 0
    tokens = (tmp_path / "v.txt").read_text(encoding="utf-8").splitlines()
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(tokens) <= 600
    ours = build_tokenizer("bert", tmp_path / "v.txt")
    reference = tokenizers.BertWordPieceTokenizer(str(tmp_path / "v.txt"), lowercase=True)
    lines = corpus.read_text(encoding="utf-8").splitlines()[:300]
    for line in lines:
        ids = ours.encode(line)
        assert ours.unk_id not in ids  # every character of the corpus made it in
        assert ids == reference.encode(line, add_special_tokens=False).ids


def test_build_sentencepiece_vocab(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    assert main(["build-vocab", "--corpus_path", str(VOCAB.parent / "reviews.txt"), "--output_path",
                 str(tmp_path / "sp"), "--vocab_size", "400", "--kind", "sentencepiece"]) == 0
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    assert [sp.id_to_piece(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert sp.get_piece_size() == 400
    ours = build_tokenizer("spm", spm_model_path=tmp_path / "sp.model")
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 1, 2, 3, 4)
    assert "[MASK]" in ours.tokenize("这本书[MASK]好看")  # one piece, never split


def test_build_counted_vocab_worked_example(tmp_path):
    (tmp_path / "c.txt").write_text("书书的\n的 山\n好书\n", encoding="utf-8")
    assert main(["build-vocab", "--corpus_path", str(tmp_path / "c.txt"), "--output_path", str(tmp_path / "v.txt"),
                 "--kind", "char", "--min_count", "2"]) == 0
    # counts: 书 3, 的 2, 山 1, 好 1 -> with min_count 2: 书, 的 after the special tokens
    assert (tmp_path / "v.txt").read_text(encoding="utf-8").splitlines() == \
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "书", "的"]
    (tmp_path / "s.txt").write_text("\ufeffx y x\nz x y\n", encoding="utf-8")  # a BOM is not part of 'x'
    assert main(["build-vocab", "--corpus_path", str(tmp_path / "s.txt"), "--output_path", str(tmp_path / "s_v.txt"),
                 "--kind", "space"]) == 0
    assert (tmp_path / "s_v.txt").read_text(encoding="utf-8").splitlines()[5:] == ["x", "y", "z"]


def test_diff_vocab_worked_example(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("b\nc\nd\ne\n", encoding="utf-8")
    assert main(["diff-vocab", "--vocab_1", str(tmp_path / "a.txt"), "--vocab_2", str(tmp_path / "b.txt"),
                 "--show", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2:] == ["vocab_1 - vocab_2 = 1", "vocab_2 - vocab_1 = 2", "vocab_1 & vocab_2 = 2",
                       "only in vocab_1: a", "only in vocab_2: d e"]
    assert out[0].endswith("size: 3") and out[1].endswith("size: 4")
    # a token is the whole line, as the tokenizers read it: U+2028 is a token, '##\u2028' is not '##'
    (tmp_path / "c.txt").write_text("a\n\u2028\n##\u2028\n", encoding="utf-8")
    (tmp_path / "d.txt").write_text("\ufeffa\t-1.5\n##\t-2\n", encoding="utf-8")  # SentencePiece's .vocab
    assert main(["diff-vocab", "--vocab_1", str(tmp_path / "c.txt"), "--vocab_2", str(tmp_path / "d.txt"),
                 "--show", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2:5] == ["vocab_1 - vocab_2 = 2", "vocab_2 - vocab_1 = 1", "vocab_1 & vocab_2 = 1"]


# ---- averaging ----------------------------------------------------------------------------------------------
def _model(seed, **overrides):
    torch.manual_seed(seed)
    return build_model(ModelConfig.from_json("bert/tiny", {"vocab_size": 60, **overrides}))


def test_average_of_identical_checkpoints_is_the_identity(tmp_path):
    save_model(_model(0), tmp_path / "a")
    save_model(_model(0), tmp_path / "b")
    assert main(["average", "--model_list_path", str(tmp_path / "a"), str(tmp_path / "b"),
                 "--output_model_path", str(tmp_path / "avg")]) == 0
    original, averaged = load_model(tmp_path / "a").state_dict(), load_model(tmp_path / "avg").state_dict()
    assert all(torch.equal(original[k], averaged[k]) for k in original)
    assert json.loads((tmp_path / "avg" / "config.json").read_text()) == \
        json.loads((tmp_path / "a" / "config.json").read_text())


def test_average_is_the_mean_and_checks_its_inputs(tmp_path, capsys):
    a, b, c = _model(0), _model(1), _model(2)
    for name, model in zip("abc", (a, b, c)):
        save_model(model, tmp_path / name)
    assert main(["average", "--model_list_path", *(str(tmp_path / n) for n in "abc"),
                 "--output_model_path", str(tmp_path / "avg")]) == 0
    got = load_model(tmp_path / "avg").state_dict()
    for key, value in a.state_dict().items():
        expected = (value.double() + b.state_dict()[key].double() + c.state_dict()[key].double()) / 3
        torch.testing.assert_close(got[key], expected.float(), rtol=0, atol=1e-7)
    # UER-py .bin files average into a .bin
    for name, model in zip("ab", (a, b)):
        torch.save(model.state_dict(), tmp_path / f"{name}.bin")
    assert main(["average", "--model_list_path", str(tmp_path / "a.bin"), str(tmp_path / "a.bin"),
                 "--output_model_path", str(tmp_path / "avg.bin")]) == 0
    averaged = torch.load(tmp_path / "avg.bin", weights_only=True)
    assert all(torch.equal(averaged[k], v) for k, v in a.state_dict().items())
    capsys.readouterr()
    save_model(_model(0, hidden_act="relu"), tmp_path / "relu")
    assert main(["average", "--model_list_path", str(tmp_path / "a"), str(tmp_path / "relu"),
                 "--output_model_path", str(tmp_path / "bad")]) == 1
    assert "model config differs from" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["average", "--model_list_path", str(tmp_path / "a"), "--output_model_path", str(tmp_path / "x")]) == 1
    assert "two or more" in capsys.readouterr().err
