"""Hugging Face <-> uer_ds for every family and head, against transformers' own models (fp32, CPU).

In: a random HF model (every parameter redrawn) converted to uer_ds gives HF's hidden states and head
logits within 1e-5.  Back: uer_ds -> HF reproduces every tensor of the original file, and the exported
directory loads with transformers' Auto classes.  Out: a uer_ds model that never was HF exports to a
directory whose HF model gives our outputs.
"""
from __future__ import annotations

import json

import pytest
import torch
from hf_cases import TOL, auto_class, batch, build_hf, compare, hf_outputs, our_outputs, perturb_, transformers
from safetensors.torch import load_file, save_file

from uer_ds.config import ModelConfig
from uer_ds.convert import convert
from uer_ds.models import build_model, load_model, save_model

CASES = [
    ("bert", "BertModel", {}),
    ("bert", "BertForMaskedLM", {}),
    ("bert", "BertForPreTraining", {}),
    ("bert", "BertForNextSentencePrediction", {}),
    ("roberta", "RobertaModel", {}),
    ("roberta", "RobertaForMaskedLM", {"type_vocab_size": 1}),  # as roberta-base ships
    ("roberta", "RobertaForMaskedLM", {}),  # transformers' default: two token types
    ("albert", "AlbertModel", {}),
    ("albert", "AlbertForMaskedLM", {"num_hidden_groups": 3}),  # one group per layer: no sharing
    ("albert", "AlbertForPreTraining", {}),
    ("gpt2", "GPT2Model", {}),
    ("gpt2", "GPT2LMHeadModel", {}),
    ("gpt2", "GPT2LMHeadModel", {"tie_word_embeddings": False}),
]
# What the base models hold that a uer_ds model has no slot for (kept in extra.safetensors).
POOLERS = {"BertModel": ["pooler.dense.bias", "pooler.dense.weight"],
           "RobertaModel": ["pooler.dense.bias", "pooler.dense.weight"],
           "AlbertModel": ["pooler.bias", "pooler.weight"]}


def _id(case):
    family, cls, overrides = case
    return cls + "".join(f"-{k}={v}" for k, v in overrides.items())


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_hf_in_and_back(case, tmp_path):
    family, cls, overrides = case
    hf = build_hf(family, cls, **overrides)
    hf.save_pretrained(tmp_path / "hf")
    report = convert("hf", "uer_ds", tmp_path / "hf", tmp_path / "ours", family)
    assert report.unused_input == POOLERS.get(cls, [])  # named, and kept for the way back
    ours = load_model(tmp_path / "ours")
    b = batch(family, two_segments=overrides.get("type_vocab_size") != 1)
    valid = b["valid"] if family in ("roberta", "gpt2") else None  # BERT/ALBERT: padding positions too
    compare(our_outputs(ours, b), hf_outputs(hf, b), valid)

    convert("uer_ds", "hf", tmp_path / "ours", tmp_path / "back", family)
    original = load_file(tmp_path / "hf" / "model.safetensors")
    back = load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[k], original[k]) for k in original), [k for k in original
                                                                     if not torch.equal(back[k], original[k])]
    config_in = json.loads((tmp_path / "hf" / "config.json").read_text())
    config_back = json.loads((tmp_path / "back" / "config.json").read_text())
    # a key the original leaves out (transformers 4 saves only values that differ from the defaults) must
    # hold the config class's default
    defaults = type(hf.config)().to_dict()
    assert {k: v for k, v in config_back.items() if config_in.get(k, defaults.get(k)) != v} == {}
    reloaded = auto_class(cls).from_pretrained(tmp_path / "back").eval()
    assert type(reloaded).__name__ == cls
    compare(hf_outputs(reloaded, b), hf_outputs(hf, b))


FROM_SCRATCH = {
    "bert": dict(embedding=["word", "pos", "seg"], target=["mlm", "sp"], tie_weights=True),
    "roberta": dict(embedding=["word", "pos", "seg"], target=["mlm"], tie_weights=True, data_processor="mlm"),
    "albert": dict(embedding=["word", "pos", "seg"], target=["mlm", "sp"], emb_size=16,
                   factorized_embedding_parameterization=True, parameter_sharing=True, data_processor="albert"),
    "gpt2": dict(embedding=["word", "pos"], target=["lm"], tie_weights=True, remove_embedding_layernorm=True,
                 mask="causal", layernorm_positioning="pre", hidden_act="gelu_fast", data_processor="lm"),
}


@pytest.mark.parametrize("family", sorted(FROM_SCRATCH))
def test_uer_ds_model_exports_to_transformers(family, tmp_path):
    """A model trained in uer_ds (here: random) has no HF config or extras to lean on."""
    values = dict(vocab_size=97, emb_size=32, hidden_size=32, feedforward_size=64, heads_num=4, layers_num=2,
                  max_seq_length=20, layernorm_eps=1e-12)
    cfg = ModelConfig.from_dict({**values, **FROM_SCRATCH[family]})
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    perturb_(model, seed=1)
    save_model(model, tmp_path / "ours")
    report = convert("uer_ds", "hf", tmp_path / "ours", tmp_path / "hf", family)
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    cls = hf_config["architectures"][0]
    assert f"wrote Hugging Face {cls}" in report.lines()
    hf = auto_class(cls).from_pretrained(tmp_path / "hf").eval()
    b = batch(family)
    # valid positions: our padding segment row was never HF's token type 0 here
    compare(our_outputs(model, b), hf_outputs(hf, b), b["valid"])


# ---- bad input: clear errors, nothing left behind -------------------------------------------------------
@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert") / "hf"
    build_hf("bert", "BertForPreTraining").save_pretrained(path)
    return path


def _copy_dir(src, dst, edit_config=None, edit_state=None):
    dst.mkdir()
    config = json.loads((src / "config.json").read_text())
    state = load_file(src / "model.safetensors")
    (dst / "config.json").write_text(json.dumps(edit_config(config) if edit_config else config))
    save_file(edit_state(state) if edit_state else state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_shape_mismatch_names_key_and_both_shapes(bert_dir, tmp_path):
    bad = _copy_dir(bert_dir, tmp_path / "bad", edit_config=lambda c: {**c, "intermediate_size": 48})
    with pytest.raises(ValueError, match=r"'bert\.encoder\.layer\.0\.intermediate\.dense\.weight' \(64, 32\) gives "
                                         r"'encoder\.transformer\.0\.feed_forward\.linear_1\.weight' of shape "
                                         r"\(64, 32\), but the model config needs \(48, 32\)"):
        convert("hf", "uer_ds", bad, tmp_path / "out", "bert")
    assert not (tmp_path / "out").exists()


def test_missing_keys_are_all_named(bert_dir, tmp_path):
    def drop(state):
        return {k: v for k, v in state.items() if ".layer.1.attention.self.key." not in k}

    bad = _copy_dir(bert_dir, tmp_path / "bad", edit_state=drop)
    with pytest.raises(ValueError, match=r"2 key\(s\) the model config needs are missing: "
                                         r"bert\.encoder\.layer\.1\.attention\.self\.key\.weight, "
                                         r"bert\.encoder\.layer\.1\.attention\.self\.key\.bias"):
        convert("hf", "uer_ds", bad, tmp_path / "out", "bert")
    assert not (tmp_path / "out").exists()


def test_unknown_input_keys_are_reported(bert_dir, tmp_path):
    bad = _copy_dir(bert_dir, tmp_path / "extra", edit_state=lambda s: {**s, "bert.adapter.weight": torch.ones(3)})
    report = convert("hf", "uer_ds", bad, tmp_path / "out", "bert")
    assert report.unused_input == ["adapter.weight"]


def test_corrupted_weights_and_wrong_family(bert_dir, tmp_path):
    bad = _copy_dir(bert_dir, tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        convert("hf", "uer_ds", bad, tmp_path / "out", "bert")
    with pytest.raises(ValueError, match="model_type is 'bert', not a gpt2 model; check --model"):
        convert("hf", "uer_ds", bert_dir, tmp_path / "out", "gpt2")
    assert not (tmp_path / "out").exists()


def test_output_must_be_new_and_is_never_partial(bert_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        convert("hf", "uer_ds", bert_dir, tmp_path / "taken", "bert")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    convert("hf", "uer_ds", bert_dir, tmp_path / "ours", "bert")
    # a failure while writing (gpt2 cannot hold a BERT) leaves no output and no temporary directory
    with pytest.raises(ValueError, match="--model gpt2 does not describe this checkpoint: .*key 'embedding'"):
        convert("uer_ds", "hf", tmp_path / "ours", tmp_path / "gpt2", "gpt2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours", "taken"]


def test_targets_without_a_hugging_face_class(tmp_path):
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": 50, "target": ["mlm", "cls"]})
    save_model(build_model(cfg), tmp_path / "ours")
    with pytest.raises(ValueError, match=r"targets \['mlm', 'cls'\] have no Hugging Face class"):
        convert("uer_ds", "hf", tmp_path / "ours", tmp_path / "hf", "bert")
    assert not (tmp_path / "hf").exists()


def test_extras_survive_only_where_the_format_has_room(tmp_path):
    """RobertaModel -> uer_ds -> UER -> uer_ds -> HF: UER has no pooler; the report says what was dropped."""
    hf = build_hf("roberta", "RobertaModel")
    hf.save_pretrained(tmp_path / "hf")
    convert("hf", "uer_ds", tmp_path / "hf", tmp_path / "ours", "roberta")
    report = convert("uer_ds", "uer", tmp_path / "ours", tmp_path / "uer.bin", "roberta")
    assert report.not_carried == ["extra.hf.embeddings.position_embeddings.reserved_rows",
                                  "extra.hf.pooler.dense.bias", "extra.hf.pooler.dense.weight"]
    with torch.no_grad():
        b = batch("roberta", two_segments=False)
        expected = hf(input_ids=b["ids"], attention_mask=b["mask"]).last_hidden_state
    convert("uer", "uer_ds", tmp_path / "uer.bin", tmp_path / "again", "roberta", tmp_path / "uer_config.json")
    convert("uer_ds", "hf", tmp_path / "again", tmp_path / "back", "roberta")
    back = transformers.AutoModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        got = back(input_ids=b["ids"], attention_mask=b["mask"]).last_hidden_state
    torch.testing.assert_close(got[b["valid"]], expected[b["valid"]], **TOL)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_width_pruned_model_exports_with_zero_heads(family, tmp_path):
    """A pruned model (2 heads of 8 in hidden 32: attention_head_size set; feed-forward 40) -> HF: transformers 5
    has no pruned_heads, so the file holds 4 heads, the two removed ones zero; HF's outputs equal ours (1e-5)."""
    values = dict(vocab_size=97, emb_size=32, hidden_size=32, feedforward_size=40, heads_num=2, attention_head_size=8,
                  layers_num=2, max_seq_length=20, layernorm_eps=1e-12)
    cfg = ModelConfig.from_dict({**values, **FROM_SCRATCH[family]})
    torch.manual_seed(2)
    model = build_model(cfg).eval()
    perturb_(model, seed=2)
    assert model.encoder.layer(0).self_attn.query.weight.shape == (16, 32)
    save_model(model, tmp_path / "ours")
    report = convert("uer_ds", "hf", tmp_path / "ours", tmp_path / "hf", family)
    assert any("2 heads of size 8 per layer (pruned) written as 4" in line for line in report.lines())
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (hf_config["num_attention_heads"], hf_config["intermediate_size"]) == (4, 40)
    state = load_file(tmp_path / "hf" / "model.safetensors")
    prefix = f"{family}.encoder.layer.1.attention."
    assert torch.count_nonzero(state[prefix + "self.value.weight"][16:]) == 0
    assert torch.count_nonzero(state[prefix + "output.dense.weight"][:, 16:]) == 0
    hf = auto_class(hf_config["architectures"][0]).from_pretrained(tmp_path / "hf").eval()
    b = batch(family)
    compare(our_outputs(model, b), hf_outputs(hf, b), b["valid"])


def test_width_pruned_model_cannot_be_gpt2_or_albert(tmp_path):
    cfg = ModelConfig.from_dict(dict(vocab_size=97, emb_size=32, hidden_size=32, feedforward_size=40, heads_num=2,
                                     attention_head_size=8, layers_num=2, max_seq_length=20, **FROM_SCRATCH["gpt2"]))
    save_model(build_model(cfg), tmp_path / "ours")
    with pytest.raises(ValueError, match=r"cannot write Hugging Face gpt2: heads_num 2 of attention_head_size 8 do not "
                                         r"fill hidden_size \(32\)"):
        convert("uer_ds", "hf", tmp_path / "ours", tmp_path / "hf", "gpt2")
    assert not (tmp_path / "hf").exists()
