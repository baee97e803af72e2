"""Random Hugging Face models built offline for the conversion tests, and the outputs to compare.

Every parameter is redrawn (biases and LayerNorm included; HF initialises those to 0 and 1), so a
mis-mapped or transposed tensor changes the outputs instead of hiding behind a constant.
"""
from __future__ import annotations

import torch

transformers = __import__("pytest").importorskip("transformers")

V = 97  # vocabulary
T = 16  # sequence length of the test batch
TOL = dict(rtol=1e-5, atol=1e-5)

AUTO = {"Model": "AutoModel", "ForPreTraining": "AutoModelForPreTraining", "ForMaskedLM": "AutoModelForMaskedLM",
        "ForNextSentencePrediction": "AutoModelForNextSentencePrediction", "LMHeadModel": "AutoModelForCausalLM"}


def auto_class(cls_name: str):
    """The transformers Auto class that loads a saved `cls_name` (what a user would call)."""
    for suffix in sorted(AUTO, key=len, reverse=True):
        if cls_name.endswith(suffix):
            return getattr(transformers, AUTO[suffix])
    raise KeyError(cls_name)


def hf_config(family: str, **overrides):
    if family == "bert":
        return transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, max_position_embeddings=24, **overrides)
    if family == "roberta":
        return transformers.RobertaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64, max_position_embeddings=T + 2, **overrides)
    if family == "albert":
        return transformers.AlbertConfig(vocab_size=V, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=24,
                                         **overrides)
    if family == "gpt2":
        return transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=24,
                                       bos_token_id=0, eos_token_id=0, **overrides)
    raise KeyError(family)


@torch.no_grad()
def perturb_(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():  # tied parameters are visited once
        noise = torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1
        p.copy_(1.0 + noise if ("LayerNorm.weight" in name or "ln_" in name or "layer_norm" in name)
                and name.endswith("weight") else noise * 2)


def build_hf(family: str, cls_name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(hf_config(family, **overrides)).eval()
    perturb_(model, seed)
    return model


def batch(family: str, seed: int = 0, lengths=(T, 11, 4), two_segments: bool = True) -> dict:
    """ids, attention mask, HF token types and UER segments (0 padding, 1, 2) for a right-padded batch."""
    g = torch.Generator().manual_seed(seed)
    pad = 1 if family == "roberta" else 0
    low = 3 if family == "roberta" else 1  # RoBERTa counts positions over non-pad ids: keep pad out of the text
    ids = torch.randint(low, V, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids * mask + pad * (1 - mask)
    types = torch.zeros_like(ids)
    if two_segments and family != "gpt2":
        types[0, T // 2:] = 1
    seg = (types + 1) * mask if family != "gpt2" else mask
    return {"ids": ids, "mask": mask, "types": types, "seg": seg, "valid": mask.bool()}


@torch.no_grad()
def hf_outputs(model, b: dict) -> dict:
    kwargs = {"input_ids": b["ids"], "attention_mask": b["mask"], "output_hidden_states": True}
    if "GPT2" not in type(model).__name__:
        kwargs["token_type_ids"] = b["types"]
    out = model(**kwargs)
    name = type(model).__name__
    got = {"hidden": out.hidden_states[-1]}
    if name.endswith("ForPreTraining"):
        got["mlm"] = out.prediction_logits
        got["sp"] = out.seq_relationship_logits if hasattr(out, "seq_relationship_logits") else out.sop_logits
    elif name.endswith("ForMaskedLM"):
        got["mlm"] = out.logits
    elif name.endswith("ForNextSentencePrediction"):
        got["sp"] = out.logits
    elif name.endswith("LMHeadModel"):
        got["lm"] = out.logits
    return got


@torch.no_grad()
def our_outputs(model, b: dict) -> dict:
    hidden = model.encode(b["ids"], b["seg"])
    got = {"hidden": hidden}
    for name, head in model.target.items():
        got[name] = head.logits(hidden)
    return got


def compare(ours: dict, theirs: dict, valid=None) -> dict:
    """Assert equal within 1e-5 (at valid positions where given); returns {output: max abs difference}."""
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    diffs = {}
    for name in theirs:
        a, b = ours[name], theirs[name]
        if valid is not None and name in ("hidden", "mlm", "lm"):
            a, b = a[valid], b[valid]
        torch.testing.assert_close(a, b, **TOL)
        diffs[name] = float((a - b).abs().max())
    return diffs
