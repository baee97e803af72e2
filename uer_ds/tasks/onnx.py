"""ONNX export of a fine-tuned task model, and its check with onnxruntime.

The exported graph takes src and seg (int64, (batch, seq), both axes dynamic) and returns the head's
logits and their softmax, `prob`.  It is traced on a batch that holds padding, so the general
(masked / packed) path of every encoder is the one recorded.  onnx and onnxruntime are the `onnx`
extra (pip install uer_ds[onnx]; onnxruntime's PyPI wheel is CPU-only and needs no CUDA torch).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.tasks.data import Example, eval_batches
from uer_ds.tasks.model import TaskModel


class OnnxWrapper(nn.Module):
    """(src, seg) -> (logits, prob) of one head."""

    def __init__(self, model: TaskModel, head: int) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(src, {"task": self.head}, seg, predict=True).float()
        return logits, torch.softmax(logits, dim=-1)


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise ValueError(f"ONNX export needs onnx and onnxruntime ({err.name} is missing): "
                         "pip install 'uer_ds[onnx]' (or: pip install onnx onnxruntime)") from None


@contextmanager
def constant_layer_norm_widths(model: nn.Module) -> Iterator[None]:
    """While tracing, LayerNorm's width as a Python int: the tracer records `x.shape[-1]` as a graph
    value, which the ONNX LayerNormalization symbolic rejects.  Same computation (F.layer_norm)."""
    from uer_ds.models.layers import LayerNorm

    patched = []
    for module in model.modules():
        if isinstance(module, LayerNorm):
            width, eps = int(module.weight.shape[0]), module.eps

            def forward(x, residual=None, _m=module, _w=width, _e=eps):
                if residual is not None:
                    x = x + residual
                return F.layer_norm(x, (_w,), _m.weight, _m.bias, _e)

            module.forward = forward
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def export_onnx(model: TaskModel, head: int, path: str, example: dict, opset: int = 17,
                metadata: Optional[dict[str, str]] = None) -> None:
    """Trace `model`'s head `head` on `example` (a collated batch with padding) into `path`; `metadata`
    goes into the graph's metadata_props (the task.json `uer-ds infer` reads back)."""
    require_onnx()
    wrapper = OnnxWrapper(model.eval(), head).eval()
    axes = {"src": {0: "batch", 1: "seq"}, "seg": {0: "batch", 1: "seq"}, "logits": {0: "batch"}, "prob": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad(), constant_layer_norm_widths(model):
        # the tracer warns about Python booleans of tensors (padding checks): the traced batch has
        # padding, so the general branch is the one recorded
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example["src"], example["seg"]), path, input_names=["src", "seg"],
                          output_names=["logits", "prob"], dynamic_axes=axes, opset_version=opset, dynamo=False)
    import onnx

    if metadata:
        graph = onnx.load(path)
        onnx.helper.set_model_props(graph, metadata)
        onnx.save(graph, path)
    onnx.checker.check_model(path)


def onnx_metadata(path: str) -> dict[str, str]:
    """The metadata_props of an ONNX model (without loading its weights)."""
    require_onnx()
    import onnx

    try:
        graph = onnx.load(path, load_external_data=False)
    except Exception as err:  # onnx raises DecodeError and others
        raise ValueError(f"{path}: not a readable ONNX model ({err})") from None
    return {entry.key: entry.value for entry in graph.metadata_props}


def onnx_session(path: str):
    require_onnx()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def parity(model: TaskModel, head: int, session, examples: Sequence[Example],
           collate: Callable[[list[Example], int], dict], batch_size: int) -> dict:
    """Largest |prob_torch - prob_onnx| and |logits_torch - logits_onnx| over the examples, and how
    often the predicted labels agree."""
    wrapper = OnnxWrapper(model.eval(), head).eval()
    worst_prob = worst_logits = 0.0
    agree = 0
    for indices in eval_batches(examples, batch_size, 0, 1):
        batch = collate([examples[i] for i in indices], head)
        with torch.no_grad():
            logits, prob = (t.numpy() for t in wrapper(batch["src"], batch["seg"]))
        feeds = {"src": batch["src"].numpy(), "seg": batch["seg"].numpy()}
        onnx_logits, onnx_prob = session.run(["logits", "prob"], feeds)
        worst_prob = max(worst_prob, float(np.abs(prob - onnx_prob).max()))
        worst_logits = max(worst_logits, float(np.abs(logits - onnx_logits).max()))
        agree += int((prob.argmax(-1) == onnx_prob.argmax(-1)).sum())
    return {"examples": len(examples), "max_abs_prob_diff": worst_prob, "max_abs_logits_diff": worst_logits,
            "same_prediction": agree / max(len(examples), 1)}


def padded_example(examples: Sequence[Example], collate: Callable[[list[Example], int], dict], head: int) -> dict:
    """A batch of two examples of different lengths (so it has padding) for tracing."""
    by_length = sorted(examples, key=lambda e: len(e.src))
    pair = [by_length[-1], by_length[0]]
    if len(pair[0].src) == len(pair[1].src):  # all of one length: cut one short to get padding
        short = Example(pair[1].source, pair[1].text, pair[1].src[:-1] or pair[1].src, pair[1].seg[:-1] or pair[1].seg)
        pair[1] = short
    return collate(pair, head)


__all__ = ["OnnxWrapper", "export_onnx", "onnx_metadata", "onnx_session", "padded_example", "parity", "require_onnx"]
