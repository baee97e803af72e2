"""The model's layer list (what the pipeline stages and activation checkpointing cut at) is the Model's own:
the same weights under the same keys, and run in order it computes what Model.encode computes."""
from __future__ import annotations

import pytest
import torch

from uer_ds.config import ModelConfig
from uer_ds.models import build_model
from uer_ds.models.io import aliased_keys, unique_state_dict
from uer_ds.models.layer_list import LayerModule, key_prefixes, layer_list


SMALL_GPT = {"hidden_size": 32, "emb_size": 32, "feedforward_size": 64, "heads_num": 4, "layers_num": 2,
             "max_seq_length": 64}


@pytest.mark.parametrize("name, changes", [
    ("bert/tiny", {}),
    ("gpt2/small", SMALL_GPT),
    ("bert/tiny", {"factorized_embedding_parameterization": True, "emb_size": 16, "remove_embedding_layernorm": True}),
])
def test_layers_hold_the_models_weights_and_compute_its_encoding(name, changes):
    torch.manual_seed(0)
    cfg = ModelConfig.from_json(name, {"vocab_size": 60, "dropout": 0.0, **changes})
    model = build_model(cfg).eval()
    state = unique_state_dict(model)
    layers = layer_list(cfg)
    modules = [LayerModule(layer).eval() for layer in layers]
    mapped = {}
    for pipe_prefix, model_prefix in key_prefixes(layers):
        index, part = pipe_prefix.split(".", 1)
        for key, value in modules[int(index)].state_dict().items():
            if key.startswith(part):
                mapped[model_prefix + key[len(part):]] = value
    tied = aliased_keys(model)  # the heads' copy of the word table: one weight (the pipeline ties it)
    assert sorted(k for k in mapped if k not in tied) == sorted(state)
    for key, value in mapped.items():
        value.copy_(state[tied.get(key, key)])
    src = torch.randint(5, 60, (2, 9))
    seg = torch.ones_like(src)
    seg[1, 6:] = 0
    pair = (src, seg)
    for layer, module in zip(layers, modules):
        if layer.kind != "heads" and not layer.heads_side:
            pair = module(pair)
    torch.testing.assert_close(pair[0], model.encode(src, seg), rtol=0, atol=1e-6)
