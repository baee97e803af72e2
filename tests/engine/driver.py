"""Test driver: the real engine and training loop on deterministic synthetic batches.

Launched by the engine tests through the deepspeed launcher (2 processes) so that ZeRO stages,
offload and the pipeline can be compared with a plain single-process PyTorch run in the test.
Step s uses global samples [s*G, (s+1)*G); rank r takes its share of every micro-batch.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

import torch

from uer_ds.config import ModelConfig, TrainConfig
from uer_ds.data.batch import collate as real_collate
from uer_ds.engine import build_engine, dist, load_ds_config
from uer_ds.models import IGNORE_INDEX, Model
from uer_ds.train import Reporter, train

VOCAB, SEQ = 120, 24


def model_config(kind: str) -> ModelConfig:
    if kind == "gpt":
        return ModelConfig.from_json("gpt2/small", {"vocab_size": VOCAB, "hidden_size": 32, "emb_size": 32,
                                                    "feedforward_size": 64, "heads_num": 4, "layers_num": 3,
                                                    "max_seq_length": 64, "dropout": 0.0})
    return ModelConfig.from_json("bert/tiny", {"vocab_size": VOCAB, "hidden_size": 32, "emb_size": 32,
                                               "feedforward_size": 64, "heads_num": 4, "layers_num": 3,
                                               "max_seq_length": 64, "dropout": 0.0})


def sample(index: int, cfg: ModelConfig) -> dict:
    """Global sample `index`: random tokens, a little padding, the targets the config wants."""
    g = torch.Generator().manual_seed(1000 + index)
    length = SEQ - int(torch.randint(0, 6, (1,), generator=g))
    src = torch.zeros(SEQ, dtype=torch.long)
    src[:length] = torch.randint(5, VOCAB, (length,), generator=g)
    seg = torch.zeros(SEQ, dtype=torch.long)
    seg[:length] = 1
    seg[length // 2:length] = 2 if "sp" in cfg.target else 1
    tgt = {}
    if "mlm" in cfg.target:
        pick = (torch.rand(SEQ, generator=g) < 0.2) & (seg > 0)
        pick[1] = True
        tgt["mlm"] = torch.where(pick, src, IGNORE_INDEX)
        src = torch.where(pick, 4, src)
    if "sp" in cfg.target:
        tgt["sp"] = torch.randint(0, 2, (), generator=g)
    if "lm" in cfg.target:
        tgt["lm"] = torch.where(seg > 0, torch.roll(src, -1), IGNORE_INDEX)
        tgt["lm"][length - 1] = IGNORE_INDEX
    return {"src": src, "seg": seg, "tgt": tgt}


def collate(items: list[dict], pad_to: int | None = None) -> dict:
    """The training data's collate: MLM labels as Picked rows, BatchInfo with the prediction counts
    (so the engine normalises losses over the global batch).  Batches are cut to their longest row, as
    in real training, except for the pipeline, which needs one shape (pad_to = SEQ)."""
    return real_collate(items, pad_to=pad_to, picked={"mlm": SEQ})


def micro_batches(cfg: ModelConfig, train_cfg: TrainConfig, dp_rank: int, dp_size: int, start_step: int,
                  pad_to: int | None = None):
    """Rank dp_rank's micro-batches; the global batch of step s is the same whatever dp_size."""
    global_batch = train_cfg.batch_size * train_cfg.accumulation_steps * dp_size
    for step in range(start_step, train_cfg.total_steps):
        base = step * global_batch
        for micro in range(train_cfg.accumulation_steps):
            first = base + (micro * dp_size + dp_rank) * train_cfg.batch_size
            yield collate([sample(first + i, cfg) for i in range(train_cfg.batch_size)], pad_to)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--local_rank", type=int, default=0)
    parser.add_argument("--model", choices=("bert", "gpt"), default="bert")
    parser.add_argument("--ds_config", required=True)
    parser.add_argument("--steps", type=int, default=8, help="total_steps (sets the schedule)")
    parser.add_argument("--resume_at", type=int, default=0,
                        help="stop after this step's save, then resume from disk in a fresh engine")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--accumulation_steps", type=int, default=1)
    parser.add_argument("--pipeline_stages", type=int, default=1)
    parser.add_argument("--activation_checkpointing", action="store_true")
    parser.add_argument("--init", required=True, help="initial Model state dict (.pt)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--save_steps", type=int, default=4)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--dump_live", help="after training, write the live (gathered) weights here")
    parser.add_argument("--crash_in_save_at", type=int, default=0,
                        help="simulate a kill during the save at this step (after DeepSpeed wrote, before latest)")
    args = parser.parse_args()
    cfg = model_config(args.model)
    train_cfg = TrainConfig(total_steps=args.steps, batch_size=args.batch_size,
                            accumulation_steps=args.accumulation_steps, learning_rate=1e-3, warmup=0.25,
                            report_steps=1, save_checkpoint_steps=args.save_steps, seed=3)
    ds_config, source = load_ds_config(args.ds_config)
    init = torch.load(args.init, weights_only=True)

    def run(resume: bool, stop_after: int = 0):
        """A fresh engine (and model and optimizer); from the checkpoint on disk when resuming."""
        engine = build_engine(ds_config, source, train_cfg, cfg, lambda: Model(cfg), init,
                              pipeline_stages=args.pipeline_stages,
                              activation_checkpointing=args.activation_checkpointing)
        start = int(engine.load(args.out)["step"]) if resume else 0
        if args.crash_in_save_at:
            real_save = engine.ds.save_checkpoint

            def crashing_save(directory, tag=None, **kwargs):
                real_save(directory, tag=tag, **kwargs)
                if tag == f"global_step{args.crash_in_save_at}":
                    os._exit(17)

            engine.ds.save_checkpoint = crashing_save
        batches = micro_batches(cfg, train_cfg, engine.data_parallel_rank, engine.data_parallel_size, start,
                                pad_to=SEQ if args.pipeline_stages > 1 else None)
        reporter = Reporter(tuple(cfg.target), args.metrics, None, train_cfg.total_steps, start, show_progress=False)
        train(engine, batches, train_cfg, start, reporter,
              lambda step: engine.save(args.out, step, {"step": step, "pipeline_stages": args.pipeline_stages}),
              stop_after=stop_after or None)
        return engine

    if args.resume_at:  # train to resume_at, drop everything, resume from the files in a new engine
        run(resume=False, stop_after=args.resume_at)
        gc.collect()
    engine = run(resume=args.resume or bool(args.resume_at))
    if args.dump_live:
        dump_live(engine, args.dump_live)
    return 0


def dump_live(engine, path: str) -> None:
    """The live model's full fp32 weights, gathered from ZeRO-3 partitions where needed."""
    module = engine.ds.module
    if hasattr(module, "model_state_items"):  # pipeline: each stage writes its part
        state = module.model_state_items()
        torch.save({k: v.float() for k, v in state.items()}, f"{path}.rank{dist.rank()}")
        return
    from deepspeed.runtime.zero import GatheredParameters

    with GatheredParameters(list(module.parameters()), modifier_rank=None):
        state = {k: v.detach().float().clone() for k, v in module.state_dict().items()}
    if dist.is_rank0():
        torch.save(state, path)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
