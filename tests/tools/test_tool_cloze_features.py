"""uer-ds cloze and extract-features against transformers: ids from transformers' BertTokenizer over the
same vocabulary, predictions and hidden states from the Hugging Face model the uer_ds one came from."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tool_cases import TOL, VOCAB, hf_tokenizer, make

from uer_ds.cli import main
from uer_ds.models import load_model
from uer_ds.tokenizers import build_tokenizer
from uer_ds.tools.cloze import cloze

LINES = ["这本书的语言非常紧凑。", "情节写得[MASK]凑，让人印象[MASK]深。", "What a charming prose!", "我是在周末读完这本书的。"]


@pytest.fixture(scope="module")
def mlm(tmp_path_factory):
    return make("bert-mlm", tmp_path_factory.mktemp("mlm"))


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    return make("bert", tmp_path_factory.mktemp("bert"))


def test_cloze_predictions_are_transformers_top_n(mlm):
    hf, ours_dir = mlm
    tok = hf_tokenizer()
    items = cloze(load_model(ours_dir), build_tokenizer("bert", VOCAB), list(enumerate(LINES, 1)), topn=5, seed=3)
    for item, line in zip(items, LINES):
        expected_ids = tok(line)["input_ids"]  # [CLS] ... [SEP]; [MASK] stays one token
        if item.answers[0] is not None:  # a plain line: one position was masked, its token is the answer
            (position,) = item.positions
            assert 1 <= position <= len(expected_ids) - 2 and expected_ids[position] == item.answers[0]
            expected_ids[position] = tok.mask_token_id
        assert item.ids == expected_ids
        with torch.no_grad():
            probs = hf(input_ids=torch.tensor([expected_ids])).logits[0].softmax(-1)  # (T, V)
        for position, predictions in zip(item.positions, item.predictions):
            top = probs[position].topk(5)
            assert [i for i, _ in predictions] == top.indices.tolist()
            torch.testing.assert_close(torch.tensor([p for _, p in predictions]), top.values, **TOL)
    assert items[1].positions == [5, 12]  # [CLS] 情 节 写 得 [MASK] 凑 ， 让 人 印 象 [MASK]
    again = cloze(load_model(ours_dir), build_tokenizer("bert", VOCAB), list(enumerate(LINES, 1)), topn=5, seed=3)
    assert [i.positions for i in again] == [i.positions for i in items]  # the seed picks the positions


def test_cloze_command_writes_uer_format(mlm, tmp_path, capsys):
    hf, ours_dir = mlm
    (tmp_path / "in.txt").write_text("情节写得[MASK]凑。\n", encoding="utf-8")
    assert main(["cloze", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--test_path",
                 str(tmp_path / "in.txt"), "--topn", "3", "--prediction_path", str(tmp_path / "out.txt")]) == 0
    sentence, predicted, blank = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:3]
    tok = hf_tokenizer()
    with torch.no_grad():
        logits = hf(**tok("情节写得[MASK]凑。", return_tensors="pt")).logits[0, 5]
    assert sentence == "情节写得[MASK]凑。" and blank == ""
    assert predicted == "Predicted answer: " + " ".join(tok.convert_ids_to_tokens(logits.topk(3).indices))
    (tmp_path / "long.txt").write_text("这本书" * 30 + "[MASK]\n", encoding="utf-8")
    assert main(["cloze", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--test_path",
                 str(tmp_path / "long.txt"), "--seq_length", "32"]) == 1
    assert "long.txt:1: a [MASK] lies beyond seq_length (32)" in capsys.readouterr().err


@pytest.mark.parametrize("pooling", ["first", "mean", "max", "last", "none"])
def test_features_are_transformers_hidden_states(body, pooling, tmp_path):
    hf, ours_dir = body
    (tmp_path / "in.txt").write_text("\n".join(LINES[:1] + LINES[2:]) + "\n", encoding="utf-8")
    out = tmp_path / ("f.pt" if pooling == "none" else "f.npy")
    assert main(["extract-features", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--test_path",
                 str(tmp_path / "in.txt"), "--prediction_path", str(out), "--pooling", pooling,
                 "--batch_size", "2"]) == 0
    got = torch.load(out, weights_only=True) if pooling == "none" else torch.from_numpy(np.load(out))
    tok = hf_tokenizer()
    for row, line in enumerate(LINES[:1] + LINES[2:]):
        ids = [tok.cls_token_id] + tok(line, add_special_tokens=False)["input_ids"]  # UER-py: [CLS] + tokens
        with torch.no_grad():
            hidden = hf(input_ids=torch.tensor([ids])).last_hidden_state[0]  # (T, H)
        expected = {"first": hidden[0], "mean": hidden.mean(0), "max": hidden.max(0).values, "last": hidden[-1],
                    "none": hidden}[pooling]
        torch.testing.assert_close(got[row], expected, **TOL)


def test_features_refuse_ragged_npy(body, tmp_path, capsys):
    _, ours_dir = body
    (tmp_path / "in.txt").write_text("一\n", encoding="utf-8")
    assert main(["extract-features", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--test_path",
                 str(tmp_path / "in.txt"), "--prediction_path", str(tmp_path / "f.npy"), "--pooling", "none"]) == 1
    assert "write them to a .pt file" in capsys.readouterr().err
    assert not (tmp_path / "f.npy").exists()
    assert main(["extract-features", "--load_model_path", str(ours_dir), "--vocab_path", "corpora/missing.txt",
                 "--test_path", str(tmp_path / "in.txt"), "--prediction_path", str(tmp_path / "f.npy")]) == 1
    assert "no such file" in capsys.readouterr().err


# ---- lines are the file's lines: '\n' only, blank lines kept in place ------------------------------
# The issue's case: U+0085 (NEL) and U+2028 (LINE SEPARATOR) are characters of a line; str.splitlines()
# made 6 rows of these 5 lines, and dropped blank lines (row k no longer line k).
ODD_LINES = ["这本书的语言非常紧凑。", "情节\u0085写得很紧凑。", "What a charming prose!", "我是在\u2028周末读完的。", "好书。"]


def test_issue_case_five_lines_give_five_rows_each_its_lines_features(body, tmp_path, capsys):
    hf, ours_dir = body
    text = "\ufeff" + "\r\n".join(ODD_LINES[:2] + [""] + ODD_LINES[2:]) + "\n"  # BOM, CRLF, a blank line 3
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "f.npy"
    assert main(["extract-features", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--test_path",
                 str(tmp_path / "in.txt"), "--prediction_path", str(out), "--pooling", "first"]) == 0
    assert "1 blank line(s) (3) got NaN rows" in capsys.readouterr().out
    got = torch.from_numpy(np.load(out))
    assert got.shape[0] == 6 and torch.isnan(got[2]).all()
    tok = hf_tokenizer()
    for row, line in zip([0, 1, 3, 4, 5], ODD_LINES):
        ids = [tok.cls_token_id] + tok(line, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            expected = hf(input_ids=torch.tensor([ids])).last_hidden_state[0, 0]
        torch.testing.assert_close(got[row], expected, **TOL)


def test_issue_case_cloze_keeps_lines_whole_and_names_a_blank_line(mlm, tmp_path, capsys):
    _, ours_dir = mlm
    (tmp_path / "in.txt").write_text("\n".join(ODD_LINES) + "\n", encoding="utf-8")
    args = ["cloze", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--topn", "2"]
    assert main([*args, "--test_path", str(tmp_path / "in.txt"), "--prediction_path", str(tmp_path / "o.txt")]) == 0
    blocks = (tmp_path / "o.txt").read_text(encoding="utf-8").split("\n\n")
    assert len([b for b in blocks if b.strip()]) == 5
    (tmp_path / "blank.txt").write_text("一\n \n二\n", encoding="utf-8")
    assert main([*args, "--test_path", str(tmp_path / "blank.txt")]) == 1
    assert "blank.txt:2: empty line: every line is a sentence to fill in" in capsys.readouterr().err


def test_features_of_a_task_tsv_are_its_text_columns_as_the_classifier_reads_them(body, tmp_path, capsys):
    """A classifier's TSV (label, text_a, text_b): one row per data row, the header and the label not text;
    each row is [CLS] text_a [SEP] text_b [SEP] with segments A/B, as transformers' tokenizer pairs them."""
    hf, ours_dir = body
    pairs = [("1", LINES[0], LINES[3]), ("0", LINES[2], "好书。")]
    (tmp_path / "train.tsv").write_text("label\ttext_a\ttext_b\n" + "".join("\t".join(p) + "\n" for p in pairs),
                                        encoding="utf-8")
    out = tmp_path / "f.npy"
    assert main(["extract-features", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--test_path",
                 str(tmp_path / "train.tsv"), "--prediction_path", str(out), "--pooling", "mean"]) == 0
    assert "a task TSV: 2 row(s) of text_a + text_b" in capsys.readouterr().out
    got = torch.from_numpy(np.load(out))
    assert got.shape[0] == 2
    tok = hf_tokenizer()
    for row, (_, a, b) in enumerate(pairs):
        enc = tok(a, b, return_tensors="pt")  # [CLS] a [SEP] b [SEP], token_type_ids 0 then 1
        with torch.no_grad():
            expected = hf(**enc).last_hidden_state[0].mean(0)
        torch.testing.assert_close(got[row], expected, **TOL)
    (tmp_path / "bad.tsv").write_text("label\ttext_a\n1\t\n", encoding="utf-8")
    assert main(["extract-features", "--load_model_path", str(ours_dir), "--vocab_path", str(VOCAB), "--test_path",
                 str(tmp_path / "bad.tsv"), "--prediction_path", str(out)]) == 1
    assert "bad.tsv:2: text_a is empty" in capsys.readouterr().err
