"""Carry a model over to a new vocabulary (UER-py's scripts/dynamic_vocab_adapter.py).

Every parameter indexed by the vocabulary (the word embedding, the MLM/LM/BiLM output projection with
its bias, and whatever else a head lists in `vocabulary_parameters`: the s2s decoder's embedding) gets
one row per token of the new vocabulary: the old row where the token is in the old vocabulary (found
by its text, so ids may move), a fresh one otherwise (N(0, 0.02), biases 0, the model's own
initialisation).  Everything else is copied; vocab_size in the config becomes the new size.
"""
from __future__ import annotations

import os
from typing import Union

import torch

from uer_ds.models import Model, build_model
from uer_ds.models.embeddings.parts import WordEmbedding
from uer_ds.tokenizers import Vocab

PathLike = Union[str, os.PathLike]


def vocabulary_keys(model: Model) -> list[str]:
    """State-dict keys of the parameters with one row per vocabulary entry."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, WordEmbedding):
            keys.append(f"{name}.embedding.weight")
    own = model.state_dict()
    for head_name, head in model.target.items():
        names = getattr(head, "vocabulary_parameters", None)  # a head that says which of its tensors they are
        tied = getattr(head, "tied_parameter", None)
        if names is None and tied:  # else: the output projection (tied_parameter) and its bias
            names = (tied, f"{tied.rsplit('.', 1)[0]}.bias")
        keys += [f"target.{head_name}.{n}" for n in names or () if f"target.{head_name}.{n}" in own]
    return keys


def adapt_vocab(model: Model, old_vocab: Vocab, new_vocab: Vocab, seed: int = 7) -> tuple[Model, dict]:
    """(the model over `new_vocab`, counts {kept, new, dropped}).  Raises when the model's vocab_size is not
    the old vocabulary's size."""
    cfg = model.config
    if cfg.vocab_size != len(old_vocab):
        raise ValueError(f"the model's vocab_size is {cfg.vocab_size} but {old_vocab.source} has {len(old_vocab)} "
                         "entries: give the vocabulary the model was trained with as --vocab_path")
    torch.manual_seed(seed)
    adapted = build_model(cfg.replace(vocab_size=len(new_vocab)))
    old_state, new_state = model.state_dict(), adapted.state_dict()
    rows = set(vocabulary_keys(model))
    pairs = [(i, old_vocab.get(t)) for i, t in enumerate(new_vocab.id_to_token) if t in old_vocab]
    new_ids = torch.tensor([i for i, _ in pairs], dtype=torch.long)
    old_ids = torch.tensor([j for _, j in pairs], dtype=torch.long)
    with torch.no_grad():
        for key, tensor in new_state.items():
            if key in rows:
                tensor[new_ids] = old_state[key][old_ids].to(tensor.dtype)
            else:
                tensor.copy_(old_state[key])
    adapted.tie_weights()
    kept = len(pairs)
    counts = {"kept": kept, "new": len(new_vocab) - kept,
              "dropped": sum(1 for t in old_vocab.id_to_token if t not in new_vocab.token_to_id)}
    return adapted.eval(), counts
