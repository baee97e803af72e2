"""One Adam step over BERT-large's parameters on a GPU: torch's fused AdamW (uer_ds's default optimizer)
against DeepSpeed's FusedAdam (which DeepSpeed JIT-compiles) and torch's foreach AdamW.

    python3 launch/gpu_adam.py [--json_path adam_step.json]

The parameters are fp32 tensors of BERT-large's shapes (21,128-entry vocabulary, 24 layers, hidden 1,024:
about 324 M values) with random gradients; each optimizer is timed with CUDA events, median of 30 steps
after 5 warm-up steps.  FusedAdam is skipped, said so, when its op cannot be built or loaded.
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch


def bert_large_shapes(vocab: int = 21128, hidden: int = 1024, layers: int = 24, ffn: int = 4096,
                      positions: int = 512) -> list[tuple[int, ...]]:
    """Parameter shapes of a BERT-large encoder with its embeddings (MLM head tied: no extra matrix)."""
    shapes = [(vocab, hidden), (positions, hidden), (2, hidden), (hidden,), (hidden,)]
    for _ in range(layers):
        shapes += [(hidden, hidden), (hidden,)] * 4 + [(ffn, hidden), (ffn,), (hidden, ffn), (hidden,)]
        shapes += [(hidden,), (hidden,)] * 2  # the two LayerNorms
    return shapes


def time_steps(make_optimizer, shapes, steps: int = 30, warmup: int = 5) -> float:
    """Median milliseconds of one optimizer.step() over fresh parameters of `shapes` (fp32, CUDA)."""
    params = [torch.randn(s, device="cuda", requires_grad=True) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = make_optimizer(params)
    times = []
    for i in range(warmup + steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        optimizer.step()
        end.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json_path", help="write the result as JSON")
    args = parser.parse_args()
    shapes = bert_large_shapes()
    hyper = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    makers = {"torch fused AdamW": lambda p: torch.optim.AdamW(p, fused=True, **hyper),
              "torch foreach AdamW": lambda p: torch.optim.AdamW(p, foreach=True, **hyper)}
    try:
        from deepspeed.ops.adam import FusedAdam

        makers["DeepSpeed FusedAdam"] = lambda p: FusedAdam(p, adam_w_mode=True, **hyper)
    except Exception as err:  # the op failed to build or load: the comparison says so
        print(f"DeepSpeed FusedAdam: not available ({type(err).__name__}: {err})")
    result = {"device": torch.cuda.get_device_name(), "parameters": sum(torch.Size(s).numel() for s in shapes),
              "ms_per_step": {}}
    for name, make in makers.items():
        try:
            result["ms_per_step"][name] = time_steps(make, shapes)
        except Exception as err:
            print(f"{name}: failed ({type(err).__name__}: {err})")
        torch.cuda.empty_cache()
    print(f"Adam step over {result['parameters']:,} fp32 parameters (BERT-large) on {result['device']}")
    for name, ms in result["ms_per_step"].items():
        print(f"  {name:<22} {ms:8.3f} ms")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
