"""ONNX export of a fine-tuned task model, and its check with onnxruntime.

The exported graph takes src and seg (int64, (batch, seq), both axes dynamic) and returns a classifier
head's logits and their softmax, `prob`; an NER tagger's token logits (batch, seq, labels) (a CRF's
parameters travel in the metadata and Viterbi decoding runs on the host, NerTask.onnx_predict); a CMRC
reader's start_logits and end_logits (batch, seq).  It is traced on a batch that holds padding, so the general
(masked / packed) path of every encoder is the one recorded.  onnx and onnxruntime are the `onnx`
extra (pip install uer_ds[onnx]; onnxruntime's PyPI wheel is CPU-only and needs no CUDA torch).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.tasks.data import Example, eval_batches
from uer_ds.tasks.model import TaskModel


class OnnxWrapper(nn.Module):
    """(src, seg) -> the outputs of one head, named by `output_names`: a classifier's (logits, prob); a head
    with `export_outputs` (NER's TaggerHead: the emissions; CMRC's SpanHead: start and end logits) what
    that returns.  Whatever the head's predict does past them (a CRF's Viterbi) runs on the host
    (Task.onnx_predict), so the graph holds only tensor algebra."""

    def __init__(self, model: TaskModel, head: int) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.target = model.target[model.head_names[head]]
        self.output_names = tuple(getattr(self.target, "onnx_outputs", ("logits", "prob")))

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if hasattr(self.target, "export_outputs"):
            outputs = self.target.export_outputs(self.model.encode(src, seg, None, sub=None), seg)
            return tuple(outputs[name] for name in self.output_names)
        logits = self.model(src, {"task": self.head}, seg, predict=True).float()
        return logits, torch.softmax(logits, dim=-1)

    def host_state(self) -> dict:
        """What the host needs beside the graph's outputs to predict as the head does (a CRF's parameters)."""
        return self.target.host_state() if hasattr(self.target, "host_state") else {}


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
    per_token = hasattr(wrapper.target, "export_outputs")  # (B, T, ...) outputs: the sequence axis is dynamic too
    axes = {"src": {0: "batch", 1: "seq"}, "seg": {0: "batch", 1: "seq"},
            **{name: {0: "batch", 1: "seq"} if per_token else {0: "batch"} for name in wrapper.output_names}}
    with warnings.catch_warnings(), torch.no_grad(), constant_layer_norm_widths(model):
        # the tracer warns about Python booleans of tensors (padding checks): the traced batch has
        # padding, so the general branch is the one recorded
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example["src"], example["seg"]), path, input_names=["src", "seg"],
                          output_names=list(wrapper.output_names), dynamic_axes=axes, opset_version=opset, dynamo=False)
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


def onnx_predictor(session, task, spec: dict, host: dict) -> Callable[[dict], Any]:
    """forward(batch) -> what the PyTorch head's predict returns (a classifier's logits, NER's tag ids, CMRC's
    (start, end) logits), from an onnxruntime `session` of an export: the graph's outputs handed to
    task.onnx_predict with the head's `spec` and `host` state (ONNX_HOST_KEY of the metadata)."""
    names = [o.name for o in session.get_outputs() if o.name != "prob"]  # prob: softmax of logits, not needed

    def forward(batch: dict) -> Any:
        values = session.run(names, {"src": batch["src"].cpu().numpy(), "seg": batch["seg"].cpu().numpy()})
        return task.onnx_predict(spec, {n: torch.from_numpy(v) for n, v in zip(names, values)}, batch, host)

    return forward


def same_rows(a: Any, b: Any, batch: dict) -> np.ndarray:
    """Per example (B,) bool: whether two predict outputs name the same prediction: the argmax of logits
    (B, L); every tag id at the first pieces (tgt's "word_mask") for tag ids (B, T); both argmaxes for
    (start, end) logits."""
    if isinstance(a, tuple):
        return np.logical_and.reduce([same_rows(x, y, batch) for x, y in zip(a, b)])
    if a.dtype == torch.long:
        mask = batch["tgt"]["word_mask"]
        return ((a == b) | ~mask).all(dim=1).numpy()
    return (a.argmax(-1) == b.argmax(-1)).numpy()


def parity(model: TaskModel, head: int, session, examples: Sequence[Example],
           collate: Callable[[list[Example], int], dict], batch_size: int, task=None, spec: Optional[dict] = None,
           host: Optional[dict] = None) -> dict:
    """Largest |torch - onnx| of every graph output over the examples ("max_abs_<name>_diff"; a classifier's
    also as "max_abs_prob_diff"/"max_abs_logits_diff", the largest over logit outputs as "max_abs_logits_diff"),
    and how often the predictions agree ("same_prediction": the PyTorch head's predict against
    onnx_predictor's, compared by same_rows; without `task` the argmax of the first output)."""
    wrapper = OnnxWrapper(model.eval(), head).eval()
    names = list(wrapper.output_names)
    worst = dict.fromkeys(names, 0.0)
    onnx_forward = onnx_predictor(session, task, spec, host or {}) if task is not None else None
    agree = 0
    for indices in eval_batches(examples, batch_size, 0, 1):
        batch = collate([examples[i] for i in indices], head)
        with torch.no_grad():
            ours = [t.numpy() for t in wrapper(batch["src"], batch["seg"])]
        theirs = session.run(names, {"src": batch["src"].numpy(), "seg": batch["seg"].numpy()})
        for name, x, y in zip(names, ours, theirs):
            worst[name] = max(worst[name], float(np.abs(x - y).max()))
        if onnx_forward is None:
            agree += int((ours[0].argmax(-1) == theirs[0].argmax(-1)).sum())
        else:
            with torch.no_grad():
                predicted = model(batch["src"], batch["tgt"], batch["seg"], predict=True)
            agree += int(same_rows(predicted, onnx_forward(batch), batch).sum())
    result = {"examples": len(examples), **{f"max_abs_{n}_diff": v for n, v in worst.items() if n != "logits"}}
    result["max_abs_logits_diff"] = max(v for n, v in worst.items() if n != "prob")
    result["same_prediction"] = agree / max(len(examples), 1)
    return result


def padded_example(examples: Sequence[Example], collate: Callable[[list[Example], int], dict], head: int) -> dict:
    """A batch of two examples of different lengths (so it has padding) for tracing."""
    by_length = sorted(examples, key=lambda e: len(e.src))
    pair = [by_length[-1], by_length[0]]
    if len(pair[0].src) == len(pair[1].src):  # all of one length: cut one short to get padding
        short = Example(pair[1].source, pair[1].text, pair[1].src[:-1] or pair[1].src, pair[1].seg[:-1] or pair[1].seg)
        pair[1] = short
    return collate(pair, head)


__all__ = ["OnnxWrapper", "export_onnx", "onnx_metadata", "onnx_predictor", "onnx_session", "padded_example", "parity",
           "require_onnx", "same_rows"]
