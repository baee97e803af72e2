"""Prediction: batches of examples -> one output per example, metrics per head, bad cases.  Shared by
fine-tuning's evaluation (uer_ds.recipes.finetune), inference (uer_ds.recipes.infer), `uer-ds evaluate` and
`uer-ds serve` (uer_ds.deploy); plain PyTorch on one process, or the engine's forward on several."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from uer_ds.atomic import atomic_path
from uer_ds.data.batch import batch_info
from uer_ds.tasks.base import Task, TaskData, predict_outputs
from uer_ds.tasks.data import Example, eval_batches


def batch_maker(task: Task, head_names: Sequence[str], pad_id: int,
                tokenizer=None) -> Callable[[list[Example], int], dict]:
    """collate(examples, head) -> the task's batch with its BatchInfo (what the host knows about it:
    tokens, padding, the head's prediction count), as the training loop wants it.  With subword
    features (the tokenizer's SubwordTable) the batch also gets each word's character ids and an
    in-vocabulary src, on the host."""
    table = getattr(tokenizer, "subwords", None)

    def collate(examples: list[Example], head: int) -> dict:
        batch = task.collate(examples, head, pad_id)
        if table is not None:
            batch = table.complete(batch)
        batch["info"] = batch_info(batch["seg"], {head_names[head]: task.predictions(batch)})
        return batch

    return collate


def predict_examples(forward: Callable[[dict], Any], examples: Sequence[Example], head: int,
                     collate: Callable[[list[Example], int], dict], batch_size: int, rank: int = 0, world: int = 1,
                     desc: Optional[str] = None, on_batch: Optional[Callable[[int], None]] = None) -> list[Any]:
    """One output per example, in file order, on every rank.  Batches are sorted by length (less
    padding) and dealt to ranks; each rank runs the same number of forwards (ZeRO-3 needs it).  One process
    (world 1) never loads the engine: `evaluate` and `serve` predict without DeepSpeed."""
    batches = eval_batches(examples, batch_size, rank, world)
    progress = None
    if desc is not None and rank == 0:
        from tqdm import tqdm

        progress = tqdm(total=len(examples), desc=desc, unit="ex", leave=False, dynamic_ncols=True)
    mine: dict[int, Any] = {}
    for indices in batches:
        outputs = predict_outputs(forward(collate([examples[i] for i in indices], head)))
        for i, out in zip(indices, outputs):
            mine.setdefault(i, out)
        if progress is not None:
            progress.update(len(indices) * world)
        if on_batch is not None:
            on_batch(len(indices))
    if progress is not None:
        progress.close()
    merged: dict[int, Any] = {}
    if world > 1:
        from uer_ds.engine import dist

        parts = dist.all_gather_object(mine)
    else:
        parts = [mine]
    for part in parts:
        merged.update(part)
    return [merged[i] for i in range(len(examples))]


def module_forward(model: torch.nn.Module, device: torch.device) -> Callable[[dict], Any]:
    """forward(batch) -> the model's predictions (predict=True), without gradients, on `device`."""
    from uer_ds.data.batch import to_device

    @torch.no_grad()
    def forward(batch: dict) -> Any:
        batch = to_device(batch, device)
        return model(batch["src"], batch["tgt"], batch["seg"], predict=True)

    return forward


def evaluate_heads(task: Task, forward: Callable[[dict], Any], datasets: Sequence[Sequence[Example]],
                   heads: dict[str, dict], collate, options: Any, batch_size: int, rank: int, world: int,
                   split: str, progress: bool) -> tuple[dict, list[list[Any]]]:
    """Metrics over every head's examples (the dev report during fine-tuning, the test report at its end,
    and `uer-ds evaluate`).  With one head: that head's metrics; with several: each head's scalars as
    <head>/<name>, the task's selection metrics averaged over heads, and the full per-head metrics under
    "heads".  A head whose dataset is None is skipped (its outputs entry is None): `datasets` follows the
    order of `heads`, which is the order of the model's heads.  `options`: the task's, handed to
    Task.evaluate; `batch_size`: examples per forward."""
    per_head, outputs = {}, []
    for index, (name, examples) in enumerate(zip(heads, datasets)):
        if examples is None:
            outputs.append(None)
            continue
        out = predict_examples(forward, examples, index, collate, batch_size, rank, world,
                               desc=f"{split} {name}" if progress else None)
        outputs.append(out)
        per_head[name] = task.evaluate(examples, out, heads[name], options)
    if len(heads) == 1:
        return next(iter(per_head.values())), outputs
    merged: dict[str, Any] = {}
    for metric in task.metrics:
        merged[metric] = float(sum(m[metric] for m in per_head.values()) / len(per_head))
    for name, metrics in per_head.items():
        merged.update({f"{name}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    merged["heads"] = per_head
    return merged, outputs


def mean_loss(loss_forward: Callable[[dict], Any], datasets: Sequence[Optional[Sequence[Example]]], collate,
              batch_size: int, rank: int = 0, world: int = 1) -> float:
    """The loss per prediction over every head's examples (fine-tuning's dev loss): sum over batches b of
    loss_b * n_b, over sum of n_b, where loss_b is the training objective's mean over the batch's n_b
    predictions (a TargetResult's loss and denominator: the same normalisation as a training step).  Each
    example counts once over all ranks: the batches are eval_batches' (every rank runs the same number of
    forwards, which ZeRO-3 needs), and a rank's filler batch (a repeated example) weighs nothing.
    loss_forward(batch) -> TargetResult without gradients (Engine.evaluate); collective when world > 1 (one
    all-reduce).  Returns a Python float (one device read); 0.0 when no head has examples."""
    total = None
    for head, examples in enumerate(datasets):
        if examples is None:
            continue
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].src))  # eval_batches' order
        own, seen = set(order[rank::world]), set()
        for indices in eval_batches(examples, batch_size, rank, world):
            result = loss_forward(collate([examples[i] for i in indices], head))
            fresh = all(i in own and i not in seen for i in indices)
            seen.update(indices)
            part = torch.stack([result.loss.detach().double() * result.denominator.double(),
                                result.denominator.double()]) * float(fresh)
            total = part if total is None else total + part
    if total is None:
        return 0.0
    if world > 1:
        import torch.distributed as torch_dist

        torch_dist.all_reduce(total)
    loss_sum, count = total.tolist()
    return loss_sum / max(count, 1.0)


def format_metrics(task: Task, metrics: dict, title: str) -> str:
    if "heads" not in metrics:
        return task.format_report(metrics, title)
    return "\n".join(task.format_report(m, f"{title} [{name}]") for name, m in metrics["heads"].items())


def echo(text: str) -> None:
    """Print without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(text)


def write_bad_cases(task: Task, path: str, data: TaskData, heads: dict, outputs: list) -> int:
    """The wrong predictions of every head on dev (Task.bad_cases) as one TSV, a head column when there are
    several; written whole (a temporary name, then renamed).  Returns the row count."""
    count, header_written = 0, False
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for index, name in enumerate(heads):
            header, rows = task.bad_cases(data.dev[index], outputs[index], heads[name])
            if not header_written:
                f.write("\t".join((["head"] if len(heads) > 1 else []) + header) + "\n")
                header_written = True
            for row in rows:
                f.write("\t".join(([name] if len(heads) > 1 else []) + row) + "\n")
                count += 1
    return count


__all__ = ["batch_maker", "echo", "evaluate_heads", "format_metrics", "mean_loss", "module_forward", "predict_examples",
           "write_bad_cases"]
