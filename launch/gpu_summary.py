"""The GPU measurement's tables, from the JSON files launch/gpu_measure.sh writes (one folder, or the unpacked
archive gpu_<call>.tar.gz):

    python3 launch/gpu_summary.py FOLDER [FOLDER ...]

Markdown: pre-training (samples/s, tokens/s counting padded positions, model TFLOP/s, MFU, peak GPU memory),
fine-tuning (real tokens/s and triton/torch per sequence length), varlen attention and LayerNorm (ours
against each other provider, fwd+bwd, CUDA-graph timings where taken), the Adam step.  Files missing (a step
skipped or failed) show as absent rows; nothing here runs a GPU.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(folders: list[Path], pattern: str) -> dict[str, dict]:
    found = {}
    for folder in folders:
        for path in sorted(folder.glob(pattern)):
            try:
                found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                print(f"<!-- {path}: unreadable ({err}) -->")
    return found


def pretrain_table(runs: dict[str, dict]) -> list[str]:
    lines = ["| run | device | seq | batch | compile | samples/s | tokens/s | model TFLOP/s | MFU | peak GPU GB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r.get('device', '?')} | {r['seq_length']} | {r['batch_size']}x"
                     f"{r.get('accumulation_steps', 1)} | {r.get('compile')} | {r['samples_per_s']:,.0f} | "
                     f"{r['tokens_per_s']:,.0f} | {r.get('model_tflops_per_s', 0):,.0f} | {r.get('mfu', 0):.1%} | "
                     f"{(r.get('peak_memory_gb') or 0):.1f} |")
    return lines


def finetune_table(runs: dict[str, dict]) -> list[str]:
    lines = ["| run | seq | padding | real tokens/s | samples/s | step ms | peak GPU GB | triton / torch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in runs.items():
        ratio = ""
        if name.endswith("_triton") and name.replace("_triton", "_torch") in runs:
            ratio = f"{r['tokens_per_s'] / runs[name.replace('_triton', '_torch')]['tokens_per_s']:.2f}x"
        lines.append(f"| {name} | {r['seq_length']} | {r['padding']:.0%} | {r['tokens_per_s']:,.0f} | "
                     f"{r['samples_per_s']:,.0f} | {1e3 * r['step_time_s']:.1f} | {(r.get('peak_memory_gb') or 0):.1f} | "
                     f"{ratio} |")
    return lines


def _speed(row: dict, unit: str) -> float | None:
    return row.get(f"{unit} graph") or row.get(unit)


def kernel_table(results: dict[str, dict], op: str, keys: list[str], unit: str) -> list[str]:
    """fwd+bwd speed of each provider per shape, and ours over each other provider."""
    rows = [r for result in results.values() for r in result.get(op, []) if r.get("mode") == "fwd+bwd"]
    if not rows:
        return []
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    shapes = list(dict.fromkeys(tuple(r.get(k) for k in keys) for r in rows))
    others = [p for p in providers if p != "triton"]
    lines = [f"| {' | '.join(keys)} | " + " | ".join(f"{p} {unit}" for p in providers)
             + "".join(f" | triton / {p}" for p in others) + " |",
             "| " + " | ".join("---" for _ in keys + providers + others) + " |"]
    for shape in shapes:
        speeds = {r["provider"]: _speed(r, unit) for r in rows if tuple(r.get(k) for k in keys) == shape}
        cells = [f"{speeds[p]:,.1f}" if speeds.get(p) else "n/a" for p in providers]
        ratios = [f"{speeds['triton'] / speeds[p]:.2f}x" if speeds.get("triton") and speeds.get(p) else "n/a"
                  for p in others]
        lines.append("| " + " | ".join(str(v) for v in shape) + " | " + " | ".join(cells + ratios) + " |")
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    folders = [Path(a) for a in argv]
    out = []
    steps = [f for f in folders if (f / "steps.txt").exists()]
    for folder in steps:
        out += ["## Steps", "```", (folder / "steps.txt").read_text(encoding="utf-8").rstrip(), "```"]
    pretrain = {k: v for k, v in _load(folders, "*.json").items()
                if k.startswith(("pretrain_", "sync_check_")) and "samples_per_s" in v}
    if pretrain:
        out += ["", "## Pre-training (MLM, zero0_bf16)", *pretrain_table(pretrain)]
    finetune = {k: v for k, v in _load(folders, "*.json").items() if k.startswith(("finetune_", "offload_"))}
    if finetune:
        out += ["", "## Fine-tuning (BERT classifier, book_review lengths)", *finetune_table(finetune)]
    kernels = {k: v for k, v in _load(folders, "kernels_*.json").items()}
    for op, keys, unit in (("varlen", ["lengths", "seq", "head_dim", "causal"], "TFLOP/s"),
                           ("layer_norm", ["hidden"], "GB/s"), ("sublayer", ["hidden"], "GB/s")):
        table = kernel_table(kernels, op, keys, unit)
        if table:
            out += ["", f"## {op} (fwd+bwd; CUDA-graph timing where taken)", *table]
    adam = _load(folders, "adam_step.json").get("adam_step")
    if adam:
        out += ["", f"## Adam step over {adam['parameters']:,} parameters ({adam['device']})",
                "| optimizer | ms |", "| --- | --- |",
                *[f"| {name} | {ms:.3f} |" for name, ms in adam["ms_per_step"].items()]]
    print("\n".join(out) if out else "(no results yet)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
