"""Models fine-tuned by UER-py's run_classifier.py / run_ner.py (state dicts with UER-py's key names and
head layouts, both key layouts UER-py has used) predict with `uer-ds infer` as UER-py's inference scripts
do: the same labels and probabilities within 1e-5 of an independent forward written from UER-py's
module code (tests/uer_reference.py).  Also: the model-shape flags UER-py's inference commands repeat
are accepted when they agree with a saved model and refused, naming both values, when they do not."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import BertWordPieceTokenizer

import uer_reference as ref
from conftest import CORPORA
from uer_ds.cli import main

VOCAB = CORPORA / "vocab.txt"
H, LAYERS, HEADS, FFN, T = 32, 2, 4, 64, 40
CONFIG = {"emb_size": H, "hidden_size": H, "feedforward_size": FFN, "heads_num": HEADS, "layers_num": LAYERS,
          "max_seq_length": 64, "dropout": 0.1, "hidden_act": "gelu", "embedding": ["word", "pos", "seg"],
          "encoder": "transformer", "mask": "fully_visible", "target": ["mlm", "sp"], "tie_weights": True}
TEXTS = ["这本书的开头比较扎实。", "What a charming plot!", "后悔买了。人物写得生动，让人印象很深。一星",
         "《青瓦》的节奏比较空洞，读了一半就放下了。这是我今年读的第五本小说。这本书的开头比较扎实。"]
PAIRS = [("这本书的开头比较扎实。", "后悔买了。"), ("What a charming plot!", "I found the cover vivid."),
         ("值得一读。", "《青瓦》的节奏比较空洞，读了一半就放下了。")]


def vocab_size():
    return len(VOCAB.read_text(encoding="utf-8").splitlines())


def write_uer_model(tmp_path, head, legacy=False, name="finetuned_model.bin"):
    """The .bin UER-py's run_*.py saves (torch.save of the model's state_dict) and its config."""
    state = ref.uer_bert_state(vocab_size(), H, LAYERS, FFN, CONFIG["max_seq_length"], legacy=legacy)
    state.update(head)
    torch.save(state, tmp_path / name)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    return tmp_path / name, state


def uer_batch(rows):
    """UER-py's classifier input: [CLS] a [SEP] (b [SEP]), segments 1 / 2, cut and padded to T."""
    wp = BertWordPieceTokenizer(str(VOCAB), lowercase=True)
    ids = {t: i for i, t in enumerate(VOCAB.read_text(encoding="utf-8").splitlines())}
    src, seg = [], []
    for texts in rows:
        a = [ids["[CLS]"]] + wp.encode(texts[0], add_special_tokens=False).ids + [ids["[SEP]"]]
        s = [1] * len(a)
        if len(texts) > 1:
            b = wp.encode(texts[1], add_special_tokens=False).ids + [ids["[SEP]"]]
            a, s = a + b, s + [2] * len(b)
        a, s = a[:T], s[:T]
        src.append(a + [ids["[PAD]"]] * (T - len(a)))
        seg.append(s + [0] * (T - len(s)))
    return torch.tensor(src), torch.tensor(seg)


def read_predictions(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    return [int(r["label"]) for r in rows], np.array([[float(v) for v in r["prob"].split()] for r in rows])


@pytest.mark.parametrize("legacy, pooling, pairs", [(False, "mean", False), (True, "first", False),
                                                     (False, "max", False), (False, "mean", True),
                                                     (True, "last", True), (False, "first", True)])
def test_uer_classifier_predicts_as_uer_py(tmp_path, legacy, pooling, pairs):
    path, state = write_uer_model(tmp_path, ref.classifier_head(H, 3), legacy)
    rows = PAIRS if pairs else [(t,) for t in TEXTS]
    header = "text_a\ttext_b" if pairs else "text_a"
    (tmp_path / "test.tsv").write_text(header + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    # the command as UER-py's README gives it: the model's shape flags repeated, --labels_num
    code = main(["infer", "classifier", "--load_model_path", str(path), "--vocab_path", str(VOCAB),
                 "--config_path", str(tmp_path / "config.json"), "--test_path", str(tmp_path / "test.tsv"),
                 "--prediction_path", str(tmp_path / "prediction.tsv"), "--labels_num", "3", "--seq_length", str(T),
                 "--output_prob", "--embedding", "word_pos_seg", "--encoder", "bert", "--pooling", pooling,
                 "--no_progress"])
    assert code == 0
    labels, probs = read_predictions(tmp_path / "prediction.tsv")
    src, seg = uer_batch(rows)
    with torch.no_grad():
        expected = ref.classifier_probs(state, src, seg, HEADS, LAYERS, pooling, legacy).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)
    assert labels == expected.argmax(1).tolist()
    assert np.ptp(probs[:, 0]) > 1e-3  # the inputs matter: not a constant output


def test_max_pooling_over_pairs_is_uer_pys_too(tmp_path):
    """UER-py's max pooling adds (seg - 1) * sys.maxsize: over a pair every feature is ~9.2e18, so the
    probabilities are one constant row; uer_ds reproduces what UER-py predicts."""
    path, state = write_uer_model(tmp_path, ref.classifier_head(H, 3))
    (tmp_path / "test.tsv").write_text("text_a\ttext_b\n" + "".join("\t".join(r) + "\n" for r in PAIRS),
                                       encoding="utf-8")
    assert main(["infer", "classifier", "--load_model_path", str(path), "--vocab_path", str(VOCAB), "--test_path",
                 str(tmp_path / "test.tsv"), "--prediction_path", str(tmp_path / "p.tsv"), "--pooling", "max",
                 "--seq_length", str(T), "--output_prob", "--no_progress"]) == 0
    _, probs = read_predictions(tmp_path / "p.tsv")
    src, seg = uer_batch(PAIRS)
    with torch.no_grad():
        np.testing.assert_allclose(probs, ref.classifier_probs(state, src, seg, HEADS, LAYERS, "max").numpy(),
                                   atol=1e-5, rtol=0)


def test_config_path_defaults_to_the_config_beside_the_model(tmp_path):
    path, state = write_uer_model(tmp_path, ref.classifier_head(H, 2))
    (tmp_path / "test.tsv").write_text("text_a\n" + "".join(t + "\n" for t in TEXTS), encoding="utf-8")
    args = ["infer", "classifier", "--load_model_path", str(path), "--vocab_path", str(VOCAB), "--test_path",
            str(tmp_path / "test.tsv"), "--prediction_path", str(tmp_path / "p.tsv"), "--seq_length", str(T),
            "--output_prob", "--no_progress"]
    assert main(args) == 0  # no --config_path: the directory's config.json (else bert/base would not fit)
    labels, probs = read_predictions(tmp_path / "p.tsv")
    src, seg = uer_batch([(t,) for t in TEXTS])
    with torch.no_grad():
        np.testing.assert_allclose(probs, ref.classifier_probs(state, src, seg, HEADS, LAYERS, "first").numpy(),
                                   atol=1e-5, rtol=0)


LABEL2ID = {"O": 0, "B-LOC": 1, "I-LOC": 2}
NER_TEXTS = ["这 本 书 的 开", "人 物 写 得", "一 星 zzz 读 完", "后 悔"]  # 'zzz' is not in the vocabulary: [UNK]


@pytest.mark.parametrize("crf, legacy", [(False, False), (True, True)])
def test_uer_ner_tagger_predicts_as_uer_py(tmp_path, crf, legacy):
    path, state = write_uer_model(tmp_path, ref.tagger_head(H, len(LABEL2ID) + 1, crf), legacy, "ner_model.bin")
    (tmp_path / "label2id.json").write_text(json.dumps(LABEL2ID))
    (tmp_path / "test_nolabel.tsv").write_text("text_a\n" + "".join(t + "\n" for t in NER_TEXTS), encoding="utf-8")
    args = ["infer", "ner", "--load_model_path", str(path), "--vocab_path", str(VOCAB), "--config_path",
            str(tmp_path / "config.json"), "--test_path", str(tmp_path / "test_nolabel.tsv"), "--prediction_path",
            str(tmp_path / "prediction.tsv"), "--label2id_path", str(tmp_path / "label2id.json"),
            "--encoder", "bert", "--no_progress"] + (["--crf_target"] if crf else [])
    assert main(args) == 0
    got = [line.split() for line in (tmp_path / "prediction.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    ids = {t: i for i, t in enumerate(VOCAB.read_text(encoding="utf-8").splitlines())}
    tags = [*LABEL2ID, "[PAD]"]  # UER-py's run_ner.py appends [PAD] to label2id
    src = [[ids.get(tok, ids["[UNK]"]) for tok in text.split(" ")] for text in NER_TEXTS]
    width = max(map(len, src))
    seg = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in src])
    src = torch.tensor([s + [0] * (width - len(s)) for s in src])
    with torch.no_grad():
        expected = ref.tagger_predictions(state, src, seg, HEADS, LAYERS, crf, legacy)
    assert got == [[tags[i] for i in path] for path in expected]


def test_uer_checkpoint_errors_name_the_fix(tmp_path):
    path, _ = write_uer_model(tmp_path, ref.tagger_head(H, len(LABEL2ID) + 1, False), name="ner_model.bin")
    (tmp_path / "t.tsv").write_text("text_a\n这 本\n", encoding="utf-8")
    base = ["--load_model_path", str(path), "--vocab_path", str(VOCAB), "--test_path", str(tmp_path / "t.tsv"),
            "--prediction_path", str(tmp_path / "p.tsv"), "--no_progress"]
    with pytest.raises(ValueError, match=r"holds no tag names: give --label2id_path"):
        _run_raising(["infer", "ner", *base])
    (tmp_path / "l2i.json").write_text(json.dumps({"O": 0, "B-PER": 1}))
    with pytest.raises(ValueError, match=r"has 2 tags \(\+ UER-py's \[PAD\]: 3\) but the model .* has 4 outputs"):
        _run_raising(["infer", "ner", *base, "--label2id_path", str(tmp_path / "l2i.json")])
    with pytest.raises(ValueError, match=r"has no classifier head \(UER-py's output_layer_1., output_layer_2.\)"):
        _run_raising(["infer", "classifier", *base])
    assert not (tmp_path / "p.tsv").exists()


def _run_raising(argv):
    """main() with UER_DS_DEBUG=1: the error raises instead of printing one line."""
    import os

    os.environ["UER_DS_DEBUG"] = "1"
    try:
        return main(argv)
    finally:
        del os.environ["UER_DS_DEBUG"]


# ---- model-shape flags against a saved task model ------------------------------------------------------
@pytest.fixture
def task_dir(tmp_path):
    """A classifier task directory as `uer-ds finetune` writes it (random weights; no training needed)."""
    from uer_ds.config import ModelConfig
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.model import TaskModel, write_task_dir
    from uer_ds.tokenizers import build_tokenizer

    tok = build_tokenizer("bert", str(VOCAB))
    cfg = ModelConfig.from_dict(CONFIG, overrides={"vocab_size": tok.vocab_size, "pooling": "mean"})
    spec = {"labels_num": 2, "pooling": "mean", "soft": False, "pair": False}
    model = TaskModel(cfg, TASKS["classifier"].build_heads(cfg, {"classifier": spec}))
    model.init_weights()
    info = {"task": "classifier", "heads": {"classifier": spec}, "seq_length": 32,
            "tokenizer": {"kind": "bert", "do_lower_case": None, "vocab_path": str(VOCAB), **tok.identity()}}
    write_task_dir(tmp_path / "model", model, model.state_dict(), info)
    (tmp_path / "t.tsv").write_text("text_a\n" + "".join(t + "\n" for t in TEXTS), encoding="utf-8")
    return tmp_path


def _infer(task_dir, *flags):
    return _run_raising(["infer", "classifier", "--load_model_path", str(task_dir / "model"), "--vocab_path",
                         str(VOCAB), "--test_path", str(task_dir / "t.tsv"), "--prediction_path",
                         str(task_dir / "p.tsv"), "--no_progress", *flags])


def test_shape_flags_equal_to_the_model_are_accepted(task_dir, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(CONFIG))
    assert _infer(task_dir, "--encoder", "bert", "--embedding", "word_pos_seg", "--pooling", "mean",
                  "--layers_num", str(LAYERS), "--labels_num", "2", "--config_path", str(tmp_path / "c.json")) == 0
    plain = (task_dir / "p.tsv").read_text()
    assert _infer(task_dir) == 0 and (task_dir / "p.tsv").read_text() == plain


@pytest.mark.parametrize("flags, message", [
    (["--pooling", "max"], r"--pooling has value 'max' but the model in .* has pooling 'mean'"),
    (["--layers_num", "3"], r"--layers_num has value 3 but the model in .* has layers_num 2"),
    (["--encoder", "gpt"], r"--encoder gpt \(which means mask 'causal'\) but the model in .* has mask "
                           r"'fully_visible'"),
    (["--encoder", "lstm"], r"--encoder has value 'lstm' but the model in .* has encoder 'transformer'"),
    (["--labels_num", "3"], r"--labels_num 3 disagrees with the model in .* \(2 labels\)"),
])
def test_shape_flags_that_differ_name_both_values(task_dir, flags, message):
    with pytest.raises(ValueError, match=message):
        _infer(task_dir, *flags)
    assert not (task_dir / "p.tsv").exists()


def test_a_config_file_of_another_shape_is_refused(task_dir, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(dict(CONFIG, hidden_size=64, emb_size=64)))
    with pytest.raises(ValueError, match=r"--config_path .*c.json has emb_size 64 but the model in .* has 32"):
        _infer(task_dir, "--config_path", str(tmp_path / "c.json"))
