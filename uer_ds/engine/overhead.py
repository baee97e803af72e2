"""`uer-ds bench overhead`: the host's work per training step, counted on the CPU through the real engine
and loop - the guard the project keeps without a GPU.

On a GPU a BERT step is host-bound when the host issues more kernels, Python loops and device->host
synchronisations than the GPU needs time to run.  This benchmark counts them per phase of a step
(forward, backward, optimizer step, and the loop around them) for any model config at a reduced width
(the same layers and parameter tensors, so the same number of ops and per-parameter loops), through
`build_engine` and `uer_ds.train.train` exactly as `uer-ds pretrain` runs them:

  ops    aten operators dispatched that are not views (on a GPU: about one kernel launch each); with
         --kernels triton on the CPU the interpreter's own work inside a kernel launch is left out
  syncs  device->host reads: `.item()`/`float()`/`bool()` of a tensor (`_local_scalar_dense`),
         `nonzero`, boolean-mask indexing, `masked_select`, `unique`, and `Tensor.cpu/tolist/numpy`
         calls (on a GPU each one stops the host until the device catches up)
  ms     wall time per phase (on the CPU at a small width: mostly host time)

With --compile the model runs compiled (DeepSpeed's engine.compile()), and torch.profiler counts
instead of a dispatch mode (under which torch.compile would run the graph eagerly): aten ops at the top
level, inductor's extern kernels, and compiled graphs (each a few fused kernels on a GPU).

DeepSpeed takes the path a GPU run takes: the ds_config is completed for CUDA and a multi-tensor
AdamW (torch's fused kernel, in a subclass of FusedAdam) stands in for DeepSpeed's FusedAdam, a CUDA kernel.
Graph breaks are `torch._dynamo.explain`'s count for the model's forward.  Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from uer_ds.data.batch import forward_kwargs
from uer_ds.kernels.utils import in_interpreted_launch

CORPUS = Path(__file__).resolve().parents[2] / "corpora"
PHASES = ("forward", "backward", "step", "loop")
# aten ops that make the host wait for the device (their output's size or value is read back)
SYNC_OPS = frozenset({"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "unique",
                      "_unique2", "unique_consecutive", "repeat_interleave", "nonzero_static"})
# metadata-only ops: no kernel on a GPU
VIEW_OPS = frozenset({"view", "_unsafe_view", "detach", "t", "transpose", "slice", "as_strided", "expand", "reshape",
                      "unsqueeze", "squeeze", "permute", "alias", "select", "split", "split_with_sizes", "unbind",
                      "empty", "empty_like", "empty_strided", "lift_fresh", "_reshape_alias", "unflatten", "flatten",
                      "contiguous", "view_as", "expand_as", "diagonal", "narrow", "chunk", "movedim"})
HOST_READS = ("cpu", "tolist", "numpy")  # item() dispatches _local_scalar_dense


class OpCounter(TorchDispatchMode):
    """Counts aten ops and device->host reads per phase while active; `phase(name)` labels a region
    (the engine calls it around forward, backward and step; the rest of a step is "loop")."""

    def __init__(self) -> None:
        super().__init__()
        self.current = "loop"
        self.ops = {p: Counter() for p in PHASES}
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.counting = False
        self._patched: list[tuple[str, Any]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        previous, self.current = self.current, name
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.counting:
                self.seconds[name] += time.perf_counter() - start
                self.seconds[previous] -= time.perf_counter() - start  # nested in the loop's wall time
            self.current = previous

    def start(self) -> None:
        self.counting = True

    def stop(self) -> None:
        self.counting = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.counting and not in_interpreted_launch():
            name = func.overloadpacket.__name__
            self.ops[self.current][name] += 1
            if name in ("index", "index_put_", "index_put") and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ())):
                self.ops[self.current]["nonzero"] += 1  # boolean indexing runs nonzero inside
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        super().__enter__()
        for method in HOST_READS:  # host reads that do not dispatch an op on CPU tensors
            original = getattr(torch.Tensor, method)
            self._patched.append((method, original))
            setattr(torch.Tensor, method, self._reading(method, original))
        return self

    def __exit__(self, *exc):
        for method, original in self._patched:
            setattr(torch.Tensor, method, original)
        self._patched.clear()
        return super().__exit__(*exc)

    def _reading(self, method: str, original):
        counter = self

        def read(tensor, *args, **kwargs):
            if counter.counting and not in_interpreted_launch():  # on a GPU, a copy of a device tensor to the host
                counter.ops[counter.current][f"Tensor.{method}"] += 1
            return original(tensor, *args, **kwargs)

        return read


class ProfiledCounter:
    """OpCounter's interface for compiled models, where a dispatch mode would make torch.compile run the
    graph eagerly: torch.profiler records the ops instead.  Counted: aten ops at the top level (not
    called by another aten op, so an op inside a compiled graph is counted only when inductor calls it
    as an extern kernel), device->host reads anywhere, and compiled graphs run ("compiled_graph"; on a
    GPU each launches a few fused Triton kernels, which a CPU run cannot count)."""

    def __init__(self) -> None:
        self.ops = {p: Counter() for p in PHASES}
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.counting = False
        self._profile = None
        self._reads = OpCounter()  # reuses its Tensor.cpu/tolist/numpy patch, not its dispatch mode

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        from torch.profiler import record_function

        start = time.perf_counter()
        previous, self._reads.current = self._reads.current, name
        with record_function(f"phase:{name}"):
            yield
        self._reads.current = previous
        if self.counting:
            self.seconds[name] += time.perf_counter() - start
            self.seconds["loop"] -= time.perf_counter() - start

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self.counting = self._reads.counting = True
        self._profile = profile(activities=[ProfilerActivity.CPU])
        self._profile.__enter__()

    def stop(self) -> None:
        self.counting = self._reads.counting = False
        self._profile.__exit__(None, None, None)
        for event in self._profile.events():
            chain, parent = [], event.cpu_parent
            while parent is not None:
                chain.append(parent.name)
                parent = parent.cpu_parent
            phase = next((n.split(":", 1)[1] for n in chain if n.startswith("phase:")), "loop")
            name = event.name
            if name.startswith("## Call CompiledFxGraph"):
                self.ops[phase]["compiled_graph"] += 1
            elif name.startswith("aten::"):
                op = name[len("aten::"):]
                if not any(n.startswith("aten::") for n in chain):  # inside a kernel: its implementation
                    self.ops[phase]["_local_scalar_dense" if op == "item" else op] += 1
        for phase, reads in self._reads.ops.items():
            self.ops[phase].update(reads)

    def __enter__(self):
        for method in HOST_READS:
            original = getattr(torch.Tensor, method)
            self._reads._patched.append((method, original))
            setattr(torch.Tensor, method, self._reads._reading(method, original))
        return self

    def __exit__(self, *exc):
        for method, original in self._reads._patched:
            setattr(torch.Tensor, method, original)
        self._reads._patched.clear()
        return None


def kernel_ops(ops: Counter) -> int:
    return sum(n for name, n in ops.items() if name not in VIEW_OPS and not name.startswith("Tensor.")
               and name != "compiled_graph")


def syncs(ops: Counter) -> int:
    return sum(n for name, n in ops.items() if name in SYNC_OPS or name.startswith("Tensor."))


def fused_adam_stand_in() -> type:
    """A subclass of DeepSpeed's FusedAdam that runs on the CPU: DeepSpeed's checks (`isinstance(opt,
    FusedAdam)` picks its fused fp16 wrapper) see the optimizer a GPU run has, and the update is one fused
    multi-tensor op per group (torch's `_fused_adamw_`, AdamW's own CPU kernel), as FusedAdam's
    multi_tensor_apply is one launch per chunk - no per-parameter Python loop of ops or host reads."""
    from deepspeed.ops.adam import FusedAdam

    class FusedAdamStandIn(FusedAdam):
        def __init__(self, params, lr: float = 1e-3, bias_correction: bool = True, betas=(0.9, 0.999),
                     eps: float = 1e-8, adam_w_mode: bool = True, weight_decay: float = 0.0, **_: Any) -> None:
            torch.optim.Optimizer.__init__(self, params, dict(lr=lr, bias_correction=bias_correction, betas=betas,
                                                              eps=eps, weight_decay=weight_decay))
            self.adam_w_mode, self.set_grad_none = 1 if adam_w_mode else 0, True  # FusedAdam's CUDA op not loaded

        @torch.no_grad()
        def step(self, closure=None, **_: Any):
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                for p in params:
                    if not self.state[p]:
                        self.state[p].update(step=torch.zeros((), dtype=torch.float32), exp_avg=torch.zeros_like(p),
                                             exp_avg_sq=torch.zeros_like(p))
                states = [self.state[p] for p in params]
                steps = [s["step"] for s in states]
                torch._foreach_add_(steps, 1)
                beta1, beta2 = group["betas"]
                torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                                    [s["exp_avg_sq"] for s in states], [], steps, lr=group["lr"], beta1=beta1,
                                    beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
                                    maximize=False)

    return FusedAdamStandIn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config_path", default="bert/large", help="model config (default bert/large)")
    parser.add_argument("--deepspeed_config", default="zero0_bf16",
                        help="ds_config (default zero0_bf16, what one GPU runs)")
    parser.add_argument("--width", type=int, default=64,
                        help="hidden/emb size the model is shrunk to (default 64; layers and parameter tensors "
                             "stay as in the config); feed-forward 4x, one head per 16")
    parser.add_argument("--vocab_size", type=int, default=1024, help="vocabulary of the shrunk model (default 1024)")
    parser.add_argument("--target", default="mlm", help="data processor / targets (default mlm)")
    parser.add_argument("--batch_size", type=int, default=8, help="micro-batch (default 8)")
    parser.add_argument("--seq_length", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--accumulation_steps", type=int, default=1, help="micro-batches per step (default 1)")
    parser.add_argument("--steps", type=int, default=5, help="counted steps (default 5)")
    parser.add_argument("--warmup_steps", type=int, default=3, help="uncounted steps first (default 3)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (engine.compile())")
    parser.add_argument("--kernels", choices=("torch", "triton"), default="torch",
                        help="the model's kernels (default torch); triton runs the unpadded path on packed batches "
                             "through Triton's interpreter on the CPU (each kernel op counts once: about 1-3 "
                             "launches on a GPU)")
    parser.add_argument("--json_path", help="write the result as JSON")


def enter_interpreter(command: str) -> None:
    """TRITON_INTERPRET=1 before the first import of triton and of the kernels (see kernels/src/utils.py)."""
    import os
    import sys

    if os.environ.get("TRITON_INTERPRET") != "1" and "triton" in sys.modules:
        raise ValueError(f"{command}: triton was already imported in this process without TRITON_INTERPRET=1; "
                         "start the command with TRITON_INTERPRET=1 in the environment")
    os.environ["TRITON_INTERPRET"] = "1"


def shrunk_config(args: argparse.Namespace, processor: str, targets: tuple[str, ...]):
    """The config at --width: same layers, same parameter tensors."""
    from uer_ds.config import ModelConfig

    width = args.width
    return ModelConfig.from_json(args.config_path, {
        "vocab_size": args.vocab_size, "target": list(targets), "data_processor": processor, "hidden_size": width,
        "emb_size": width, "feedforward_size": 4 * width, "heads_num": max(1, width // 16),
        "kernels": getattr(args, "kernels", "torch")})


def graph_breaks(model: torch.nn.Module, batch: dict) -> Optional[int]:
    """torch._dynamo.explain's graph break count for the model's forward on this batch (None: dynamo
    cannot trace this model at all)."""
    import torch._dynamo

    torch._dynamo.reset()
    try:
        explained = torch._dynamo.explain(model)(batch["src"], batch["tgt"], batch["seg"],
                                                 **forward_kwargs(batch["info"]))
    finally:
        torch._dynamo.reset()
    return int(explained.graph_break_count)


def _dataset(args: argparse.Namespace):
    from uer_ds.data import PretrainDataset, PreprocessOptions, preprocess
    from uer_ds.tokenizers import build_tokenizer

    prefix = f"{tempfile.mkdtemp(prefix='uer_ds_overhead_')}/data"
    preprocess(CORPUS / "reviews.txt", prefix, build_tokenizer("bert", vocab_path=CORPUS / "vocab.txt"),
               PreprocessOptions(data_processor=args.target, seq_length=args.seq_length, full_sentences=True),
               progress=False)
    return PretrainDataset(prefix, seed=7)


def measure(args: argparse.Namespace) -> dict:
    """Run warm-up + counted steps through the real loop; the counts and times per phase."""
    from uer_ds.config import TrainConfig
    from uer_ds.data import DATA_PROCESSORS
    from uer_ds.engine import build_engine, describe, dist, load_ds_config
    from uer_ds.engine.data import batch_iterator
    from uer_ds.engine.ds_config import precision
    from uer_ds.models import Model
    from uer_ds.train import Reporter, train

    dataset = _dataset(args)
    processor = dataset.meta["data_processor"]
    cfg = shrunk_config(args, processor, DATA_PROCESSORS[processor])
    cfg = cfg.replace(vocab_size=int(dataset.meta["vocab_size"]))
    ds, source = load_ds_config(args.deepspeed_config)
    if precision(ds) == "fp16":
        raise ValueError(f"{source}: fp16 does not run on CPU; count the bf16 config of the same stage instead")
    counted = args.warmup_steps + args.steps
    train_cfg = TrainConfig(total_steps=counted + 1, batch_size=args.batch_size,
                            accumulation_steps=args.accumulation_steps, learning_rate=1e-4,
                            report_steps=counted + 1, save_checkpoint_steps=counted + 1)
    engine = build_engine(ds, source, train_cfg, cfg, lambda: Model(cfg), optimizer=fused_adam_stand_in(),
                          as_on_gpu=True)
    first = next(batch_iterator(dataset, train_cfg, 0, 1, 0, num_workers=0))
    breaks = graph_breaks(engine.ds.module, first)
    if args.compile:
        engine.compile()
    counter = ProfiledCounter() if args.compile else OpCounter()
    engine.probe = counter
    batches = batch_iterator(dataset, train_cfg, engine.data_parallel_rank, engine.data_parallel_size, 0,
                             num_workers=1)
    reporter = Reporter(tuple(cfg.target), None, None, train_cfg.total_steps, 0, show_progress=False)
    wall = {"start": 0.0, "end": 0.0}

    def on_step(step: int) -> None:  # runs after each step: count steps warmup+1 .. counted
        if step == args.warmup_steps:
            counter.seconds = dict.fromkeys(PHASES, 0.0)
            counter.start()
            wall["start"] = time.perf_counter()
        if step == counted:
            wall["end"] = time.perf_counter()
            counter.stop()

    with counter:
        train(engine, batches, train_cfg, 0, reporter, lambda step: None, on_step=on_step)
    counter.seconds["loop"] += wall["end"] - wall["start"]
    n = args.steps
    phases = {p: {"ops": kernel_ops(counter.ops[p]) / n, "syncs": syncs(counter.ops[p]) / n,
                  "compiled_graphs": counter.ops[p]["compiled_graph"] / n,
                  "ms": counter.seconds[p] / n * 1e3,
                  "sync_ops": {k: v / n for k, v in counter.ops[p].items()
                               if k in SYNC_OPS or k.startswith("Tensor.")}}
              for p in PHASES}
    total = {"ops": sum(v["ops"] for v in phases.values()), "syncs": sum(v["syncs"] for v in phases.values()),
             "compiled_graphs": sum(v["compiled_graphs"] for v in phases.values()),
             "ms": (wall["end"] - wall["start"]) / n * 1e3}
    params = sum(1 for p in engine.ds.module.parameters() if p.requires_grad)
    optimizer = type(getattr(engine.ds.optimizer, "optimizer", engine.ds.optimizer)).__name__
    return {"config": args.config_path, "width": args.width, "layers": cfg.layers_num, "parameter_tensors": params,
            "kernels": cfg.kernels,
            "deepspeed_config": args.deepspeed_config, "engine": describe(engine),
            "deepspeed_optimizer": type(engine.ds.optimizer).__name__, "inner_optimizer": optimizer,
            "compile": args.compile, "batch_size": args.batch_size, "seq_length": args.seq_length,
            "steps": n, "graph_breaks": breaks, "phases": phases, "total": total,
            "world_size": dist.world_size()}


def format_table(result: dict) -> str:
    lines = [f"{result['config']} structure at width {result['width']}: {result['layers']} layers, "
             f"{result['parameter_tensors']} parameter tensors; {result['engine']}",
             f"DeepSpeed optimizer {result['deepspeed_optimizer']} ({result['inner_optimizer']} inside); "
             f"kernels {result.get('kernels', 'torch')}; compile {'on' if result['compile'] else 'off'}; "
             f"per step, mean of {result['steps']} steps",
             f"{'phase':<10} {'aten ops':>10} {'host syncs':>11} {'ms':>9}"
             + (f" {'compiled graphs':>16}" if result["compile"] else "")]
    for name, row in list(result["phases"].items()) + [("total", result["total"])]:
        lines.append(f"{name:<10} {row['ops']:>10,.0f} {row['syncs']:>11,.1f} {row['ms']:>9.1f}"
                     + (f" {row.get('compiled_graphs', 0):>16,.0f}" if result["compile"] else ""))
    lines.append(f"graph breaks in the model's forward (torch._dynamo.explain): {result['graph_breaks']}")
    found = {f"{p}:{k}": v for p, row in result["phases"].items() for k, v in row["sync_ops"].items()}
    if found:
        lines.append("syncs by op: " + ", ".join(f"{k} {v:g}" for k, v in found.items()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from uer_ds.engine import dist

    if args.kernels == "triton" and not torch.cuda.is_available():
        enter_interpreter("bench overhead --kernels triton")
    result = measure(args)
    if dist.is_rank0():
        print(format_table(result))
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
