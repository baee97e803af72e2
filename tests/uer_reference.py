"""UER-py's computations, written out from its published module code (uer/layers/layer_norm.py,
multi_headed_attn.py, transformer.py, uer/utils/misc.py `pooling`, finetune/run_classifier.py,
run_ner.py) as plain tensor arithmetic over a state dict with UER-py's key names, so tests can check
uer_ds's handling of UER-py checkpoints against an independent forward.  Nothing here imports uer_ds.

State dicts are built here too, with the key names UER-py's modules give them: `uer_bert_state` for a
BERT body (current layout, or the legacy one before UER-py's July 2023 renaming) plus a fine-tuning head.
"""
from __future__ import annotations

import itertools
import math
import sys

import torch
import torch.nn.functional as F

EPS = 1e-6  # UER-py's LayerNorm(hidden_size) default; its configs carry no layernorm_eps


def layer_norm(x, gamma, beta, eps=EPS):
    """UER-py: gamma * (x - mean) / (unbiased std + eps) + beta."""
    return gamma * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + eps) + beta


def _names(legacy: bool) -> dict[str, str]:
    if legacy:
        return {"word": "embedding.word_embedding.weight", "pos": "embedding.position_embedding.weight",
                "seg": "embedding.segment_embedding.weight"}
    return {"word": "embedding.word.embedding.weight", "pos": "embedding.pos.embedding.weight",
            "seg": "embedding.seg.embedding.weight"}


def uer_bert_state(vocab: int, hidden: int, layers: int, ffn: int, max_len: int, seed: int = 0,
                   legacy: bool = False) -> dict[str, torch.Tensor]:
    """A BERT body with UER-py's key names, every tensor random (LayerNorm scales near 1)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    n = _names(legacy)
    s = {n["word"]: rnd(vocab, hidden), n["pos"]: rnd(max_len, hidden), n["seg"]: rnd(3, hidden),
         "embedding.layer_norm.gamma": 1 + rnd(hidden, scale=0.1), "embedding.layer_norm.beta": rnd(hidden, scale=0.1)}
    for i in range(layers):
        p = f"encoder.transformer.{i}"
        for j in range(3):
            s[f"{p}.self_attn.linear_layers.{j}.weight"] = rnd(hidden, hidden)
            s[f"{p}.self_attn.linear_layers.{j}.bias"] = rnd(hidden, scale=0.05)
        s[f"{p}.self_attn.final_linear.weight"] = rnd(hidden, hidden)
        s[f"{p}.self_attn.final_linear.bias"] = rnd(hidden)
        s[f"{p}.feed_forward.linear_1.weight"], s[f"{p}.feed_forward.linear_1.bias"] = rnd(ffn, hidden), rnd(ffn)
        s[f"{p}.feed_forward.linear_2.weight"], s[f"{p}.feed_forward.linear_2.bias"] = rnd(hidden, ffn), rnd(hidden)
        for k in (1, 2):
            s[f"{p}.layer_norm_{k}.gamma"] = 1 + rnd(hidden, scale=0.1)
            s[f"{p}.layer_norm_{k}.beta"] = rnd(hidden, scale=0.1)
    return s


def classifier_head(hidden: int, labels: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """run_classifier.py's Classifier: output_layer_1 (hidden -> hidden), output_layer_2 (-> labels)."""
    g = torch.Generator().manual_seed(seed)
    return {"output_layer_1.weight": torch.randn(hidden, hidden, generator=g) * 0.3,
            "output_layer_1.bias": torch.randn(hidden, generator=g) * 0.1,
            "output_layer_2.weight": torch.randn(labels, hidden, generator=g) * 0.5,
            "output_layer_2.bias": torch.randn(labels, generator=g) * 0.1}


def tagger_head(hidden: int, labels: int, crf: bool, seed: int = 2) -> dict[str, torch.Tensor]:
    """run_ner.py's NerTagger: output_layer (hidden -> labels), torchcrf's CRF parameters with --crf_target."""
    g = torch.Generator().manual_seed(seed)
    s = {"output_layer.weight": torch.randn(labels, hidden, generator=g) * 0.5,
         "output_layer.bias": torch.randn(labels, generator=g) * 0.1}
    if crf:
        s.update({"crf.start_transitions": torch.randn(labels, generator=g),
                  "crf.end_transitions": torch.randn(labels, generator=g),
                  "crf.transitions": torch.randn(labels, labels, generator=g)})
    return s


def bert_hidden(s, src, seg, heads: int, layers: int, legacy: bool = False):
    """UER-py's embedding (word + pos + seg, LayerNorm) and post-LN transformer encoder, fully visible,
    padding (seg 0) masked by adding -10000 to its attention scores.  (B, T) -> (B, T, H)."""
    n = _names(legacy)
    b, t = src.shape
    x = s[n["word"]][src] + s[n["pos"]][torch.arange(t)][None] + s[n["seg"]][seg]
    x = layer_norm(x, s["embedding.layer_norm.gamma"], s["embedding.layer_norm.beta"])
    mask = (seg > 0).float()[:, None, None, :]  # (B, 1, 1, T)
    mask = (1.0 - mask) * -10000.0
    h = x.shape[-1]
    d = h // heads
    for i in range(layers):
        p = f"encoder.transformer.{i}"

        def lin(name, v):
            return v @ s[f"{p}.{name}.weight"].T + s[f"{p}.{name}.bias"]

        q, k, v = (lin(f"self_attn.linear_layers.{j}", x).view(b, t, heads, d).transpose(1, 2) for j in range(3))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + mask
        ctx = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, h)
        inter = layer_norm(lin("self_attn.final_linear", ctx) + x, s[f"{p}.layer_norm_1.gamma"],
                           s[f"{p}.layer_norm_1.beta"])
        ffn = lin("feed_forward.linear_2", F.gelu(lin("feed_forward.linear_1", inter)))
        x = layer_norm(ffn + inter, s[f"{p}.layer_norm_2.gamma"], s[f"{p}.layer_norm_2.beta"])
    return x


def uer_pooling(hidden, seg, kind: str):
    """uer/utils/misc.py `pooling`: states times the segment id, then first / mean / max / last."""
    w = seg.unsqueeze(-1).float()
    m = hidden * w
    if kind == "mean":
        return m.sum(1) / w.sum(1)
    if kind == "max":
        return (m + (w - 1) * sys.maxsize).max(1).values
    if kind == "last":
        return m[torch.arange(m.shape[0]), (seg != 0).sum(1) - 1]
    return m[:, 0]


def classifier_probs(s, src, seg, heads, layers, pooling, legacy=False):
    """run_classifier.py (and run_classifier_infer.py --output_prob): softmax over the labels."""
    pooled = uer_pooling(bert_hidden(s, src, seg, heads, layers, legacy), seg, pooling)
    out = torch.tanh(pooled @ s["output_layer_1.weight"].T + s["output_layer_1.bias"])
    return torch.softmax(out @ s["output_layer_2.weight"].T + s["output_layer_2.bias"], dim=-1)


def tagger_predictions(s, src, seg, heads, layers, crf: bool, legacy=False) -> list[list[int]]:
    """run_ner.py's predictions per sequence (its non-padding positions): argmax, or the CRF's best path
    found by enumerating every path (torchcrf's score: start + emissions + transitions + end)."""
    logits = bert_hidden(s, src, seg, heads, layers, legacy) @ s["output_layer.weight"].T + s["output_layer.bias"]
    out = []
    for row, length in zip(logits, (seg > 0).sum(1).tolist()):
        emissions = row[:length]
        if not crf:
            out.append(emissions.argmax(-1).tolist())
            continue
        start, end, trans = s["crf.start_transitions"], s["crf.end_transitions"], s["crf.transitions"]
        best, best_path = -math.inf, None
        for path in itertools.product(range(emissions.shape[1]), repeat=length):
            score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
            score = score + sum(trans[a, b] for a, b in zip(path, path[1:]))
            if float(score) > best:
                best, best_path = float(score), list(path)
        out.append(best_path)
    return out
