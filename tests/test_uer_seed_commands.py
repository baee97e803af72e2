"""UER-py's README commands, run as data: each is the seed's command line (UER-py's README of 2020-2021,
which showed every encoder/target pair, run_* and inference script and script, and today's) with only
paths and sizes changed, translated script -> `uer-ds` command by uer_ds.compat.SCRIPTS and nothing
else, and checked on its outputs.

The commands run in this process (`uer_ds.cli.main`, in a scratch directory, so UER-py's relative
default paths such as models/finetuned_model.bin land there); a job of several processes runs as a
subprocess.  The models UER-py downloads (google_zh_model.bin, a GPT) are tiny random models written
in UER-py's formats.  Not here: run_classifier_cv / run_lgb / run_bayesopt and the *_cv inference
(stacking, not in uer_ds), dynamic_vocab_adapter and extract_embeddings (the adapt-vocab /
extract-embeddings tools), and the convert_* scripts, whose flags differ (`uer-ds convert` is tested
in tests/convert).
"""
from __future__ import annotations

import json
import shlex
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CORPORA, SHARED_DATA
from uer_ds.cli import main
from uer_ds.compat import SCRIPTS

pytestmark = pytest.mark.usefixtures("deepspeed_ops")

# UER-py's tiny configs, as its models/ folder of 2020 had them (no encoder/target keys: the flags said)
TINY_BERT = {"emb_size": 64, "feedforward_size": 128, "hidden_size": 64, "hidden_act": "gelu", "heads_num": 2,
             "layers_num": 2, "max_seq_length": 128, "dropout": 0.1}
CONFIGS = {
    "bert_tiny_config.json": TINY_BERT,
    "albert_tiny_config.json": dict(TINY_BERT, emb_size=32, layers_num=3),
    "rnn_config.json": {"emb_size": 32, "hidden_size": 32, "layers_num": 1, "dropout": 0.1, "max_seq_length": 128},
    "birnn_config.json": {"emb_size": 32, "hidden_size": 64, "layers_num": 1, "dropout": 0.1, "max_seq_length": 128},
    "gatedcnn_9_config.json": {"emb_size": 32, "hidden_size": 32, "layers_num": 3, "kernel_size": 3, "block_size": 2,
                               "dropout": 0.1, "max_seq_length": 128},
}


def translate(command: str, ws: Path) -> list[str]:
    """`python3 SCRIPT ARGS` -> the uer-ds argv (SCRIPT through compat.SCRIPTS; ARGS untouched)."""
    words = shlex.split(command.format(ws=ws, corpora=CORPORA, shared=SHARED_DATA))
    assert words[0] == "python3", command
    script = words[1].removeprefix("finetune/") if words[1].startswith("finetune/run_") else words[1]
    return SCRIPTS[script].split() + words[2:]


def uer(command: str, ws: Path) -> None:
    """Run one seed command; a launch of several processes (--world_size N > 1) in a subprocess."""
    argv = translate(command, ws)
    if "--world_size" in argv and argv[argv.index("--world_size") + 1] != "1":
        # a fresh job: in-process commands before it made this process a job of one (RANK, WORLD_SIZE, ...)
        env = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        done = subprocess.run([sys.executable, "-m", "uer_ds", *argv], cwd=ws, capture_output=True, text=True,
                              timeout=600, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return
    assert main(argv) == 0, command


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The scratch directory: models/ (vocabulary, tiny configs, UER-py-format models), datasets/."""
    from uer_ds.config import ModelConfig
    from uer_ds.convert.rules import Checkpoint
    from uer_ds.convert.uer import write_uer
    from uer_ds.models import build_model

    ws = tmp_path_factory.mktemp("uer")
    models = ws / "models"
    models.mkdir()
    for name, values in CONFIGS.items():
        (models / name).write_text(json.dumps(values))
    vocab = (CORPORA / "vocab.txt").read_text(encoding="utf-8")
    (models / "google_zh_vocab.txt").write_text(vocab, encoding="utf-8")
    torch.manual_seed(0)
    bert = ModelConfig.from_dict(TINY_BERT | {"target": ["mlm", "sp"], "tie_weights": True},
                                 overrides={"vocab_size": 417})
    gpt = ModelConfig.from_dict(TINY_BERT | {"target": ["lm"], "tie_weights": True},
                                overrides={"vocab_size": 417, "encoder": "gpt"})
    from uer_ds.models.io import aliased_keys

    def state(cfg):
        model = build_model(cfg)
        return {k: v for k, v in model.state_dict().items() if k not in aliased_keys(model)}

    # google_zh_model.bin as UER-py published it (the layout before July 2023); a GPT in today's layout
    write_uer(Checkpoint(bert, state(bert)), models / "google_zh_model.bin", layout="legacy")
    write_uer(Checkpoint(gpt, state(gpt)), models / "gpt_model.bin")
    return ws


def rows(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def final_model_config(run_dir: Path) -> dict:
    """What `uer-ds pretrain` exported: OUT/model/config.json (the run finished and exported)."""
    assert (run_dir / "latest").is_file() and (run_dir / "model" / "model.safetensors").is_file()
    return json.loads((run_dir / "model" / "config.json").read_text())


# ---- the README's quickstart (today's and 2021's) ----------------------------------------------------------
PREPROCESS_BERT = ("python3 preprocess.py --corpus_path {corpora}/reviews_bert.txt "
                   "--vocab_path models/google_zh_vocab.txt --dataset_path dataset.pt --processes_num 2 "
                   "--data_processor bert --seq_length 64")
FINETUNE = ("python3 finetune/run_classifier.py --pretrained_model_path models/book_review_model.bin "
            "--vocab_path models/google_zh_vocab.txt --config_path models/bert_tiny_config.json "
            "--train_path {corpora}/reviews_cls/train.tsv --dev_path {corpora}/reviews_cls/dev.tsv "
            "--test_path {corpora}/reviews_cls/test.tsv --epochs_num 1 --batch_size 32 --learning_rate 1e-3 "
            "--seq_length 64")
INFER = ("python3 inference/run_classifier_infer.py --load_model_path models/finetuned_model.bin "
         "--vocab_path models/google_zh_vocab.txt --config_path models/bert_tiny_config.json "
         "--test_path {corpora}/reviews_cls/test_nolabel.tsv --prediction_path prediction.tsv --labels_num 2 "
         "--seq_length 64 --output_logits --output_prob")


def _quickstart(ws, monkeypatch, pretrain: str) -> None:
    monkeypatch.chdir(ws)
    uer(PREPROCESS_BERT, ws)
    meta = json.loads((ws / "dataset.json").read_text())  # UER-py's dataset.pt names the prefix dataset
    assert meta["data_processor"] == "bert" and meta["counts"]["documents"] == 2000
    uer(pretrain, ws)
    assert final_model_config(ws / "models" / "book_review_model.bin")["target"] == ["mlm", "sp"]
    uer(FINETUNE, ws)  # no --output_model_path: UER-py's default, models/finetuned_model.bin
    report = json.loads((ws / "models" / "finetuned_model.bin" / "report.json").read_text())
    uer(INFER, ws)
    predicted = rows(ws / "prediction.tsv")
    gold = [int(r["label"]) for r in rows(CORPORA / "reviews_cls" / "test.tsv")]
    assert len(predicted) == len(gold) == 150
    for r in predicted:  # label = argmax of the probabilities, which are the logits' softmax
        logits = np.array([float(v) for v in r["logits"].split()])
        probs = np.array([float(v) for v in r["prob"].split()])
        np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(), atol=1e-5)
        assert int(r["label"]) == int(probs.argmax())
    accuracy = np.mean([int(r["label"]) == g for r, g in zip(predicted, gold)])
    assert accuracy == pytest.approx(report["test"]["accuracy"])  # what the fine-tuning run reported for test


def test_readme_quickstart_single_device(ws, monkeypatch):
    # UER-py 2020: `--gpu_ranks 3` trains on one device; 2021: --embedding/--encoder/--mask/--target spelled out
    _quickstart(ws, monkeypatch, "python3 pretrain.py --dataset_path dataset.pt "
                                 "--vocab_path models/google_zh_vocab.txt --pretrained_model_path "
                                 "models/google_zh_model.bin --config_path models/bert_tiny_config.json "
                                 "--output_model_path models/book_review_model.bin "
                                 "--gpu_ranks 0 --total_steps 4 --save_checkpoint_steps 2 --batch_size 8 "
                                 "--embedding word_pos_seg --encoder transformer --mask fully_visible --target bert")


@pytest.mark.slow
def test_readme_quickstart_two_processes(tmp_path, ws, monkeypatch):
    # today's README: --world_size 8 --gpu_ranks 0 1 2 3 4 5 6 7, here 2 processes
    import shutil

    # the inputs only: the single-device quickstart may have left its runs in ws/models
    shutil.copytree(ws / "models", tmp_path / "models",
                    ignore=shutil.ignore_patterns("book_review_model.bin", "finetuned_model.bin"))
    _quickstart(tmp_path, monkeypatch, "python3 pretrain.py --dataset_path dataset.pt --vocab_path "
                                       "models/google_zh_vocab.txt --pretrained_model_path models/google_zh_model.bin "
                                       "--config_path models/bert_tiny_config.json --output_model_path "
                                       "models/book_review_model.bin --world_size 2 --gpu_ranks 0 1 --total_steps 4 "
                                       "--save_checkpoint_steps 2 --batch_size 8")
    meta = json.loads((tmp_path / "models" / "book_review_model.bin" / "global_step4" / "uer_ds.json").read_text())
    assert meta["world_size"] == 2


# ---- pre-training: every encoder/target pair the README showed ---------------------------------------------
PRETRAIN = ("python3 pretrain.py --dataset_path {data} --vocab_path models/google_zh_vocab.txt --output_model_path "
            "{out} --total_steps 3 --save_checkpoint_steps 3 --report_steps 1 --batch_size 8 --learning_rate 1e-3 "
            "{flags}")
PAIRS = [  # (preprocess flags, corpus, pretrain flags, expected model config)
    ("--target mlm", "reviews.txt", "--config_path models/bert_tiny_config.json --encoder bert --target mlm",
     dict(encoder="transformer", mask="fully_visible", target=["mlm"])),
    ("--dynamic_masking --target mlm", "reviews.txt", "--config_path models/bert_tiny_config.json --span_masking "
     "--span_geo_prob 0.3 --span_max_length 5 --encoder bert --target mlm", dict(target=["mlm"])),
    ("--target albert", "reviews_bert.txt", "--config_path models/albert_tiny_config.json "
     "--factorized_embedding_parameterization --parameter_sharing --encoder bert --target albert",
     dict(target=["mlm", "sp"], data_processor="albert", parameter_sharing=True)),
    ("--target lm", "reviews.txt", "--config_path models/bert_tiny_config.json --encoder gpt --target lm",
     dict(encoder="transformer", mask="causal", layernorm_positioning="post", target=["lm"])),
    ("--target lm", "reviews.txt", "--config_path models/rnn_config.json --embedding word --encoder lstm --target lm",
     dict(encoder="lstm", embedding=["word"])),
    ("--target lm", "reviews.txt", "--config_path models/rnn_config.json --embedding word --encoder gru --target lm",
     dict(encoder="gru")),
    ("--target lm", "reviews.txt", "--config_path models/gatedcnn_9_config.json --embedding word --encoder gatedcnn "
     "--target lm", dict(encoder="gatedcnn")),
    ("--target bilm", "reviews.txt", "--config_path models/birnn_config.json --embedding word --encoder bilstm "
     "--target bilm", dict(encoder="bilstm", target=["bilm"])),
    ("--target lm", "reviews.txt", "--config_path models/rnn_config.json --embedding word --encoder lstm "
     "--bidirectional --target bilm", dict(encoder="bilstm", target=["bilm"])),
]


@pytest.mark.parametrize("prep, corpus, flags, expected", PAIRS,
                         ids=["bert_mlm", "bert_mlm_span", "albert", "gpt_lm", "lstm_lm", "gru_lm", "gatedcnn_lm",
                              "bilstm_bilm", "lstm_bidirectional_bilm"])
def test_pretraining_pairs(ws, monkeypatch, tmp_path, prep, corpus, flags, expected):
    monkeypatch.chdir(ws)
    target = "bilm" if "bilm" in flags else prep.split("--target ")[1]
    if target == "bilm":
        prep = prep.replace("--target lm", "--target bilm")
    uer(f"python3 preprocess.py --corpus_path {{corpora}}/{corpus} --vocab_path models/google_zh_vocab.txt "
        f"--dataset_path {tmp_path}/dataset.pt --processes_num 2 --seq_length 64 {prep}", ws)
    uer(PRETRAIN.format(data=tmp_path / "dataset.pt", out=tmp_path / "output_model.bin", flags=flags), ws)
    cfg = final_model_config(tmp_path / "output_model.bin")
    assert {k: cfg[k] for k in expected} == expected
    meta = json.loads((tmp_path / "output_model.bin" / "global_step3" / "uer_ds.json").read_text())
    assert meta["step"] == 3


# ---- fine-tuning and inference --------------------------------------------------------------------------------
CLS = ("--vocab_path models/google_zh_vocab.txt --train_path {corpora}/reviews_cls/train.tsv --dev_path "
       "{corpora}/reviews_cls/dev.tsv --test_path {corpora}/reviews_cls/test.tsv --epochs_num 1 --batch_size 64 "
       "--seq_length 48")
CLS_INFER = ("--vocab_path models/google_zh_vocab.txt --test_path {corpora}/reviews_cls/test_nolabel.tsv "
             "--prediction_path prediction.tsv --labels_num 2 --seq_length 48")
FINETUNE_CASES = [  # (run_classifier flags, run_classifier_infer flags)
    ("--pretrained_model_path models/google_zh_model.bin --config_path models/bert_tiny_config.json --encoder bert",
     "--config_path models/bert_tiny_config.json --output_logits --output_prob --encoder bert"),
    ("--config_path models/rnn_config.json --learning_rate 1e-3 --embedding word --encoder lstm --pooling mean",
     "--config_path models/rnn_config.json --embedding word --encoder lstm --pooling mean"),
    ("--config_path models/gatedcnn_9_config.json --learning_rate 5e-4 --embedding word --encoder gatedcnn "
     "--pooling max", "--config_path models/gatedcnn_9_config.json --embedding word --encoder gatedcnn --pooling max"),
    ("--config_path models/albert_tiny_config.json --learning_rate 4e-4 --factorized_embedding_parameterization "
     "--parameter_sharing --encoder bert", "--config_path models/albert_tiny_config.json "
     "--factorized_embedding_parameterization --parameter_sharing --encoder bert"),
]


@pytest.mark.parametrize("train_flags, infer_flags", FINETUNE_CASES,
                         ids=["bert", "lstm_mean", "gatedcnn_max", "albert"])
def test_classifier_and_its_inference(ws, monkeypatch, tmp_path, train_flags, infer_flags):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ws / "models")
    uer(f"python3 run_classifier.py {CLS} {train_flags} --output_model_path classifier_model.bin", ws)
    uer(f"python3 inference/run_classifier_infer.py --load_model_path classifier_model.bin {CLS_INFER} {infer_flags}",
        ws)
    report = json.loads((tmp_path / "classifier_model.bin" / "report.json").read_text())
    gold = [int(r["label"]) for r in rows(CORPORA / "reviews_cls" / "test.tsv")]
    predicted = [int(r["label"]) for r in rows(tmp_path / "prediction.tsv")]
    assert np.mean(np.array(predicted) == gold) == pytest.approx(report["test"]["accuracy"])


def test_distillation(ws, monkeypatch, tmp_path):
    """2020 README: teacher -> run_classifier_infer --output_logits -> run_classifier --soft_targets."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ws / "models")
    uer(f"python3 run_classifier.py {CLS} --config_path models/bert_tiny_config.json --output_model_path "
        "models_teacher --encoder bert", ws)
    train = rows(CORPORA / "reviews_cls" / "train.tsv")
    (tmp_path / "text.tsv").write_text("text_a\n" + "".join(r["text_a"] + "\n" for r in train), encoding="utf-8")
    uer("python3 inference/run_classifier_infer.py --load_model_path models_teacher --vocab_path "
        "models/google_zh_vocab.txt --test_path text.tsv --prediction_path label_logits.tsv --labels_num 2 "
        "--output_logits --encoder bert --seq_length 48", ws)
    logits = [r["logits"] for r in rows(tmp_path / "label_logits.tsv")]
    (tmp_path / "text_label_logits.tsv").write_text("label\ttext_a\tlogits\n" + "".join(
        f"{r['label']}\t{r['text_a']}\t{lg}\n" for r, lg in zip(train, logits)), encoding="utf-8")
    uer(f"python3 run_classifier.py {CLS.replace('{corpora}/reviews_cls/train.tsv', 'text_label_logits.tsv')} "
        "--config_path models/bert_tiny_config.json --soft_targets --soft_alpha 0.5 --encoder bert "
        "--output_model_path student", ws)
    assert json.loads((tmp_path / "student" / "task.json").read_text())["heads"]["classifier"]["soft"] is True


def test_clue_recipe_multi_task_then_fine_tune_then_infer(ws, monkeypatch, tmp_path):
    """2020 README: run_mt_classifier over douban book review and chnsenticorp, then run_classifier from
    its model (the CLUE recipe's second step), then inference."""
    book, chn = _shared("datasets/test_data/book_review"), _shared("datasets/test_data/chnsenticorp")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ws / "models")
    uer(f"python3 run_mt_classifier.py --pretrained_model_path models/google_zh_model.bin --vocab_path "
        f"models/google_zh_vocab.txt --config_path models/bert_tiny_config.json --dataset_path_list {book}/ {chn}/ "
        "--epochs_num 1 --batch_size 64 --seq_length 48 --encoder bert --output_model_path mt_model", ws)
    info = json.loads((tmp_path / "mt_model" / "task.json").read_text())
    assert list(info["heads"]) == ["book_review", "chnsenticorp"]
    uer(f"python3 run_classifier.py {CLS} --pretrained_model_path mt_model --encoder bert", ws)
    uer(f"python3 inference/run_classifier_infer.py --load_model_path models/finetuned_model.bin {CLS_INFER} "
        "--encoder bert", ws)
    assert len(rows(tmp_path / "prediction.tsv")) == 150
    uer(f"python3 inference/run_classifier_mt_infer.py --load_model_path mt_model --vocab_path "
        f"models/google_zh_vocab.txt --test_path {chn}/test.tsv --prediction_path mt_prediction.tsv "
        "--head chnsenticorp --encoder bert", ws)
    assert len(rows(tmp_path / "mt_prediction.tsv")) == len(rows(chn / "test.tsv"))


def test_dbqa_then_classifier_inference(ws, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ws / "models")
    uer("python3 run_dbqa.py --pretrained_model_path models/google_zh_model.bin "
        "--vocab_path models/google_zh_vocab.txt --config_path models/bert_tiny_config.json "
        "--train_path {corpora}/dbqa/train.tsv --dev_path {corpora}/dbqa/dev.tsv --test {corpora}/dbqa/dev.tsv "
        "--epochs_num 1 --batch_size 64 --seq_length 48 "
        "--encoder bert --output_model_path models_dbqa", ws)
    uer("python3 inference/run_classifier_infer.py --load_model_path models_dbqa --vocab_path "
        "models/google_zh_vocab.txt --config_path models/bert_tiny_config.json --test_path "
        "{corpora}/dbqa/test_nolabel.tsv --prediction_path prediction.tsv --labels_num 2 --output_logits "
        "--output_prob --encoder bert", ws)
    assert len(rows(tmp_path / "prediction.tsv")) == len(rows(CORPORA / "dbqa" / "test_nolabel.tsv"))


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (UER-py's data in ../shared/data)")
    return path


def test_ner_and_its_inference(ws, monkeypatch, tmp_path):
    ner = _shared("datasets/test_data/msra_ner")
    label2id = _shared("datasets/msra_ner/label2id.json")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ws / "models")
    (tmp_path / "test_nolabel.tsv").write_text("text_a\n" + "".join(
        r["text_a"] + "\n" for r in rows(ner / "dev.tsv")), encoding="utf-8")
    uer(f"python3 run_ner.py --pretrained_model_path models/google_zh_model.bin --vocab_path "
        f"models/google_zh_vocab.txt --config_path models/bert_tiny_config.json --train_path "
        f"{ner}/dev.tsv --dev_path {ner}/dev.tsv --test_path {ner}/dev.tsv --output_model_path models_ner "
        f"--label2id_path {label2id} --epochs_num 1 --batch_size 16 --seq_length 64 --encoder bert", ws)
    uer(f"python3 inference/run_ner_infer.py --load_model_path models_ner --vocab_path "
        f"models/google_zh_vocab.txt --test_path test_nolabel.tsv --prediction_path prediction.tsv "
        f"--label2id_path {label2id} --encoder bert", ws)
    tags = set(json.loads(label2id.read_text()))
    for text, line in zip(rows(ner / "dev.tsv"), (tmp_path / "prediction.tsv").read_text().splitlines()[1:]):
        assert len(line.split()) == len(text["text_a"].split()) and set(line.split()) <= tags


def test_cmrc_and_c3_and_their_inference(ws, monkeypatch, tmp_path):
    cmrc = _shared("datasets/test_data/cmrc")
    c3 = _shared("datasets/c3/dev.json")
    vocab = "models/google_zh_vocab.txt"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ws / "models")
    docs = json.loads(c3.read_text(encoding="utf-8"))
    (tmp_path / "c3_train.json").write_text(json.dumps(docs[:40], ensure_ascii=False), encoding="utf-8")
    (tmp_path / "c3_dev.json").write_text(json.dumps(docs[40:60], ensure_ascii=False), encoding="utf-8")
    common = f"--vocab_path {vocab} --config_path models/bert_tiny_config.json --batch_size 8 --seq_length 96"
    uer(f"python3 run_cmrc.py {common} --train_path {cmrc}/train.json --dev_path {cmrc}/dev.json --epochs_num 1 "
        "--output_model_path models_cmrc --encoder bert", ws)
    uer(f"python3 inference/run_cmrc_infer.py --load_model_path models_cmrc --vocab_path {vocab} --test_path "
        f"{cmrc}/test.json --prediction_path prediction.json --seq_length 96 --encoder bert", ws)
    answers = json.loads((tmp_path / "prediction.json").read_text())
    questions = [q["id"] for d in json.loads((cmrc / "test.json").read_text())["data"] for p in d["paragraphs"]
                 for q in p["qas"]]
    assert sorted(answers) == sorted(questions)
    uer(f"python3 run_c3.py {common} --train_path c3_train.json --dev_path c3_dev.json --epochs_num 1 "
        "--max_choices_num 4 --output_model_path models_c3 --encoder bert", ws)
    uer(f"python3 inference/run_c3_infer.py --load_model_path models_c3 --vocab_path {vocab} --test_path "
        "c3_dev.json --prediction_path prediction.jsonl --max_choices_num 4 --encoder bert", ws)
    predicted = [json.loads(line) for line in (tmp_path / "prediction.jsonl").read_text().splitlines()]
    assert len(predicted) == sum(len(d[1]) for d in docs[40:60])


# ---- scripts ---------------------------------------------------------------------------------------------------
def test_scripts(ws, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ws / "models")
    (tmp_path / "cloze_input.txt").write_text("这本书的开头比较扎实。\n后悔买了，一星。\n", encoding="utf-8")
    bin_flags = "--pretrained_model_path models/google_zh_model.bin --vocab_path models/google_zh_vocab.txt"
    config = "--config_path models/bert_tiny_config.json"
    uer(f"python3 scripts/cloze_test.py --input_path cloze_input.txt {bin_flags} {config} --output_path output.txt", ws)
    out = (tmp_path / "output.txt").read_text(encoding="utf-8")
    assert out.count("Predicted answer:") == 2 and out.count("Correct answer:") == 2

    uer(f"python3 scripts/extract_feature.py --input_path cloze_input.txt {bin_flags} {config} "
        "--output_path feature_output.pt", ws)
    assert tuple(torch.load(tmp_path / "feature_output.pt").shape) == (2, TINY_BERT["hidden_size"])

    (tmp_path / "target_words.txt").write_text("书\n星\n", encoding="utf-8")
    capsys.readouterr()
    uer(f"python3 scripts/topn_words_indep.py {bin_flags} {config} --cand_vocab_path models/google_zh_vocab.txt "
        "--target_words_path target_words.txt --topn 3", ws)  # UER-py prints the neighbours
    indep = capsys.readouterr().out
    assert indep.count("Target word:") == 2 and len(indep.strip().split("\n\n")[0].splitlines()) == 4

    (tmp_path / "words_with_sentences.txt").write_text("这本书的开头比较扎实。\t书\n", encoding="utf-8")
    (tmp_path / "cand.txt").write_text("书\n本\n星\n人\n", encoding="utf-8")
    uer(f"python3 scripts/topn_words_dep.py {bin_flags} --cand_vocab_path cand.txt --sent_path "
        f"words_with_sentences.txt {config} --batch_size 256 --seq_length 32 --tokenizer bert --topn 2", ws)
    dep = capsys.readouterr().out.splitlines()
    assert dep[:2] == ["Original sentence: 这本书的开头比较扎实。", "Target word: 书"] and len(dep) >= 4

    (tmp_path / "story_beginning.txt").write_text("这本书\n", encoding="utf-8")
    uer("python3 scripts/generate.py --pretrained_model_path models/gpt_model.bin --vocab_path "
        f"models/google_zh_vocab.txt --input_path story_beginning.txt --output_path story_full.txt {config} "
        "--encoder gpt --target lm --seq_length 16", ws)
    story = (tmp_path / "story_full.txt").read_text(encoding="utf-8").strip()
    assert story.startswith("这本书") and len(story) > len("这本书")

    uer("python3 scripts/average_models.py --model_list_path models/google_zh_model.bin models/google_zh_model.bin "
        "--output_model_path models_avg.bin", ws)
    averaged = torch.load(tmp_path / "models_avg.bin", weights_only=True)
    original = torch.load(ws / "models" / "google_zh_model.bin", weights_only=True)
    assert all(torch.equal(averaged[k], original[k]) for k in original)

    (tmp_path / "corpus_seg.txt").write_text("这 本 书 很 好\n书 很 好\n", encoding="utf-8")
    uer("python3 scripts/build_vocab.py --corpus_path corpus_seg.txt --vocab_path word_vocab.txt --tokenizer space "
        "--min_count 2", ws)  # 2020's flags
    uer("python3 scripts/build_vocab.py --corpus_path corpus_seg.txt --output_path word_vocab2.txt --delimiter space "
        "--workers_num 2 --min_count 2", ws)  # today's
    words = (tmp_path / "word_vocab.txt").read_text(encoding="utf-8").splitlines()
    assert words[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and set(words[5:]) == {"书", "很", "好"}
    assert (tmp_path / "word_vocab2.txt").read_text(encoding="utf-8") == "\n".join(words) + "\n"
    uer("python3 scripts/diff_vocab.py --vocab_1 word_vocab.txt --vocab_2 models/google_zh_vocab.txt", ws)


def test_2020_default_output_names(ws, monkeypatch, tmp_path, capsys):
    """2020 README: `run_classifier.py` without --output_model_path wrote models/classifier_model.bin, which the
    next command, `inference/run_classifier_infer.py --load_model_path models/classifier_model.bin`, read.
    uer_ds writes UER-py's today's default (models/finetuned_model.bin); infer reads it under the old name."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # a models/ folder of its own: the default output lands in it
    for name in ("google_zh_vocab.txt", "bert_tiny_config.json"):
        shutil.copy(ws / "models" / name, tmp_path / "models" / name)
    uer(f"python3 run_classifier.py {CLS} --config_path models/bert_tiny_config.json --encoder bert", ws)
    assert (tmp_path / "models" / "finetuned_model.bin" / "task.json").is_file()
    capsys.readouterr()
    uer(f"python3 inference/run_classifier_infer.py --load_model_path models/classifier_model.bin {CLS_INFER} "
        "--config_path models/bert_tiny_config.json --encoder bert", ws)
    assert "reading models/finetuned_model.bin" in capsys.readouterr().out
    report = json.loads((tmp_path / "models" / "finetuned_model.bin" / "report.json").read_text())
    gold = [int(r["label"]) for r in rows(CORPORA / "reviews_cls" / "test.tsv")]
    predicted = [int(r["label"]) for r in rows(tmp_path / "prediction.tsv")]
    assert np.mean(np.array(predicted) == gold) == pytest.approx(report["test"]["accuracy"])
    # the old name of another task finds the classifier there, and says so
    argv = translate("python3 inference/run_ner_infer.py --load_model_path models/ner_model.bin --vocab_path "
                     "models/google_zh_vocab.txt --test_path x.tsv --prediction_path p.tsv --label2id_path l.json", ws)
    assert main(argv) == 1
    assert "holds a 'classifier' model, not one for 'ner'" in capsys.readouterr().err
    assert not (tmp_path / "models" / "classifier_model.bin").exists()  # nothing written under the old name


def test_multi_task_default_output_is_uer_pys():
    """finetune/run_classifier_mt.py (5743050, line 91; run_mt_classifier.py in 2020) defaults
    --output_model_path to models/multitask_classifier_model.bin; every other run_*.py to UER-py's
    finetune_opts' models/finetuned_model.bin."""
    import argparse

    from uer_ds.cli import finetune

    parser = argparse.ArgumentParser()
    finetune.add_arguments(parser)
    mt = parser.parse_args(["mt_classifier", "--dataset_path_list", "d"])
    assert mt.output_model_path == "models/multitask_classifier_model.bin"
    ner = parser.parse_args(["ner", "--train_path", "t", "--dev_path", "d", "--label2id_path", "l"])
    assert ner.output_model_path == "models/finetuned_model.bin"
