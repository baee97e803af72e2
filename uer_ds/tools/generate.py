"""Decoding: GPT-style continuation of a prompt (`generate`, an `lm` model) and sequence to sequence
(`generate_s2s`, an `s2s` model), greedy or with top-k, top-p (nucleus) and temperature sampling.

With a cache (the default) the prompt runs through the model once and every new token costs one step:
for `lm`, its embedding, one query per layer against the cached keys and values, one output row; for
`s2s`, one step of the decoder's LSTM from its state.  Without it each step recomputes the whole
sequence (the reference the cache is tested against).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen from the LM's logits."""

    greedy: bool = False  # argmax; the other fields are then unused
    top_k: int = 0  # keep the k most likely tokens (0: all)
    top_p: float = 0.0  # keep the fewest most likely tokens whose probability reaches top_p (0: all)
    temperature: float = 1.0  # logits are divided by it before the filters

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError(f"top_k has value {self.top_k}: must be >= 0 (0 keeps every token)")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p has value {self.top_p}: must be in [0, 1] (0 keeps every token)")
        if self.temperature <= 0:
            raise ValueError(f"temperature has value {self.temperature}: must be positive (use --greedy for argmax)")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """logits (V,) with -inf outside the top-k and the top-p nucleus (both when both are given)."""
    logits = logits.clone()
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = float("-inf")
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # probability mass of the more likely tokens
        logits[order[before >= top_p]] = float("-inf")  # the first token always stays
    return logits


def choose(logits: torch.Tensor, sampling: Sampling, generator: Optional[torch.Generator]) -> int:
    """The next token id from logits (V,)."""
    if sampling.greedy:
        return int(torch.argmax(logits))
    filtered = filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p)
    return int(torch.multinomial(F.softmax(filtered, dim=-1), 1, generator=generator))


def check_generative(model) -> None:
    cfg = model.config
    if "lm" not in model.target:
        raise ValueError(f"generation needs a model with the 'lm' target (GPT-style); this one has "
                         f"{list(model.target) or 'none'}")
    if cfg.encoder == "transformer" and cfg.mask != "causal":
        raise ValueError(f"generation needs a causal model; the config's mask is '{cfg.mask}'")


def _next_logits(model, ids: torch.Tensor, new: int, cache: Optional[list]) -> torch.Tensor:
    """Logits (V,) after the last token.  ids: (1, T), of which the last `new` are not yet cached."""
    seg = torch.ones_like(ids)
    if cache is None:
        hidden = model.encode(ids, seg)
    else:  # embeddings are per position: the last `new` rows of the full sequence's embedding
        emb = model.embedding(ids, seg)[:, -new:]
        hidden = model.encoder(emb, seg[:, -new:], cache=cache)
    return model.target["lm"].logits(hidden[0, -1]).float()


@torch.no_grad()
def generate(model, prompt: list[int], max_length: int, sampling: Sampling = Sampling(),
             seed: Optional[int] = None, use_cache: bool = True, stop_id: Optional[int] = None) -> list[int]:
    """prompt + continuation, max_length tokens in all (fewer if stop_id is generated).

    seed fixes the sampling (a torch.Generator of its own), so the same call gives the same tokens.
    """
    check_generative(model)
    if not prompt:
        raise ValueError("the prompt is empty")
    limit = model.config.max_seq_length
    if max_length > limit:
        raise ValueError(f"max_length has value {max_length}: the model's positions end at max_seq_length ({limit})")
    if len(prompt) >= max_length:
        raise ValueError(f"the prompt has {len(prompt)} tokens, max_length is {max_length}: nothing to generate")
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    cache = model.encoder.new_cache() if use_cache and model.config.encoder == "transformer" else None
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    logits = _next_logits(model, ids, ids.shape[1], cache)
    while True:
        token = choose(logits, sampling, generator)
        ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)
        if token == stop_id or ids.shape[1] >= max_length:
            return ids[0].tolist()
        logits = _next_logits(model, ids, 1, cache)


@torch.no_grad()
def generate_s2s(model, source: list[int], max_length: int, start_id: int, sampling: Sampling = Sampling(),
                 seed: Optional[int] = None, use_cache: bool = True, stop_id: Optional[int] = None) -> list[int]:
    """The target an `s2s` model decodes for one source: at most max_length tokens, fewer if stop_id comes
    (neither start_id nor stop_id is returned).

    source: the encoder's input ids, as the s2s data processor builds them ([CLS] source [SEP]); the
    decoder starts from the encoder's state at the last source position and reads start_id ([CLS]),
    then each token it chose (`uer_ds.models.targets.s2s`).  seed fixes the sampling.  ValueError: the
    model has no s2s target, the source is empty, or max_length is not positive.
    """
    if "s2s" not in model.target:
        raise ValueError(f"sequence-to-sequence decoding needs a model with the 's2s' target; this one has "
                         f"{list(model.target) or 'none'}")
    if not source:
        raise ValueError("the source is empty")
    if max_length <= 0:
        raise ValueError(f"max_length has value {max_length}: must be positive")
    head = model.target["s2s"]
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    src = torch.tensor([source], dtype=torch.long, device=device)
    seg = torch.ones_like(src)
    hidden = model.encode(src, seg)  # (1, T, H)
    state = head.initial_state(hidden, seg)
    inputs = [start_id]
    while len(inputs) <= max_length:
        if use_cache:
            logits, state = head.step(src.new_tensor([inputs[-1:]]), state)
        else:
            logits = head.logits(hidden, seg, src.new_tensor([inputs]))
        token = choose(logits[0, -1].float(), sampling, generator)
        if token == stop_id:
            break
        inputs.append(token)
    return inputs[1:]
