"""`uer-ds export onnx`: onnxruntime's probabilities equal PyTorch's within 1e-4 on a dev set, for a
transformer and a recurrent classifier (random weights; the export does not care how they were
trained)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import CORPORA, shared
from uer_ds.cli import main
from uer_ds.config import ModelConfig
from uer_ds.tasks import TASKS, TaskModel
from uer_ds.tasks.data import pad
from uer_ds.tasks.model import load_task_model, write_task_dir
from uer_ds.convert.resolve import resolve_model
from uer_ds.recipes.predict import module_forward, predict_examples
from uer_ds.tasks.onnx import onnx_metadata
from uer_ds.tokenizers import build_tokenizer

ort = pytest.importorskip("onnxruntime")
VOCAB = CORPORA / "vocab.txt"
DEV = CORPORA / "reviews_cls" / "dev.tsv"


def make_task_dir(directory, overrides, pooling):
    tokenizer = build_tokenizer("bert", VOCAB)
    cfg = ModelConfig.from_json(overrides.pop("config"), dict(overrides, vocab_size=tokenizer.vocab_size))
    heads = {"classifier": {"labels_num": 3, "pooling": pooling, "soft": False, "pair": False}}
    torch.manual_seed(0)
    model = TaskModel(cfg, TASKS["classifier"].build_heads(cfg, heads))
    model.init_weights()
    info = {"task": "classifier", "heads": heads, "seq_length": 48,
            "tokenizer": {"kind": "bert", "do_lower_case": True, "vocab_path": str(VOCAB), **tokenizer.identity()}}
    write_task_dir(directory, model, model.state_dict(), info)
    return tokenizer


@pytest.mark.parametrize("name, overrides, pooling", [
    ("bert", {"config": "bert/tiny"}, "first"),
    ("lstm", {"config": "rnn/lstm", "emb_size": 32, "hidden_size": 32}, "mean"),
])
def test_onnx_probabilities_match_pytorch(tmp_path, capsys, name, overrides, pooling):
    model_dir, out = tmp_path / name, tmp_path / f"{name}.onnx"
    tokenizer = make_task_dir(model_dir, dict(overrides), pooling)
    assert main(["export", "onnx", "--load_model_path", str(model_dir), "--output", str(out),
                 "--check_path", str(DEV)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["examples"] == 150 and report["max_abs_prob_diff"] <= 1e-4 and out.is_file()

    # our own comparison, independent of the command's check: padded batches of real dev texts
    model, _ = load_task_model(model_dir, lambda c, i: TASKS["classifier"].build_heads(c, i["heads"]))
    examples = TASKS["classifier"].read(str(DEV), tokenizer, 48, {"labels_num": 3}, labelled=False)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for start in (0, 64, 128):
        batch = examples[start: start + 40]
        src, seg = pad([e.src for e in batch], 0), pad([e.seg for e in batch], 0)
        assert bool((seg == 0).any())  # batches with padding, of several lengths
        with torch.no_grad():
            prob = torch.softmax(model(src, None, seg, predict=True), -1).numpy()
        onnx_prob = session.run(["prob"], {"src": src.numpy(), "seg": seg.numpy()})[0]
        np.testing.assert_allclose(onnx_prob, prob, atol=1e-4, rtol=0)
        np.testing.assert_allclose(onnx_prob.sum(-1), 1.0, atol=1e-5)


def test_export_refuses_what_is_not_a_task_model(tmp_path, capsys):
    assert main(["export", "onnx", "--load_model_path", str(tmp_path), "--output", str(tmp_path / "x.onnx")]) == 1
    assert f"--load_model_path '{tmp_path}': a directory that is no model" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


# ---- NER (softmax and CRF) and CMRC: `export onnx`, then `infer` on the .onnx equals `infer` on the directory ----
def zh_task_dir(directory, task, heads, seq_length):
    """A bert/tiny task model with random weights over the Chinese vocabulary; a CRF gets random transitions
    (zeros, as initialised, would make Viterbi the argmax and hide a host that skipped the CRF)."""
    vocab = shared("models/google_zh_vocab.txt")
    tokenizer = build_tokenizer("bert", vocab)
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": tokenizer.vocab_size})
    torch.manual_seed(0)
    model = TaskModel(cfg, TASKS[task].build_heads(cfg, heads))
    model.init_weights()
    for name, param in model.named_parameters():
        if ".crf." in name:
            param.data = torch.randn_like(param) * 2
    info = {"task": task, "heads": heads, "seq_length": seq_length,
            "tokenizer": {"kind": "bert", "do_lower_case": True, "vocab_path": str(vocab), **tokenizer.identity()}}
    write_task_dir(directory, model, model.state_dict(), info)
    return model, tokenizer


def export(capsys, model_dir, out, check_path, *extra):
    assert main(["export", "onnx", "--load_model_path", str(model_dir), "--output", str(out),
                 "--check_path", str(check_path), *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def infer_lines(capsys, task, model, test_path, out, *extra):
    assert main(["infer", task, "--load_model_path", str(model), "--test_path", str(test_path),
                 "--prediction_path", str(out), "--no_progress", *extra]) == 0
    capsys.readouterr()
    return out.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("crf", [False, True])
def test_ner_onnx_tags_equal_pytorch(tmp_path, capsys, crf):
    data = shared("datasets/test_data/msra_ner")
    labels = list(json.loads(shared("datasets/msra_ner/label2id.json").read_text(encoding="utf-8")))
    model_dir, out = tmp_path / "ner", tmp_path / "ner.onnx"
    model, tokenizer = zh_task_dir(model_dir, "ner", {"ner": {"labels": labels, "crf": crf}}, 64)
    report = export(capsys, model_dir, out, data / "dev.tsv")
    assert report["examples"] == 50 and report["max_abs_logits_diff"] <= 1e-4 and report["same_prediction"] == 1.0
    assert "uer_ds.head_host_state" in onnx_metadata(str(out)) if crf else True

    torch_tags = infer_lines(capsys, "ner", model_dir, data / "test.tsv", tmp_path / "torch.tsv")
    onnx_tags = infer_lines(capsys, "ner", out, data / "test.tsv", tmp_path / "onnx.tsv")
    assert len(onnx_tags) == 51 and onnx_tags == torch_tags

    # the host decodes with the CRF: on these random transitions Viterbi differs from the emissions' argmax
    task = TASKS["ner"]
    spec = {"labels": labels, "crf": crf}
    examples = task.read(str(data / "test.tsv"), tokenizer, 64, spec, labelled=False)
    batch = task.collate(examples, 0, tokenizer.pad_id or 0)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    emissions = session.run(["logits"], {"src": batch["src"].numpy(), "seg": batch["seg"].numpy()})[0]
    argmax_rows = [" ".join(task.predicted_tags(e, o, labels)) for e, o in zip(examples, emissions.argmax(-1))]
    assert (argmax_rows != [line.split("\t")[-1] for line in onnx_tags[1:]]) == crf

    # int8: the agreement is reported (tiny random model; not asserted equal)
    int8 = export(capsys, model_dir, tmp_path / "ner8.onnx", data / "dev.tsv", "--int8")
    assert int8["int8"] and 0.0 <= int8["same_prediction"] <= 1.0


def test_cmrc_onnx_answers_equal_pytorch(tmp_path, capsys):
    data = shared("datasets/test_data/cmrc")
    model_dir, out = tmp_path / "cmrc", tmp_path / "cmrc.onnx"
    spec = {"doc_stride": 48, "max_query_length": 32, "max_answer_length": 40, "n_best_size": 20}
    model, tokenizer = zh_task_dir(model_dir, "cmrc", {"cmrc": spec}, 96)
    report = export(capsys, model_dir, out, data / "dev.json")
    assert report["examples"] > 0 and report["max_abs_logits_diff"] <= 1e-4 and report["same_prediction"] == 1.0
    torch_lines = infer_lines(capsys, "cmrc", model_dir, data / "test.json", tmp_path / "torch.json")
    onnx_lines = infer_lines(capsys, "cmrc", out, data / "test.json", tmp_path / "onnx.json")
    assert len(onnx_lines) == len(torch_lines) > 1
    assert onnx_lines == torch_lines

    # the same through the resolver's forward (what serve and evaluate use): answers equal, scores (start logit +
    # end logit, fp32 logits) within 1e-4
    task = TASKS["cmrc"]
    examples = task.read(str(data / "test.json"), tokenizer, 96, spec, labelled=False)
    collate = lambda batch, head: task.collate(batch, head, tokenizer.pad_id or 0)  # noqa: E731
    onnx_forward, _ = resolve_model(str(out), "--load_model_path", kinds=("onnx",)).onnx_forward()
    spans = [task.answer_spans(examples, predict_examples(forward, examples, 0, collate, 16), spec, None)
             for forward in (module_forward(model.eval(), torch.device("cpu")), onnx_forward)]
    assert list(spans[0]) == list(spans[1]) and len(spans[0]) == 5
    for (text, score, a, b), (onnx_text, onnx_score, c, d) in zip(spans[0].values(), spans[1].values()):
        assert (text, a, b) == (onnx_text, c, d) and abs(score - onnx_score) <= 1e-4

    int8 = export(capsys, model_dir, tmp_path / "cmrc8.onnx", data / "dev.json", "--int8")
    assert int8["int8"] and 0.0 <= int8["same_prediction"] <= 1.0
