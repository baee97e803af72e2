"""The command line: help, model summary, flag spellings, errors with exit codes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from uer_ds.cli import COMMANDS, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "uer_ds", *args], capture_output=True, text=True)


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in out.stdout


def test_console_script_and_module_agree():
    script = subprocess.run([sys.executable.replace("python", "uer-ds"), "--help"], capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout == run_cli("--help").stdout


def test_model_summary_counts(capsys, sample_vocab):
    assert main(["model", "summary", "--config_path", "bert/base", "--vocab_size", "21128"]) == 0
    out = capsys.readouterr().out
    # HF BertForPreTraining (bert-base, vocab 21128) has 102,882,442; we keep one more segment row (+768)
    assert "total" in out and "102,883,210" in out
    assert "embedding.word" in out and "16,226,304" in out
    assert main(["model", "summary", "--config_path", "bert/tiny", "--vocab_path", str(sample_vocab),
                 "--layers_num=4"]) == 0
    assert "(x4 stored)" in capsys.readouterr().out


def test_errors_exit_nonzero_with_one_line():
    out = run_cli("model", "summary", "--config_path", "bert/tiny", "--heads_num", "3", "--vocab_size", "10")
    assert out.returncode == 1
    assert out.stderr.strip() == "uer-ds model: error: --heads_num has value 3: it must divide hidden_size (128)"
    assert "Traceback" not in out.stderr
    out = run_cli("frobnicate")
    assert out.returncode == 2 and "unknown command 'frobnicate'" in out.stderr


def test_launcher_local_rank_is_accepted(capsys):
    assert main(["model", "summary", "--config_path", "bert/tiny", "--vocab_size", "50", "--local_rank=0"]) == 0


@pytest.mark.parametrize("vocab_flag", [["--vocab_size", "0"], []])
def test_summary_needs_a_vocabulary(vocab_flag, capsys):
    assert main(["model", "summary", "--config_path", "bert/tiny", *vocab_flag]) == 1
    assert "vocab_size is 0" in capsys.readouterr().err


def test_one_torch_extensions_cache_from_a_checkout():
    """Run from the checkout, every command builds DeepSpeed's ops into the checkout's .torch_extensions (the cache
    the quickstart and the tests use), unless TORCH_EXTENSIONS_DIR says otherwise."""
    probe = ("import os, sys; os.environ.pop('TORCH_EXTENSIONS_DIR', None); from uer_ds.cli import main; "
             "main(['--help']); print(os.environ['TORCH_EXTENSIONS_DIR'], file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != "TORCH_EXTENSIONS_DIR"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.stderr.strip() == str(ROOT / ".torch_extensions")
    mine = dict(env, TORCH_EXTENSIONS_DIR="/elsewhere")
    out = subprocess.run([sys.executable, "-c", probe.replace("os.environ.pop('TORCH_EXTENSIONS_DIR', None); ", "")],
                         capture_output=True, text=True, env=mine, timeout=120)
    assert out.stderr.strip() == "/elsewhere"


def test_export_help_points_to_export_onnx():
    out = subprocess.run([sys.executable, "-m", "uer_ds", "export", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert "uer-ds export onnx" in out.stdout


@pytest.mark.parametrize("task", ["classifier", "ner", "cmrc"])
def test_infer_help_lists_inference_flags_only(task):
    """`uer-ds infer <task> --help` (issue 28): the model's shape comes from its saved config, so no
    training flag (TrainConfig's, fine-tuning's) and no model-shape flag (ModelConfig's fields, but the
    config file and the runtime --kernels) is listed; the shape flags UER-py's inference scripts repeat are
    still accepted (parsed here; checked against the model at run time)."""
    import argparse
    import dataclasses
    import re

    from uer_ds.cli.infer import add_infer_arguments
    from uer_ds.config import ModelConfig, TrainConfig
    from uer_ds.recipes.finetune import FinetuneOptions
    from uer_ds.tasks import TASKS

    out = run_cli("infer", task, "--help")
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"(?m)^  (--\w+)", out.stdout))  # option lines, not wrapped help text
    assert {"--load_model_path", "--test_path", "--prediction_path", "--batch_size", "--vocab_path",
            "--config_path", "--kernels"} <= listed
    training = {f"--{f.name}" for cls in (TrainConfig, FinetuneOptions) for f in dataclasses.fields(cls)}
    shape = {f"--{f.name}" for f in dataclasses.fields(ModelConfig)} - {"--kernels", "--labels_num"}
    assert listed & (training - {"--batch_size", "--seq_length"}) == set()
    assert listed & shape == set()
    parser = argparse.ArgumentParser()
    add_infer_arguments(parser, TASKS[task])
    args = parser.parse_args(["--load_model_path", "m", "--test_path", "t", "--prediction_path", "p", "--encoder",
                              "bert", "--layers_num", "12", "--hidden_size", "768", "--embedding", "word", "pos",
                              "seg"])
    assert (args.encoder, args.layers_num, args.hidden_size) == ("bert", "12", "768")
