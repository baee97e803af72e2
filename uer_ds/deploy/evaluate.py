"""`uer-ds evaluate`: a fine-tuned model on a labelled split, with the code that writes the dev report
during fine-tuning (uer_ds.recipes.predict.evaluate_heads: the task's own metrics, per-class table,
confusion matrix, top-k accuracy; write_bad_cases: the bad cases).

Output directory (each file written under a temporary name, then renamed):
  report.json     {"model", "kind", "task", "head", "test_path", "seq_length", "metrics", "seconds"}; metrics
                  as the task reports them (a classifier: examples, accuracy, macro_f1, macro_precision,
                  macro_recall, mcc, top<k>_accuracy, per_class, confusion)
  per_class.tsv   label precision recall f1 support (tasks with a per-class table)
  confusion.tsv   rows gold, columns predicted, the first column the gold label (tasks with a confusion matrix)
  bad_cases.tsv   the wrongly predicted examples as --bad_case_path writes them (source, gold, predicted,
                  confidence, text_a [text_b] for a classifier)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from uer_ds.atomic import atomic_path
from uer_ds.deploy.predictor import Predictor

REPORT, PER_CLASS, CONFUSION, BAD_CASES = "report.json", "per_class.tsv", "confusion.tsv", "bad_cases.tsv"


def evaluate_split(predictor: Predictor, test_path: str, args: argparse.Namespace) -> tuple[dict, list, list[Any]]:
    """(metrics, examples, outputs) of the predictor's head on the labelled file `test_path` (the task's
    format; a missing or bad label fails with the file and line).  args: batch_size, top_k, no_progress
    and the task's reading flags (no_header)."""
    from uer_ds.recipes.predict import evaluate_heads

    task = predictor.task
    options = task.options_from(args)
    examples = task.read(test_path, predictor.tokenizer, predictor.seq_length, predictor.spec, labelled=True,
                         options=options)
    if not examples:
        raise ValueError(f"--test_path {test_path}: no examples to evaluate")
    heads = predictor.info["heads"]
    datasets = [examples if name == predictor.head_name else None for name in heads]
    metrics, outputs = evaluate_heads(task, predictor.forward, datasets, heads, predictor.collate, options,
                                      args.batch_size, 0, 1, "evaluate", progress=not args.no_progress)
    if "heads" in metrics:  # a multi-task model: the evaluated head's own metrics
        metrics = metrics["heads"][predictor.head_name]
    return metrics, examples, outputs[predictor.head]


def write_report(predictor: Predictor, test_path: str, output_dir: str, metrics: dict, examples: list,
                 outputs: list[Any], seconds: float) -> dict[str, Path]:
    """The files of the module docstring in `output_dir` (created); returns {kind: path} of those written."""
    from uer_ds.tasks.base import TaskData
    from uer_ds.recipes.predict import write_bad_cases

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--output_dir '{output_dir}' is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    report = {"model": predictor.path, "kind": predictor.kind, "task": predictor.task.name,
              "head": predictor.head_name, "test_path": str(test_path), "seq_length": predictor.seq_length,
              "metrics": metrics, "seconds": round(seconds, 3)}
    with atomic_path(out / REPORT) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written["report"] = out / REPORT
    if "per_class" in metrics:
        rows = [["label", "precision", "recall", "f1", "support"]]
        rows += [[str(c["label"]), f"{c['precision']:.6f}", f"{c['recall']:.6f}", f"{c['f1']:.6f}", str(c["support"])]
                 for c in metrics["per_class"]]
        written["per_class"] = _write_tsv(out / PER_CLASS, rows)
    if "confusion" in metrics:
        names = [str(c["label"]) for c in metrics["per_class"]] if "per_class" in metrics \
            else [str(i) for i in range(len(metrics["confusion"]))]
        rows = [["gold\\predicted", *names]]
        rows += [[names[i], *map(str, row)] for i, row in enumerate(metrics["confusion"])]
        written["confusion"] = _write_tsv(out / CONFUSION, rows)
    spec = predictor.spec
    data = TaskData({predictor.head_name: spec}, [], [examples])
    write_bad_cases(predictor.task, str(out / BAD_CASES), data, {predictor.head_name: spec}, [outputs])
    written["bad_cases"] = out / BAD_CASES
    return written


def _write_tsv(path: Path, rows: list[list[str]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write("\t".join(row) + "\n")
    return path


def run_evaluate(args: argparse.Namespace) -> int:
    """`uer-ds evaluate` (uer_ds/cli/evaluate.py's arguments): load, evaluate, print the report, write files."""
    from uer_ds.deploy.predictor import load_predictor

    if args.batch_size <= 0:
        raise ValueError(f"--batch_size has value {args.batch_size}: must be positive")
    if args.top_k <= 0:
        raise ValueError(f"--top_k has value {args.top_k}: must be positive (1: no top-k accuracy)")
    if not Path(args.test_path).is_file():
        raise FileNotFoundError(f"--test_path '{args.test_path}': no such file")
    predictor = load_predictor(args.load_model_path, args, head=args.head, seq_length=args.seq_length)
    started = time.perf_counter()
    metrics, examples, outputs = evaluate_split(predictor, args.test_path, args)
    seconds = time.perf_counter() - started
    output_dir = args.output_dir or f"eval_{Path(args.test_path).stem}"
    written = write_report(predictor, args.test_path, output_dir, metrics, examples, outputs, seconds)
    print(predictor.task.format_report(metrics, f"{Path(args.test_path).name} ({predictor.kind} model, head "
                                                f"'{predictor.head_name}')"))
    bad = sum(1 for _ in open(written["bad_cases"], encoding="utf-8")) - 1
    print(f"{len(examples)} example(s) in {seconds:.1f} s; {max(bad, 0)} bad case(s); wrote "
          f"{', '.join(p.name for p in written.values())} to {output_dir}", flush=True)
    return 0


__all__ = ["evaluate_split", "run_evaluate", "write_report"]
