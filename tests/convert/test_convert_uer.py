"""UER-py / TencentPretrain checkpoints: state dicts whose key names are spelled out here from UER-py's
documented layout (its scripts/convert_*_from_huggingface_to_uer.py, before and after its July 2023
renaming), filled from random Hugging Face models, so converted outputs can be checked against
transformers.  Round trips uer -> uer_ds -> uer give back every tensor."""
from __future__ import annotations

import json

import pytest
import torch
from hf_cases import TOL, V, batch, build_hf, hf_outputs, our_outputs, transformers

from uer_ds.cli import main
from uer_ds.convert import convert
from uer_ds.models import load_model

BERT_CONFIG = {"emb_size": 32, "feedforward_size": 64, "hidden_size": 32, "hidden_act": "gelu", "heads_num": 4,
               "layers_num": 2, "max_seq_length": 24, "dropout": 0.1, "data_processor": "bert",
               "embedding": ["word", "pos", "seg"], "encoder": "transformer", "mask": "fully_visible",
               "target": ["mlm", "sp"], "tie_weights": True, "layernorm_eps": 1e-12}
GPT2_CONFIG = {"emb_size": 32, "feedforward_size": 128, "hidden_size": 32, "hidden_act": "gelu_fast",
               "heads_num": 4, "layers_num": 2, "max_seq_length": 24, "dropout": 0.1, "data_processor": "lm",
               "embedding": ["word", "pos"], "remove_embedding_layernorm": True, "encoder": "transformer",
               "mask": "causal", "layernorm_positioning": "pre", "target": ["lm"], "tie_weights": True,
               "layernorm_eps": 1e-5}
ALBERT_CONFIG = {"emb_size": 16, "feedforward_size": 64, "hidden_size": 32, "hidden_act": "gelu_fast",
                 "heads_num": 4, "layers_num": 3, "max_seq_length": 24, "dropout": 0.0, "data_processor": "albert",
                 "embedding": ["word", "pos", "seg"], "encoder": "transformer", "mask": "fully_visible",
                 "factorized_embedding_parameterization": True, "parameter_sharing": True, "target": ["mlm", "sp"],
                 "layernorm_eps": 1e-12}


def _uer_segments(token_types):
    return torch.cat([torch.zeros(1, token_types.shape[1]), token_types])  # UER-py's scripts: a zero padding row


def uer_bert(hf_state, layers=2, legacy=False):
    """BertForPreTraining -> UER-py keys, as UER-py's convert_bert_from_huggingface_to_uer.py writes them."""
    s, h = {}, hf_state
    word, pos, seg = (("embedding.word_embedding", "embedding.position_embedding", "embedding.segment_embedding")
                      if legacy else ("embedding.word.embedding", "embedding.pos.embedding", "embedding.seg.embedding"))
    s[f"{word}.weight"] = h["bert.embeddings.word_embeddings.weight"]
    s[f"{pos}.weight"] = h["bert.embeddings.position_embeddings.weight"]
    s[f"{seg}.weight"] = _uer_segments(h["bert.embeddings.token_type_embeddings.weight"])
    s["embedding.layer_norm.gamma"] = h["bert.embeddings.LayerNorm.weight"]
    s["embedding.layer_norm.beta"] = h["bert.embeddings.LayerNorm.bias"]
    for i in range(layers):
        u, b = f"encoder.transformer.{i}", f"bert.encoder.layer.{i}"
        for j, name in enumerate(("query", "key", "value")):
            s[f"{u}.self_attn.linear_layers.{j}.weight"] = h[f"{b}.attention.self.{name}.weight"]
            s[f"{u}.self_attn.linear_layers.{j}.bias"] = h[f"{b}.attention.self.{name}.bias"]
        s[f"{u}.self_attn.final_linear.weight"] = h[f"{b}.attention.output.dense.weight"]
        s[f"{u}.self_attn.final_linear.bias"] = h[f"{b}.attention.output.dense.bias"]
        s[f"{u}.layer_norm_1.gamma"] = h[f"{b}.attention.output.LayerNorm.weight"]
        s[f"{u}.layer_norm_1.beta"] = h[f"{b}.attention.output.LayerNorm.bias"]
        s[f"{u}.feed_forward.linear_1.weight"] = h[f"{b}.intermediate.dense.weight"]
        s[f"{u}.feed_forward.linear_1.bias"] = h[f"{b}.intermediate.dense.bias"]
        s[f"{u}.feed_forward.linear_2.weight"] = h[f"{b}.output.dense.weight"]
        s[f"{u}.feed_forward.linear_2.bias"] = h[f"{b}.output.dense.bias"]
        s[f"{u}.layer_norm_2.gamma"] = h[f"{b}.output.LayerNorm.weight"]
        s[f"{u}.layer_norm_2.beta"] = h[f"{b}.output.LayerNorm.bias"]
    sp1, sp2, mlm1, norm, mlm2 = (("target.sp_linear_1", "target.sp_linear_2", "target.mlm_linear_1",
                                   "target.layer_norm", "target.mlm_linear_2") if legacy else
                                  ("target.sp.linear_1", "target.sp.linear_2", "target.mlm.linear_1",
                                   "target.mlm.layer_norm", "target.mlm.linear_2"))
    s[f"{sp1}.weight"], s[f"{sp1}.bias"] = h["bert.pooler.dense.weight"], h["bert.pooler.dense.bias"]
    s[f"{sp2}.weight"], s[f"{sp2}.bias"] = h["cls.seq_relationship.weight"], h["cls.seq_relationship.bias"]
    s[f"{mlm1}.weight"] = h["cls.predictions.transform.dense.weight"]
    s[f"{mlm1}.bias"] = h["cls.predictions.transform.dense.bias"]
    s[f"{norm}.gamma"] = h["cls.predictions.transform.LayerNorm.weight"]
    s[f"{norm}.beta"] = h["cls.predictions.transform.LayerNorm.bias"]
    s[f"{mlm2}.weight"] = h["bert.embeddings.word_embeddings.weight"]  # tied: saved under both names
    s[f"{mlm2}.bias"] = h["cls.predictions.bias"]
    return s


def uer_gpt2(hf_state, layers=2, width=32):
    """GPT2LMHeadModel -> UER-py keys (convert_gpt2_from_huggingface_to_uer.py)."""
    s, h = {}, hf_state
    s["embedding.word.embedding.weight"] = h["transformer.wte.weight"]
    s["embedding.pos.embedding.weight"] = h["transformer.wpe.weight"]
    for i in range(layers):
        u, g = f"encoder.transformer.{i}", f"transformer.h.{i}"
        for j in range(3):
            s[f"{u}.self_attn.linear_layers.{j}.weight"] = h[f"{g}.attn.c_attn.weight"].t()[j * width:(j + 1) * width]
            s[f"{u}.self_attn.linear_layers.{j}.bias"] = h[f"{g}.attn.c_attn.bias"][j * width:(j + 1) * width]
        s[f"{u}.self_attn.final_linear.weight"] = h[f"{g}.attn.c_proj.weight"].t()
        s[f"{u}.self_attn.final_linear.bias"] = h[f"{g}.attn.c_proj.bias"]
        s[f"{u}.layer_norm_1.gamma"], s[f"{u}.layer_norm_1.beta"] = h[f"{g}.ln_1.weight"], h[f"{g}.ln_1.bias"]
        s[f"{u}.feed_forward.linear_1.weight"] = h[f"{g}.mlp.c_fc.weight"].t()
        s[f"{u}.feed_forward.linear_1.bias"] = h[f"{g}.mlp.c_fc.bias"]
        s[f"{u}.feed_forward.linear_2.weight"] = h[f"{g}.mlp.c_proj.weight"].t()
        s[f"{u}.feed_forward.linear_2.bias"] = h[f"{g}.mlp.c_proj.bias"]
        s[f"{u}.layer_norm_2.gamma"], s[f"{u}.layer_norm_2.beta"] = h[f"{g}.ln_2.weight"], h[f"{g}.ln_2.bias"]
    s["encoder.layer_norm.gamma"] = h["transformer.ln_f.weight"]
    s["encoder.layer_norm.beta"] = h["transformer.ln_f.bias"]
    s["target.lm.output_layer.weight"] = h["transformer.wte.weight"]  # tied: saved under both names
    return s


def uer_albert(hf_state):
    """AlbertForPreTraining (one shared layer) -> UER-py keys (convert_albert_from_huggingface_to_uer.py)."""
    s, h = {}, hf_state
    s["embedding.word.embedding.weight"] = h["albert.embeddings.word_embeddings.weight"]
    s["embedding.pos.embedding.weight"] = h["albert.embeddings.position_embeddings.weight"]
    s["embedding.seg.embedding.weight"] = _uer_segments(h["albert.embeddings.token_type_embeddings.weight"])
    s["embedding.layer_norm.gamma"] = h["albert.embeddings.LayerNorm.weight"]
    s["embedding.layer_norm.beta"] = h["albert.embeddings.LayerNorm.bias"]
    s["encoder.linear.weight"] = h["albert.encoder.embedding_hidden_mapping_in.weight"]
    s["encoder.linear.bias"] = h["albert.encoder.embedding_hidden_mapping_in.bias"]
    a = "albert.encoder.albert_layer_groups.0.albert_layers.0"
    for j, name in enumerate(("query", "key", "value")):
        s[f"encoder.transformer.self_attn.linear_layers.{j}.weight"] = h[f"{a}.attention.{name}.weight"]
        s[f"encoder.transformer.self_attn.linear_layers.{j}.bias"] = h[f"{a}.attention.{name}.bias"]
    s["encoder.transformer.self_attn.final_linear.weight"] = h[f"{a}.attention.dense.weight"]
    s["encoder.transformer.self_attn.final_linear.bias"] = h[f"{a}.attention.dense.bias"]
    s["encoder.transformer.layer_norm_1.gamma"] = h[f"{a}.attention.LayerNorm.weight"]
    s["encoder.transformer.layer_norm_1.beta"] = h[f"{a}.attention.LayerNorm.bias"]
    s["encoder.transformer.feed_forward.linear_1.weight"] = h[f"{a}.ffn.weight"]
    s["encoder.transformer.feed_forward.linear_1.bias"] = h[f"{a}.ffn.bias"]
    s["encoder.transformer.feed_forward.linear_2.weight"] = h[f"{a}.ffn_output.weight"]
    s["encoder.transformer.feed_forward.linear_2.bias"] = h[f"{a}.ffn_output.bias"]
    s["encoder.transformer.layer_norm_2.gamma"] = h[f"{a}.full_layer_layer_norm.weight"]
    s["encoder.transformer.layer_norm_2.beta"] = h[f"{a}.full_layer_layer_norm.bias"]
    s["target.sp.linear_1.weight"], s["target.sp.linear_1.bias"] = h["albert.pooler.weight"], h["albert.pooler.bias"]
    s["target.sp.linear_2.weight"] = h["sop_classifier.classifier.weight"]
    s["target.sp.linear_2.bias"] = h["sop_classifier.classifier.bias"]
    s["target.mlm.linear_1.weight"] = h["predictions.dense.weight"]
    s["target.mlm.linear_1.bias"] = h["predictions.dense.bias"]
    s["target.mlm.layer_norm.gamma"] = h["predictions.LayerNorm.weight"]
    s["target.mlm.layer_norm.beta"] = h["predictions.LayerNorm.bias"]
    s["target.mlm.linear_2.weight"] = h["albert.embeddings.word_embeddings.weight"]  # untied in UER's config
    s["target.mlm.linear_2.bias"] = h["predictions.bias"]
    return s


FAMILIES = {"bert": ("BertForPreTraining", uer_bert, BERT_CONFIG), "gpt2": ("GPT2LMHeadModel", uer_gpt2, GPT2_CONFIG),
            "albert": ("AlbertForPreTraining", uer_albert, ALBERT_CONFIG)}


def write_uer(tmp_path, state, config, name="model"):
    torch.save({k: v.clone() for k, v in state.items()}, tmp_path / f"{name}.bin")
    (tmp_path / f"{name}_config.json").write_text(json.dumps(config))
    return tmp_path / f"{name}.bin", tmp_path / f"{name}_config.json"


def hf_model(family):
    cls, to_uer, config = FAMILIES[family]
    hf = build_hf(family, cls, **({"hidden_act": "gelu_new"} if family == "albert" else {}))
    return hf, to_uer({k: v.detach() for k, v in hf.state_dict().items()}), config


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_uer_checkpoint_matches_transformers_and_round_trips(family, tmp_path):
    hf, state, config = hf_model(family)
    path, config_path = write_uer(tmp_path, state, config)
    report = convert("uer", "uer_ds", path, tmp_path / "ours", family, config_path)
    assert report.unused_input == [] and "read uer checkpoint, current layout" in report.lines()
    b = batch(family)
    compare_valid(our_outputs(load_model(tmp_path / "ours"), b), hf_outputs(hf, b), b["valid"])

    convert("uer_ds", "uer", tmp_path / "ours", tmp_path / "back.bin", family)
    back = torch.load(tmp_path / "back.bin", weights_only=True)
    assert sorted(back) == sorted(state)
    assert all(torch.equal(back[k], state[k]) for k in state), [k for k in state if not torch.equal(back[k], state[k])]
    written = json.loads((tmp_path / "back_config.json").read_text())
    assert {k: written[k] for k in config} == config


def compare_valid(ours, theirs, valid):
    """UER-py's scripts give the padding segment a zero row: compare real tokens (sp reads [CLS] only)."""
    for name in theirs:
        a, b = (ours[name], theirs[name]) if name == "sp" else (ours[name][valid], theirs[name][valid])
        torch.testing.assert_close(a, b, **TOL)


def test_legacy_layout_and_tencentpretrain(tmp_path):
    hf, _, _ = hf_model("bert")
    h = {k: v.detach() for k, v in hf.state_dict().items()}
    legacy, current = uer_bert(h, legacy=True), uer_bert(h)
    path, config_path = write_uer(tmp_path, legacy, BERT_CONFIG, "legacy")
    report = convert("uer", "uer_ds", path, tmp_path / "ours", "bert", config_path)
    assert report.unused_input == [] and "read uer checkpoint, legacy layout" in report.lines()
    b = batch("bert")
    compare_valid(our_outputs(load_model(tmp_path / "ours"), b), hf_outputs(hf, b), b["valid"])
    convert("uer_ds", "uer", tmp_path / "ours", tmp_path / "current.bin", "bert")  # written in today's layout
    back = torch.load(tmp_path / "current.bin", weights_only=True)
    assert sorted(back) == sorted(current) and all(torch.equal(back[k], current[k]) for k in current)
    report = convert("tencentpretrain", "uer_ds", tmp_path / "current.bin", tmp_path / "tp", "bert", config_path)
    assert "read tencentpretrain checkpoint, current layout" in report.lines()


def test_uer_to_hf_on_the_command_line(tmp_path, capsys):
    hf, state, config = hf_model("bert")
    path, config_path = write_uer(tmp_path, state, config)
    assert main(["convert", "--from", "uer", "--to", "hf", "--model", "bert", "--input", str(path),
                 "--config_path", str(config_path), "--output", str(tmp_path / "hf")]) == 0
    assert "wrote Hugging Face BertForPreTraining" in capsys.readouterr().out
    back = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "hf").eval()
    b = batch("bert")
    compare_valid(hf_outputs(back, b), hf_outputs(hf, b), b["valid"])
    # without --config_path the config beside the .bin is used, and said so (issue 30: one resolver)
    assert main(["convert", "--from", "uer", "--to", "hf", "--model", "bert", "--input", str(path),
                 "--output", str(tmp_path / "beside")]) == 0
    assert f"model config: {config_path} (beside the checkpoint" in capsys.readouterr().out
    again = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "beside").eval()
    compare_valid(hf_outputs(again, b), hf_outputs(hf, b), b["valid"])
    config_path.unlink()
    assert main(["convert", "--from", "uer", "--to", "hf", "--model", "bert", "--input", str(path),
                 "--output", str(tmp_path / "none")]) == 1
    assert "--from uer needs --config_path" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


# ---- bad input ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_uer(tmp_path_factory):
    _, state, _ = hf_model("bert")
    return state


def _convert(tmp_path, state, config=BERT_CONFIG):
    path, config_path = write_uer(tmp_path, state, config, "in")
    return convert("uer", "uer_ds", path, tmp_path / "out", "bert", config_path)


def test_shape_mismatch_names_the_uer_key_and_both_shapes(bert_uer, tmp_path):
    with pytest.raises(ValueError, match=r"'encoder\.transformer\.0\.feed_forward\.linear_1\.weight' \(64, 32\) gives "
                                         r".* but the model config needs \(128, 32\)"):
        _convert(tmp_path, bert_uer, {**BERT_CONFIG, "feedforward_size": 128})
    assert not (tmp_path / "out").exists()


def test_missing_and_unknown_keys(bert_uer, tmp_path):
    partial = {k: v for k, v in bert_uer.items() if k != "encoder.transformer.1.layer_norm_2.gamma"}
    with pytest.raises(ValueError, match=r"1 key\(s\) the model config needs are missing: "
                                         r"encoder\.transformer\.1\.layer_norm_2\.gamma"):
        _convert(tmp_path, partial)
    report = _convert(tmp_path, {**bert_uer, "target.nsp_bias": torch.zeros(2)})
    assert report.unused_input == ["target.nsp_bias"]


def test_absent_head_is_dropped_and_said(bert_uer, tmp_path):
    mlm_only = {k: v for k, v in bert_uer.items() if not k.startswith("target.sp.")}
    report = _convert(tmp_path, mlm_only)
    assert "the config's target 'sp' has no weights in the checkpoint: converted without it" in report.lines()
    assert load_model(tmp_path / "out").config.target == ("mlm",)


def test_tie_weights_must_be_true_to_the_file(bert_uer, tmp_path):
    untied = {**bert_uer, "target.mlm.linear_2.weight": torch.randn(V, 32)}
    with pytest.raises(ValueError, match=r"ties weights .* 'target\.mlm\.linear_2\.weight' differs from "
                                         r"'embedding\.word\.embedding\.weight'"):
        _convert(tmp_path, untied)
    report = _convert(tmp_path, untied, {**BERT_CONFIG, "tie_weights": False})
    assert report.unused_input == []


class _Payload:
    def __reduce__(self):
        return (open, ("/tmp/uer_ds_payload_ran", "w"))


def test_pickled_code_is_refused_and_garbage_named(tmp_path):
    marker = __import__("pathlib").Path("/tmp/uer_ds_payload_ran")
    marker.unlink(missing_ok=True)
    torch.save({"embedding.word.embedding.weight": torch.zeros(2, 2), "x": _Payload()}, tmp_path / "evil.bin")
    (tmp_path / "c.json").write_text(json.dumps(BERT_CONFIG))
    with pytest.raises(ValueError, match=r"evil\.bin: not a readable PyTorch weight file with tensors only"):
        convert("uer", "uer_ds", tmp_path / "evil.bin", tmp_path / "out", "bert", tmp_path / "c.json")
    assert not marker.exists()  # the payload never ran
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.bin: not a readable PyTorch weight file"):
        convert("uer", "uer_ds", tmp_path / "junk.bin", tmp_path / "out", "bert", tmp_path / "c.json")
    torch.save({"some.other.weight": torch.zeros(2)}, tmp_path / "other.bin")
    with pytest.raises(ValueError, match=r"not a UER-py/TencentPretrain transformer checkpoint"):
        convert("uer", "uer_ds", tmp_path / "other.bin", tmp_path / "out", "bert", tmp_path / "c.json")
    assert not (tmp_path / "out").exists()


def test_tools_load_every_source_alike(tmp_path):
    """The resolver (every command's --load_model_path): a UER .bin + config, an HF directory and a uer_ds
    directory of one model give one output."""
    from uer_ds.convert.resolve import resolve_model

    def load_any_model(path, config_path=None, uer_layer_norm=True):
        return resolve_model(path, config_path=config_path).model(uer_layer_norm=uer_layer_norm)

    hf, state, config = hf_model("bert")
    path, config_path = write_uer(tmp_path, state, config)
    hf.save_pretrained(tmp_path / "hf")
    convert("hf", "uer_ds", tmp_path / "hf", tmp_path / "ours", "bert")
    b = batch("bert")
    # with uer_layer_norm=False a UER-py file computes as the converted model does (HF's LayerNorm)
    outputs = [our_outputs(load_any_model(p, c, uer_layer_norm=False), b)
               for p, c in ((path, config_path), (tmp_path / "hf", None), (tmp_path / "ours", None))]
    for other in outputs[1:]:
        compare_valid(other, outputs[0], b["valid"])
    # by default it computes as UER-py does: its LayerNorm divides by (unbiased std + eps)
    from uer_ds.convert.uer import UerLayerNorm

    model = load_any_model(path, config_path)
    norms = [m for m in model.modules() if "LayerNorm" in type(m).__name__]
    assert norms and all(type(m) is UerLayerNorm for m in norms)
    x = torch.randn(3, config["hidden_size"])
    norm = norms[0]
    expected = norm.weight * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + norm.eps) + norm.bias
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=0)
    # without --config_path the <name>_config.json beside the .bin describes it (what convert --to uer writes)
    compare_valid(our_outputs(load_any_model(path, uer_layer_norm=False), b), outputs[0], b["valid"])
    config_path.unlink()
    with pytest.raises(ValueError, match=r"model\.bin': a UER-py/TencentPretrain checkpoint holds no model config: "
                                         r"give --config_path"):
        load_any_model(path)
