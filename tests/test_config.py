"""ModelConfig: UER configs load unchanged, validation names key/value/rule, CLI overrides merge first."""
from __future__ import annotations

import argparse
import json

import pytest

from conftest import SHARED_DATA, shared
from uer_ds.config import ModelConfig, add_model_config_arguments, model_config_from_args, shipped_config_names
from uer_ds.models import build_model

UER_FAMILIES = ("bert", "albert", "gpt2", "rnn", "cnn")


def uer_config_files():
    files = sorted(p for fam in UER_FAMILIES for p in (SHARED_DATA / "models" / fam).glob("*.json"))
    return files or [pytest.param(None, marks=pytest.mark.skip(reason=f"no UER configs under {SHARED_DATA}"))]


@pytest.mark.parametrize("path", uer_config_files(), ids=lambda p: p and f"{p.parent.name}/{p.name}")
def test_every_uer_config_loads_and_builds(path):
    raw = json.loads(path.read_text())
    cfg = ModelConfig.from_json(path)
    for key, value in raw.items():  # every value of the file survives unchanged
        got = getattr(cfg, key)
        if isinstance(got, ModelConfig):
            got = {k: v for k, v in got.to_dict().items() if k in value}
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    if cfg.encoder != "dual":
        cfg = cfg.replace(vocab_size=1000)
    model = build_model(cfg, device="meta")  # builds without allocating, even xlarge
    assert sum(p.numel() for p in model.parameters()) > 0


def test_uer_bert_base_matches_known_parameter_count():
    # Google BERT-base Chinese (HF BertForPreTraining, vocab 21128) has 102,882,442 parameters; uer_ds
    # keeps one more segment row (UER's padding segment 0): +768.
    cfg = ModelConfig.from_json(shared("models/bert/base_config.json"), {"vocab_size": 21128})
    assert sum(p.numel() for p in build_model(cfg, device="meta").parameters()) == 102_882_442 + 768


@pytest.mark.parametrize("name", shipped_config_names())
def test_shipped_configs_load_build_and_round_trip(name, tmp_path):
    cfg = ModelConfig.from_json(name, {"vocab_size": 500})
    build_model(cfg, device="meta")
    cfg.to_json(tmp_path / "c.json")
    assert ModelConfig.from_json(tmp_path / "c.json") == cfg


def test_shipped_names_cover_the_issue_list():
    wanted = {"bert/tiny", "bert/mini", "bert/small", "bert/base", "bert/large", "albert/base", "albert/large",
              "gpt2/small", "gpt2/medium", "rnn/lstm", "rnn/bilstm", "rnn/gru", "cnn/gatedcnn"}
    assert wanted <= set(shipped_config_names())


@pytest.mark.parametrize("overrides, pattern", [
    ({"foo": 1}, r"unknown key 'foo' \(value 1\)"),
    ({"heads_num": 5}, r"key 'heads_num' has value 5: it must divide hidden_size \(128\)"),
    ({"encoder": "lstmx"}, r"key 'encoder' has value 'lstmx': must be one of transformer, lstm"),
    ({"target": ["mlm", "nsp"]}, r"key 'target' has value 'nsp': must be one of mlm, sp"),
    ({"hidden_act": "swish2"}, r"key 'hidden_act' has value 'swish2'"),
    ({"dropout": 1.5}, r"key 'dropout' has value 1.5: must be in \[0, 1\)"),
    ({"emb_size": 64}, r"key 'emb_size' has value 64: must equal hidden_size \(128\)"),
    ({"layers_num": 0}, r"key 'layers_num' has value 0: must be positive"),
    ({"layers_num": "two"}, r"key 'layers_num' has value 'two': must be int"),
    ({"mask": "bidirectional"}, r"key 'mask' has value 'bidirectional'"),
    ({"target": ["mlm", "mlm"]}, r"a target may appear once"),
    ({"embedding": ["pos", "seg"]}, r"must include 'word'"),
    ({"target": ["bilm"]}, r"'bilm': it needs a bidirectional encoder"),
    ({"kernels": "cuda"}, r"key 'kernels' has value 'cuda': must be one of auto, torch, triton"),
    ({"target": ["sp"], "tie_weights": True}, r"tie_weights' is true: target \['sp'\] has no output"),
    ({"encoder": "lstm", "parameter_sharing": True}, r"only the transformer encoder supports it"),
])
def test_invalid_values_name_key_value_and_rule(overrides, pattern, tmp_path):
    path = tmp_path / "tiny.json"
    ModelConfig.from_json("bert/tiny").to_json(path)
    with pytest.raises(ValueError, match=pattern) as info:
        ModelConfig.from_json(path, overrides)
    assert str(path) in str(info.value)  # and the file


def test_json_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "emb_size": 128,\n  "hidden_size": \n}')
    with pytest.raises(ValueError, match=r"bad.json:4:1: not valid JSON"):
        ModelConfig.from_json(bad)
    with pytest.raises(FileNotFoundError, match="no such file, nor a shipped config name"):
        ModelConfig.from_json(tmp_path / "missing.json")
    bad.write_text(json.dumps({"emb_size": True}))
    with pytest.raises(ValueError, match="key 'emb_size' has value True of type bool: must be int"):
        ModelConfig.from_json(bad)


def test_gatedcnn_and_dual_rules():
    with pytest.raises(ValueError, match=r"gatedcnn needs layers_num - 1 divisible by block_size \(2\)"):
        ModelConfig.from_json("cnn/gatedcnn", {"layers_num": 8})
    with pytest.raises(ValueError, match="stream_0 and stream_1"):
        ModelConfig.from_dict({"embedding": ["dual"], "encoder": "dual"})
    with pytest.raises(ValueError, match="needs embedding \\['dual'\\] and encoder 'dual' together"):
        ModelConfig.from_dict({"embedding": ["dual"], "encoder": "lstm", "target": []})


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_model_config_arguments(parser)
    return parser.parse_args(argv)


def test_cli_flags_override_json_in_both_spellings():
    args = _parse(["--config_path", "bert/tiny", "--layers_num", "3", "--heads_num=4", "--target", "mlm",
                   "--dropout=0", "--tie_weights", "false", "--vocab_size", "99"])
    cfg = model_config_from_args(args)
    assert (cfg.layers_num, cfg.heads_num, cfg.target, cfg.dropout, cfg.tie_weights, cfg.vocab_size) == \
        (3, 4, ("mlm",), 0.0, False, 99)
    assert cfg.hidden_size == 128  # untouched keys keep the JSON's values
    assert model_config_from_args(_parse(["--config_path=bert/tiny", "--target=mlm,sp"])).target == ("mlm", "sp")
    assert model_config_from_args(_parse(["--config_path=bert/tiny", "--remove_embedding_layernorm"])) \
        .remove_embedding_layernorm is True


def test_validation_runs_after_the_merge():
    # --hidden_size 100 alone breaks emb_size == hidden_size (the JSON says emb_size 128) ...
    with pytest.raises(ValueError, match="emb_size"):
        model_config_from_args(_parse(["--config_path", "bert/tiny", "--hidden_size", "100"]))
    # the same flag is fine once the other half of the combination comes with it
    cfg = model_config_from_args(_parse(["--config_path", "bert/tiny", "--hidden_size", "100", "--emb_size=100"]))
    assert cfg.hidden_size == cfg.emb_size == 100
    with pytest.raises(ValueError, match="key 'heads_num' has value 3"):
        model_config_from_args(_parse(["--config_path", "bert/tiny", "--heads_num", "3"]))
