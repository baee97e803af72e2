"""`uer-ds bench infer`: prediction speed and accuracy of fine-tuned classifiers side by side -- a task
directory (PyTorch eager, fp32), its ONNX export (onnxruntime fp32) and the int8 export (`export onnx
--int8`), and the same for a width-pruned model (`uer-ds prune`; launch/bench_prune.sh makes the set) --
each through the path `infer`, `evaluate` and `serve` use (uer_ds.deploy.predictor).

Per model and batch size: texts/s and the latency of one forward (p50/p99 ms, the batch's tokenization
and collation included), over --seconds of repeated passes through --test_path's texts in file order
(batches of that many consecutive texts, padded to their longest), after one untimed pass; and the
accuracy on --test_path (labelled) with the `evaluate` code.  Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.recipes.inputs import add_tokenizer_arguments

    parser.add_argument("--load_model_path", nargs="+", required=True,
                        help="models to compare: task directories and/or .onnx files (fp32 or int8)")
    parser.add_argument("--test_path", required=True, help="a labelled TSV in the model's format")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32], help="default: 1 32")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per model and batch size "
                                                                   "(default 10)")
    parser.add_argument("--seq_length", type=int, help="default: the fine-tuning seq_length")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json_path", help="write the results as JSON")
    add_tokenizer_arguments(parser)


def _time(predictor, examples: list, batch_size: int, seconds: float) -> dict:
    from uer_ds.deploy.bench import percentile

    batches = [examples[i: i + batch_size] for i in range(0, len(examples), batch_size)]
    for batch in batches[: max(1, 64 // batch_size)]:  # untimed: first calls allocate
        predictor.predict(batch, batch_size)
    latencies, texts = [], 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for batch in batches:
            t0 = time.perf_counter()
            predictor.predict(batch, batch_size)
            latencies.append(time.perf_counter() - t0)
            texts += len(batch)
            if time.perf_counter() - started >= seconds:
                break
    elapsed = time.perf_counter() - started
    return {"batch_size": batch_size, "texts": texts, "texts_per_s": round(texts / elapsed, 2),
            "p50_ms": round(percentile(latencies, 50) * 1000, 3), "p99_ms": round(percentile(latencies, 99) * 1000, 3)}


def run(args: argparse.Namespace) -> int:
    """Each model: accuracy, then speed per batch size; the table; JSON."""
    from uer_ds.deploy.evaluate import evaluate_split
    from uer_ds.deploy.predictor import load_predictor

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if any(b <= 0 for b in args.batch_sizes) or args.seconds <= 0:
        raise ValueError(f"--batch_sizes {args.batch_sizes} and --seconds {args.seconds} must be positive")
    eval_args = argparse.Namespace(batch_size=64, top_k=1, no_progress=True, no_header=None)
    rows = []
    for path in args.load_model_path:
        predictor = load_predictor(path, args, seq_length=args.seq_length)
        metrics, examples, _ = evaluate_split(predictor, args.test_path, eval_args)
        size = os.path.getsize(path) if os.path.isfile(path) else sum(
            f.stat().st_size for f in Path(path).glob("*.safetensors"))
        for batch_size in args.batch_sizes:
            rows.append({"model": str(path), "kind": _kind(predictor), "mb": round(size / 2 ** 20, 1),
                         "accuracy": round(metrics["accuracy"], 4), **_time(predictor, examples, batch_size,
                                                                             args.seconds)})
    header = ["model", "kind", "MB", "accuracy", "batch", "texts/s", "p50 ms", "p99 ms"]
    width = max(len(Path(r["model"]).name) for r in rows)
    print(f"{header[0]:<{width}}  " + "  ".join(f"{h:>9}" for h in header[1:]))
    for r in rows:
        cells = [r["kind"], r["mb"], r["accuracy"], r["batch_size"], r["texts_per_s"], r["p50_ms"], r["p99_ms"]]
        print(f"{Path(r['model']).name:<{width}}  " + "  ".join(f"{c:>9}" for c in cells))
    if args.json_path:
        record = {"benchmark": "infer", "test_path": args.test_path, "seconds": args.seconds, "results": rows,
                  "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                              "threads": args.threads, "python": platform.python_version()}}
        Path(args.json_path).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json_path}")
    return 0


def _kind(predictor) -> str:
    """'pytorch', 'onnx-fp32' or 'onnx-int8' (a graph with DynamicQuantizeLinear nodes); a task directory that
    `uer-ds prune` wrote is 'pytorch-w<width_mult>' (its prune.json says)."""
    if predictor.kind != "onnx":
        from uer_ds.deploy.prune import PRUNE_FILE

        record = Path(predictor.path) / PRUNE_FILE
        return f"pytorch-w{json.loads(record.read_text())['width_mult']:g}" if record.is_file() else "pytorch"
    import onnx

    graph = onnx.load(predictor.path, load_external_data=False).graph
    return "onnx-int8" if any(n.op_type == "DynamicQuantizeLinear" for n in graph.node) else "onnx-fp32"


__all__ = ["add_arguments", "run"]
