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
    ({"target": ["mlm", "nspx"]}, r"key 'target' has value 'nspx': must be one of mlm, sp"),
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
    path.write_text(json.dumps(ModelConfig.from_json("bert/tiny").to_dict() | overrides))
    with pytest.raises(ValueError, match=pattern) as info:
        ModelConfig.from_json(path)
    assert str(info.value).startswith(f"{path}: ")  # and the file


@pytest.mark.parametrize("flags, message", [
    (["--encoder", "lstmx"], "--encoder has value 'lstmx': must be one of transformer, lstm, gru, bilstm, bigru, "
                             "gatedcnn, cnn, rcnn, crnn, attn, synt, dual; UER-py's names: bert, gpt, gpt2"),
    (["--heads_num", "5"], "--heads_num has value 5: it must divide hidden_size (128)"),
    (["--layers_num", "two"], "--layers_num has value 'two': must be int"),
    (["--target", "lm"], "--target has 'lm' but the transformer's mask is 'fully_visible': every position would see "
                         "the token it predicts; use --mask causal or --encoder gpt"),
    (["--encoder", "transformer", "--bidirectional"], "--bidirectional: it applies to the recurrent encoders lstm "
                                                       "and gru, not encoder 'transformer'"),
])
def test_errors_about_flags_name_the_flag_not_the_file(flags, message):
    with pytest.raises(ValueError) as info:
        model_config_from_args(_parse(["--config_path", "bert/tiny", *flags]))
    assert str(info.value).startswith(message) and "tiny_config.json" not in str(info.value)


def test_a_key_an_alias_set_names_the_alias():
    from uer_ds.config import ConfigError, _located

    err = ConfigError("mask", "key 'mask' has value 'causal': a rule")
    assert _located(err, {"mask": ("flag", "encoder gpt")}, "c.json") == \
        "key 'mask' (set by --encoder gpt) has value 'causal': a rule"
    assert _located(err, {"mask": ("file", "encoder gpt")}, "c.json") == \
        "c.json: key 'mask' (set by encoder gpt in c.json) has value 'causal': a rule"
    assert _located(err, {"mask": ("flag", None)}, "c.json") == "--mask has value 'causal': a rule"
    assert _located(err, {}, "c.json") == "c.json: key 'mask' has value 'causal': a rule"


@pytest.mark.parametrize("flags, expected", [
    # UER-py 2019-2021 README commands: --encoder bert --target bert, --encoder gpt --target lm, ...
    (["--encoder", "bert", "--target", "bert"], dict(encoder="transformer", mask="fully_visible",
                                                     layernorm_positioning="post", target=("mlm", "sp"))),
    (["--encoder", "gpt", "--target", "lm"], dict(encoder="transformer", mask="causal", layernorm_positioning="post",
                                                  target=("lm",))),
    (["--encoder", "gpt2", "--target", "lm"], dict(mask="causal", layernorm_positioning="pre")),
    (["--encoder", "gpt", "--layernorm_positioning", "pre", "--target", "lm"],  # explicit flags win
     dict(mask="causal", layernorm_positioning="pre")),
    (["--target", "albert"], dict(target=("mlm", "sp"), data_processor="albert")),
    (["--target", "mlm", "nsp"], dict(target=("mlm", "sp"))),
    (["--embedding", "word_pos_seg"], dict(embedding=("word", "pos", "seg"))),
    (["--embedding", "bert"], dict(embedding=("word", "pos", "seg"))),
])
def test_uer_py_aliases_resolve_on_the_command_line(flags, expected):
    cfg = model_config_from_args(_parse(["--config_path", "bert/tiny", *flags, "--tie_weights", "false"]))
    assert {k: getattr(cfg, k) for k in expected} == expected


@pytest.mark.parametrize("encoder, bidirectional", [("lstm", "bilstm"), ("gru", "bigru")])
def test_bidirectional_turns_recurrent_encoders_into_their_two_way_forms(encoder, bidirectional, tmp_path):
    # rnn/lstm's target is lm, which a two-way encoder cannot serve: ELMo's bilm (UER-py's recipe)
    cfg = model_config_from_args(_parse(["--config_path", "rnn/lstm", "--encoder", encoder, "--bidirectional",
                                         "--target", "bilm", "--tie_weights", "false"]))
    assert cfg.encoder == bidirectional
    assert model_config_from_args(_parse(["--config_path", "rnn/lstm", "--bidirectional", "false"])).encoder == "lstm"
    # in a JSON file too, and with the JSON's encoder
    path = tmp_path / "c.json"
    path.write_text(json.dumps(ModelConfig.from_json("rnn/lstm").to_dict() | {"bidirectional": True,
                                                                             "target": ["bilm"], "tie_weights": False}))
    assert ModelConfig.from_json(path).encoder == "bilstm"


def test_aliases_in_json_files_resolve_too(tmp_path):
    path = tmp_path / "old.json"  # UER-py 2020's configs had no mask key: the encoder's name said it
    values = {k: v for k, v in ModelConfig.from_json("bert/tiny").to_dict().items()
              if k not in ("mask", "layernorm_positioning")}
    path.write_text(json.dumps(values | {"encoder": "gpt", "target": ["lm"], "embedding": ["word_pos"]}))
    cfg = ModelConfig.from_json(path)
    assert (cfg.encoder, cfg.mask, cfg.embedding, cfg.target) == ("transformer", "causal", ("word", "pos"), ("lm",))


def test_help_lists_the_uer_py_names_from_the_alias_table():
    from uer_ds.compat import MODEL_ALIASES

    parser = argparse.ArgumentParser()
    add_model_config_arguments(parser)
    text = parser.format_help()
    for key, table in MODEL_ALIASES.items():
        assert f"(UER-py's names: {', '.join(table)})" in " ".join(text.split()), key


def test_lm_needs_a_causal_mask_in_files_too(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(ModelConfig.from_json("bert/tiny").to_dict() | {"target": ["lm"],
                                                                                "tie_weights": False}))
    with pytest.raises(ValueError, match=rf"^{path}: key 'target' has 'lm' but .*use --mask causal or --encoder gpt"):
        ModelConfig.from_json(path)
    assert ModelConfig.from_json(path, {"mask": "causal"}).mask == "causal"


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
    with pytest.raises(ValueError, match="^--heads_num has value 3"):
        model_config_from_args(_parse(["--config_path", "bert/tiny", "--heads_num", "3"]))


# UER-py's models/bert/base_config.json (dbiir/UER-py 5743050), as its users pass it with `--target cls`
UER_BERT_BASE = {"emb_size": 768, "feedforward_size": 3072, "hidden_size": 768, "hidden_act": "gelu", "heads_num": 12,
                 "layers_num": 12, "max_seq_length": 512, "dropout": 0.1, "data_processor": "bert",
                 "embedding": ["word", "pos", "seg"], "encoder": "transformer", "mask": "fully_visible",
                 "target": ["mlm", "sp"], "tie_weights": True}


def test_target_cls_with_uer_bert_config_unties_with_a_note(tmp_path):
    from uer_ds.config import ConfigNote

    path = tmp_path / "base_config.json"
    path.write_text(json.dumps(UER_BERT_BASE))
    with pytest.warns(ConfigNote, match=r"has tie_weights true, but target \['cls'\] has no output over the "
                                        r"vocabulary .*: tie_weights off"):
        cfg = ModelConfig.from_json(path, {"target": ["cls"], "data_processor": "cls", "vocab_size": 100})
    assert cfg.target == ("cls",) and cfg.tie_weights is False
    # the file's own targets (mlm) tie, as before; a --tie_weights flag with cls alone meets the rule
    assert ModelConfig.from_json(path, {"vocab_size": 100}).tie_weights is True
    with pytest.raises(ValueError, match=r"tie_weights.*has no output over the vocabulary"):
        ModelConfig.from_json(path, {"target": ["cls"], "tie_weights": "true", "vocab_size": 100})
