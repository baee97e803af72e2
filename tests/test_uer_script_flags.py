"""Every flag of UER-py's inference scripts (and of the 2020 scripts that spelled --subencoder_type) parses in
the `uer-ds` command that does the script's work (uer_ds.compat.SCRIPTS).

The flags are UER-py's own: tests/fixtures/uer_py_script_args.json lists each script's argparse calls as
read from its source at the commits named there (https://github.com/dbiir/UER-py: 5743050, 2024-05-09, today's
inference/*.py with uer/opts.py's infer_opts/model_opts/tokenizer_opts; 1c57a68, 2020-11-30, the first
inference/ scripts; ba1341a, 2020-04-03, scripts/cloze_test.py and scripts/generate.py).  Each script's whole
argument list -- every flag at once, at UER-py's default value where it has one -- is one command line.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from uer_ds.cli import main
from uer_ds.compat import ABSENT_FEATURES, SCRIPTS

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "uer_py_script_args.json").read_text(encoding="utf-8"))
CASES = [(commit[:7], script, specs) for commit, entry in FIXTURE["commits"].items()
         for script, specs in entry["scripts"].items()]


def _value(spec: dict) -> list[str]:
    """The words after a flag: nothing for store_true, UER-py's default where it has one, else a sample."""
    if spec.get("action") == "store_true":
        return []
    default = spec.get("default")
    if isinstance(default, list):
        return [str(v) for v in default] or ["2"]
    if default is not None:
        return [str(default)]
    choices = [c for c in spec.get("choices") or () if c is not None]
    if choices:
        return [str(choices[0])]
    return {"int": ["2"], "float": ["0.5"]}.get(spec.get("type"), ["x"])


def uer_argv(script: str, specs: list[dict]) -> list[str]:
    """The uer-ds command line of one UER-py script with every one of its flags."""
    argv = SCRIPTS[script].split()
    for spec in specs:
        argv += [spec["flags"][0], *_value(spec)]
    return argv


@pytest.mark.parametrize("commit, script, specs", CASES, ids=[f"{c}:{s}" for c, s, _ in CASES])
def test_every_flag_of_the_script_parses(commit, script, specs, monkeypatch, capsys):
    assert len(specs) >= 14  # the fixture holds the scripts' whole lists (14 to 41 flags)
    monkeypatch.setenv("UER_DS_PARSE_ONLY", "1")
    argv = uer_argv(script, specs)
    assert main(argv) == 0, capsys.readouterr().err
    assert "arguments parse" in capsys.readouterr().out


def test_the_fixture_covers_every_inference_script_uer_ds_has():
    today = FIXTURE["commits"]["5743050cc41f0f21986c9f938db5ac1726052629"]["scripts"]
    assert {s for s in SCRIPTS if s.startswith("inference/")} == set(today)
    flags = {spec["flags"][0] for specs in today.values() for spec in specs}
    assert {"--doc_stride", "--labels_num_list", "--max_choices_num", "--crf_target"} <= flags
    assert set(ABSENT_FEATURES) <= flags  # each flag accepted "off" is one UER-py's scripts really have


def _infer_args(argv: list[str]) -> argparse.Namespace:
    from uer_ds.cli import infer

    parser = argparse.ArgumentParser()
    infer.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("flag, words", [("--remove_attention_scale", []), ("--feed_forward", ["gated"]),
                                         ("--layernorm", ["t5"]), ("--decoder", ["transformer"]),
                                         ("--tgt_embedding", ["word", "pos"]), ("--merges_path", ["merges.txt"])])
def test_a_feature_uer_ds_lacks_is_refused_naming_the_flag(flag, words, sample_vocab, capsys):
    code = main(["model", "summary", "--config_path", "bert/tiny", "--vocab_path", str(sample_vocab), flag, *words])
    err = capsys.readouterr().err
    assert code == 1 and f"{flag}" in err and "is not in uer_ds" in err and "leave the flag out" in err


def test_uer_defaults_of_those_features_are_what_uer_ds_computes(sample_vocab, capsys):
    argv = ["model", "summary", "--config_path", "bert/tiny", "--vocab_path", str(sample_vocab), "--feed_forward",
            "dense", "--layernorm", "normal", "--relative_attention_buckets_num", "32", "--tgt_embedding", "word"]
    assert main(argv) == 0
    plain = capsys.readouterr().out
    assert main(["model", "summary", "--config_path", "bert/tiny", "--vocab_path", str(sample_vocab)]) == 0
    assert capsys.readouterr().out == plain  # the same model, parameter for parameter


def test_subencoder_type_is_uer_py_2020s_subencoder():
    from uer_ds.config import model_config_from_args

    args = _infer_args(["classifier", "--load_model_path", "m", "--test_path", "t", "--prediction_path", "p",
                        "--config_path", "bert/tiny", "--subword_type", "char", "--subencoder_type", "lstm"])
    cfg = model_config_from_args(args, vocab_size=100, sub_vocab_size=20, target=[])
    assert (cfg.subword_type, cfg.subencoder) == ("char", "lstm")


def test_infer_cmrc_doc_stride_sets_the_windows(tmp_path):
    """UER-py's run_cmrc_infer.py --doc_stride: windows start that many tokens apart (default: the model's)."""
    from uer_ds.tasks.mrc import CmrcTask
    from uer_ds.tokenizers import build_tokenizer

    chars = "甲乙丙丁戊己庚辛壬癸"
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *chars, "问"]) + "\n",
                                        encoding="utf-8")
    tokenizer = build_tokenizer("char", str(tmp_path / "vocab.txt"), None)
    context = chars * 10  # 100 tokens
    data = {"data": [{"paragraphs": [{"context": context, "qas": [{"id": "q1", "question": "问"}]}]}]}
    (tmp_path / "test.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    spec = {"doc_stride": 32, "max_query_length": 8, "max_answer_length": 4, "n_best_size": 2}
    args = _infer_args(["cmrc", "--load_model_path", "m", "--test_path", "t", "--prediction_path", "p"])
    # seq_length 40: [CLS] 问 [SEP] ... [SEP] leaves 36 context tokens per window
    windows = CmrcTask().read(str(tmp_path / "test.json"), tokenizer, 40, spec, labelled=False, options=CmrcTask().options_from(args))
    assert [w.extra["begin"] for w in windows] == [0, 32, 64]  # the model's stride (args.doc_stride None)
    args.doc_stride = 16
    windows = CmrcTask().read(str(tmp_path / "test.json"), tokenizer, 40, spec, labelled=False, options=CmrcTask().options_from(args))
    assert [w.extra["begin"] for w in windows] == [0, 16, 32, 48, 64]
    args.doc_stride = 0
    with pytest.raises(ValueError, match=r"--doc_stride has value 0: must be positive"):
        CmrcTask().read(str(tmp_path / "test.json"), tokenizer, 40, spec, labelled=False, options=CmrcTask().options_from(args))
