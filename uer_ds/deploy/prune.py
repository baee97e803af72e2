"""Structured width pruning of a fine-tuned transformer task model (`uer-ds prune`).

Attention heads and feed-forward neurons are ranked by the importance criterion of Michel, Levy and Neubig,
"Are Sixteen Heads Really Better than One?" (NeurIPS 2019, section 4.1): a mask variable xi_h multiplies head
h's output (its context vectors, before the output projection), and

    I_h = E_x | dL(x) / d xi_h |   at xi = 1,

the expected absolute gradient of the loss over a labelled dataset.  Feed-forward neurons get the same
criterion on a mask nu_j over the activations between linear_1 and linear_2.  Michel et al. normalise each
layer's head scores by their L2 norm; the ranking within a layer, which is all that is used here, does not
change under that.

Each layer keeps the same number of heads, floor(width_mult * heads_num), and of neurons, floor(width_mult *
feedforward_size) -- DynaBERT's rounding (Hou et al. 2020) --, so the pruned model is a normal config: fewer
heads of the same attention_head_size, a smaller feedforward_size.  The kept rows and columns of query, key,
value, output, linear_1 and linear_2 are copied (in their original order), so the pruned model computes exactly
what the original computes with the other heads and neurons masked to zero.

The expectation is over examples, not batches: each example gets its own masks (shape (B, layers, heads)), and
the loss is the head's mean loss times the batch size, so one backward gives every example's own gradient.
That is exact for heads whose loss is a mean over the batch's examples (the classifier's cross-entropy), the
one task supported.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from uer_ds.config import ModelConfig

PRUNE_FILE = "prune.json"  # beside the pruned model: what was kept, and the scores it was chosen by
SUPPORTED_TASKS = ("classifier",)


@dataclass
class Importance:
    """heads: (layers, heads_num) float64, the mean |dL/d xi_h| over `examples`; neurons: (layers,
    feedforward_size) float64, the same for each feed-forward neuron."""

    heads: torch.Tensor
    neurons: torch.Tensor
    examples: int


def check_prunable(cfg: ModelConfig, source: str) -> None:
    """ValueError unless `cfg` is a transformer encoder with one set of weights per layer."""
    if cfg.encoder != "transformer":
        raise ValueError(f"{source}: encoder is '{cfg.encoder}': width pruning needs the transformer encoder "
                         "(attention heads and feed-forward neurons to remove)")
    if cfg.parameter_sharing:
        raise ValueError(f"{source}: parameter_sharing is true (ALBERT): one layer's weights serve every layer, so "
                         "per-layer head and neuron choices cannot be sliced out of it")


def kept_count(total: int, width_mult: float, what: str) -> int:
    """floor(width_mult * total) (DynaBERT's rounding); ValueError for width_mult outside (0, 1] or a count of 0."""
    if not 0.0 < width_mult <= 1.0:
        raise ValueError(f"--width_mult has value {width_mult}: must be in (0, 1]")
    kept = int(width_mult * total + 1e-9)
    if kept < 1:
        raise ValueError(f"--width_mult {width_mult} keeps {width_mult} * {total} {what} per layer, which rounds "
                         f"down to 0: each layer needs at least one (use --width_mult >= {1 / total:.4g})")
    return kept


@contextlib.contextmanager
def masked(model: nn.Module, head_mask: torch.Tensor, neuron_mask: torch.Tensor) -> Iterator[None]:
    """Within the block, layer l's head h output (context vectors) is multiplied by head_mask[..., l, h] and
    its feed-forward neuron j (after the activation) by neuron_mask[..., l, j].

    head_mask: (layers, heads_num) or per example (B, layers, heads_num); neuron_mask: (layers,
    feedforward_size) or (B, layers, feedforward_size); any float dtype (autograd flows into them).  Hooks
    on the output projection and linear_2 inputs; the model must run the padded PyTorch path (kernels
    'torch'), where those modules are called (the fused Triton path bypasses them)."""
    encoder = model.encoder
    handles = []
    for index in range(encoder.layers_num):
        layer = encoder.layer(index)
        heads, size = layer.self_attn.heads_num, layer.self_attn.head_size

        def scale_heads(_module, inputs, index=index, heads=heads, size=size):
            (ctx,) = inputs  # (B, T, nh * hs)
            mask = head_mask[..., index, :]
            mask = mask[:, None, :, None] if mask.dim() == 2 else mask[:, None]  # (B or 1, 1, nh, 1)
            return ((ctx.unflatten(-1, (heads, size)) * mask).flatten(-2),)

        def scale_neurons(_module, inputs, index=index):
            (act,) = inputs  # (B, T, F)
            mask = neuron_mask[..., index, :]
            return (act * (mask[:, None, :] if mask.dim() == 2 else mask),)

        handles.append(layer.self_attn.output.register_forward_pre_hook(scale_heads))
        handles.append(layer.feed_forward.linear_2.register_forward_pre_hook(scale_neurons))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def compute_importance(model: nn.Module, batches: Sequence[dict], progress: bool = False) -> Importance:
    """Michel et al.'s importance of every head and feed-forward neuron of `model` (a TaskModel in eval mode,
    kernels 'torch', on the CPU or a GPU) over `batches` (the task's collated batches, labels included).

    Per batch: masks of ones per example, (B, layers, heads) and (B, layers, F); loss = the head's mean loss
    * B (= the sum of the examples' losses); one backward; |mask.grad| summed over examples.  Returns the
    sums divided by the number of examples.  Parameters get no gradients (requires_grad is switched off
    for the call and restored)."""
    from tqdm import tqdm

    from uer_ds.data.batch import to_device

    encoder = model.encoder
    first = encoder.layer(0)
    shape = (encoder.layers_num, first.self_attn.heads_num)
    ffn = first.feed_forward.linear_1.out_features
    device = next(model.parameters()).device
    heads = torch.zeros(shape, dtype=torch.float64, device=device)
    neurons = torch.zeros(shape[0], ffn, dtype=torch.float64, device=device)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    count = 0
    try:
        for batch in tqdm(batches, desc="importance", unit="batch", disable=not progress, leave=False):
            batch = to_device(batch, device)
            b = batch["src"].shape[0]
            dtype = next(model.parameters()).dtype
            head_mask = torch.ones(b, *shape, dtype=dtype, device=device, requires_grad=True)
            neuron_mask = torch.ones(b, shape[0], ffn, dtype=dtype, device=device, requires_grad=True)
            with masked(model, head_mask, neuron_mask):
                loss = model(batch["src"], batch["tgt"], batch["seg"]).loss * b
            loss.backward()
            heads += head_mask.grad.abs().sum(0).double()
            neurons += neuron_mask.grad.abs().sum(0).double()
            count += b
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    if count == 0:
        raise ValueError("no examples to score the heads and neurons with")
    return Importance(heads.cpu() / count, neurons.cpu() / count, count)


def top_indices(scores: torch.Tensor, kept: int) -> list[list[int]]:
    """Per row of scores (layers, n): the `kept` highest-scoring indices, in ascending order (ties: the lower
    index first, so equal scores give a reproducible choice)."""
    out = []
    for row in scores:
        order = sorted(range(row.numel()), key=lambda i: (-float(row[i]), i))
        out.append(sorted(order[:kept]))
    return out


def prune_state(state: dict[str, torch.Tensor], cfg: ModelConfig, heads: Sequence[Sequence[int]],
                neurons: Sequence[Sequence[int]]) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The weights and config that keep, in layer l, heads[l] and feed-forward neurons[l] (the same count in
    every layer).  query/key/value keep the kept heads' rows (and biases), output their columns; linear_1
    keeps the kept neurons' rows (and biases), linear_2 their columns; every other tensor is unchanged.  The
    config gets heads_num = len(heads[0]), feedforward_size = len(neurons[0]), and attention_head_size
    whenever the heads no longer fill hidden_size."""
    size = cfg.head_size
    out = dict(state)
    for layer, (kept_heads, kept_neurons) in enumerate(zip(heads, neurons)):
        prefix = f"encoder.transformer.{layer}."
        rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in kept_heads])
        cols = torch.tensor(list(kept_neurons), dtype=torch.long)
        for name in ("query", "key", "value"):
            for kind in ("weight", "bias"):
                key = f"{prefix}self_attn.{name}.{kind}"
                out[key] = state[key].index_select(0, rows).contiguous()
        key = f"{prefix}self_attn.output.weight"
        out[key] = state[key].index_select(1, rows).contiguous()
        for kind in ("weight", "bias"):
            key = f"{prefix}feed_forward.linear_1.{kind}"
            out[key] = state[key].index_select(0, cols).contiguous()
        key = f"{prefix}feed_forward.linear_2.weight"
        out[key] = state[key].index_select(1, cols).contiguous()
    heads_num, ffn = len(heads[0]), len(neurons[0])
    changes = {"heads_num": heads_num, "feedforward_size": ffn}
    if heads_num * size != cfg.hidden_size:
        changes["attention_head_size"] = size
    return out, cfg.replace(**changes)


def prune_task_dir(path: str, output: str, width_mult: float, batches: Sequence[dict], model: nn.Module,
                   info: dict, build_heads: Callable[[ModelConfig, dict], dict], progress: bool = False,
                   kernels: Optional[str] = None) -> dict:
    """Score `model` (loaded from task directory `path`, with task.json `info`) on `batches`, keep the top
    width_mult of heads and neurons per layer, write the pruned task directory `output` (config.json,
    task.json, model.safetensors; `build_heads(cfg, heads spec)` makes the task's heads) and prune.json;
    returns prune.json's record.  kernels: the `kernels` setting written into the pruned config (default the
    model's; the command scores with 'torch' and writes the saved model's own)."""
    from uer_ds.atomic import atomic_path
    from uer_ds.tasks.model import TaskModel, write_task_dir

    cfg = model.config
    check_prunable(cfg, path)
    kept_h = kept_count(cfg.heads_num, width_mult, "heads")
    kept_f = kept_count(cfg.feedforward_size, width_mult, "feed-forward neurons")
    started = time.perf_counter()
    scores = compute_importance(model, batches, progress)
    heads, neurons = top_indices(scores.heads, kept_h), top_indices(scores.neurons, kept_f)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    pruned_state, pruned_cfg = prune_state(state, cfg, heads, neurons)
    pruned_cfg = pruned_cfg.replace(kernels=kernels or cfg.kernels)
    with torch.device("meta"):
        pruned = TaskModel(pruned_cfg, build_heads(pruned_cfg, info["heads"]))
    pruned = pruned.to_empty(device="cpu")
    pruned.load_state_dict(pruned_state, strict=True)
    write_task_dir(output, pruned, pruned.state_dict(), info)
    record = {"source": str(path), "width_mult": width_mult, "examples": scores.examples,
              "criterion": "Michel et al. 2019: mean over examples of |dL/d mask|",
              "heads_num": [cfg.heads_num, kept_h], "feedforward_size": [cfg.feedforward_size, kept_f],
              "attention_head_size": cfg.head_size, "kept_heads": heads, "kept_neurons": neurons,
              "head_importance": [[round(float(v), 8) for v in row] for row in scores.heads],
              "seconds": round(time.perf_counter() - started, 3)}
    with atomic_path(Path(output) / PRUNE_FILE) as tmp:
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return record


# ---- the command -----------------------------------------------------------------------------------
def run_prune(args: argparse.Namespace) -> int:
    """`uer-ds prune`: load, check, score on --train_path, write --output_model_path."""
    from uer_ds.convert.resolve import resolve_model
    from uer_ds.outputs import lock_output
    from uer_ds.tasks import TASKS
    from uer_ds.recipes.infer import infer_tokenizer
    from uer_ds.recipes.predict import batch_maker
    from uer_ds.tasks.data import eval_batches

    source = resolve_model(args.load_model_path, "--load_model_path", kinds=("task",))
    info = source.task_info()
    if info.get("task") not in SUPPORTED_TASKS:
        raise ValueError(f"--load_model_path {args.load_model_path}: a '{info.get('task')}' model; `uer-ds prune` "
                         f"scores heads with a loss that is a mean over examples: tasks {', '.join(SUPPORTED_TASKS)}")
    check_prunable(source.own_config(), args.load_model_path)
    for flag, value in (("--batch_size", args.batch_size), ("--max_examples", args.max_examples)):
        if value is not None and value <= 0:
            raise ValueError(f"{flag} has value {value}: must be positive")
    cfg = source.own_config()
    kept_count(cfg.heads_num, args.width_mult, "heads")
    kept_count(cfg.feedforward_size, args.width_mult, "feed-forward neurons")
    output = Path(args.output_model_path)
    if output.resolve() == Path(args.load_model_path).resolve():
        raise ValueError(f"--output_model_path {output} is --load_model_path: write the pruned model elsewhere")
    task = TASKS[info["task"]]
    model, _ = source.task_model(lambda c, i: task.build_heads(c, i["heads"]), kernels="torch")
    tokenizer = infer_tokenizer(args, info)
    names = list(info["heads"])
    spec = info["heads"][names[0]]
    seq_length = args.seq_length or int(info["seq_length"])
    options = task.options_from(argparse.Namespace(no_header=args.no_header))  # the file's layout only
    examples = task.read(args.train_path, tokenizer, seq_length, spec, labelled=True, options=options)
    if args.max_examples is not None:
        examples = examples[: args.max_examples]
    if not examples:
        raise ValueError(f"--train_path {args.train_path}: no examples to score the heads and neurons with")
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    collate = batch_maker(task, names, pad_id, tokenizer)
    batches = [collate([examples[i] for i in idx], 0) for idx in eval_batches(examples, args.batch_size, 0, 1)]
    with lock_output(output, "--output_model_path", "prune"):
        record = prune_task_dir(args.load_model_path, str(output), args.width_mult, batches, model, info,
                                task.build_heads, progress=not args.no_progress, kernels=cfg.kernels)
    before = cfg
    print(f"scored {record['examples']} examples of {args.train_path} in {record['seconds']} s")
    print(f"heads per layer {before.heads_num} -> {record['heads_num'][1]} (head size {record['attention_head_size']}), "
          f"feed-forward {before.feedforward_size} -> {record['feedforward_size'][1]}")
    for layer, kept in enumerate(record["kept_heads"]):
        print(f"layer {layer}: kept heads {kept}")
    print(f"wrote {output} (config.json, task.json, model.safetensors, {PRUNE_FILE})")
    return 0


__all__ = ["Importance", "PRUNE_FILE", "check_prunable", "compute_importance", "kept_count", "masked",
           "prune_state", "prune_task_dir", "run_prune", "top_indices"]
