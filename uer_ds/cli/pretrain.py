"""`uer-ds pretrain` (also `deepspeed [--hostfile H] --module uer_ds pretrain ...`)."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from uer_ds.cli.common import add_model_arguments, add_tokenizer_arguments, tokenizer_from_args
from uer_ds.config import ModelConfig, add_train_config_arguments, model_config_from_args, train_config_from_args


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DeepSpeed engine")
    group.add_argument("--deepspeed_config", default="zero2",
                       help="DeepSpeed JSON (engine settings only) or a shipped name in ds_configs/: zero0..zero3, "
                            "zero2_offload, zero3_offload, *_bf16, *_fp16, pipeline (default zero2)")
    group.add_argument("--deepspeed", action="store_true", help="accepted for TencentPretrain compatibility")
    group.add_argument("--pipeline_stages", type=int, default=1, help="pipeline-parallel stages (default 1: none)")
    group.add_argument("--activation_checkpointing", action="store_true",
                       help="recompute transformer layer activations in backward")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output and logging")
    group.add_argument("--output_model_path", required=True,
                       help="checkpoint directory: global_step<N>/ tags, 'latest', and the final model in model/")
    group.add_argument("--resume", action="store_true", help="continue from output_model_path's latest checkpoint")
    group.add_argument("--stop_after_steps", type=int,
                       help="end this run after step N with a checkpoint (job time limits; resume with --resume); "
                            "the schedule still follows --total_steps")
    group.add_argument("--metrics_path", help="write one JSON line per report step (rank 0)")
    group.add_argument("--tensorboard_dir", help="TensorBoard log directory (default: <output_model_path>/tensorboard)")
    group.add_argument("--no_progress", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset_path", required=True, help="dataset prefix written by `uer-ds preprocess`")
    parser.add_argument("--pretrained_model_path",
                        help="initial weights: a model directory, a uer_ds checkpoint directory or one of its "
                             "global_step<N> tags, or a .safetensors/.bin file with uer_ds key names")
    parser.add_argument("--allow_partial_load", action="store_true",
                        help="load a pretrained model whose keys do not all match (reported), instead of failing")
    parser.add_argument("--num_workers", type=int, default=1, help="DataLoader worker processes per rank")
    add_output_arguments(parser)
    add_engine_arguments(parser)
    add_model_arguments(parser)
    add_tokenizer_arguments(parser, subwords=True)
    add_train_config_arguments(parser)


def _check_against_dataset(cfg: ModelConfig, meta: dict, dataset_path: str, args: argparse.Namespace) -> None:
    from uer_ds.data import DATA_PROCESSORS

    processor = meta["data_processor"]
    wanted = set(DATA_PROCESSORS[processor])
    if set(cfg.target) != wanted:
        raise ValueError(f"model target {list(cfg.target)} does not match the dataset {dataset_path}, built for "
                         f"'{processor}' (targets {sorted(wanted)}); set --target or preprocess for this target")
    if meta["seq_length"] > cfg.max_seq_length:
        raise ValueError(f"dataset {dataset_path} has seq_length {meta['seq_length']}, more than the model's "
                         f"max_seq_length {cfg.max_seq_length}")
    tokenizer = tokenizer_from_args(args)
    if tokenizer is not None:
        ours, theirs = tokenizer.identity(), meta["tokenizer"]
        if ours.get("vocab_sha256") != theirs.get("vocab_sha256") or ours.get("kind") != theirs.get("kind"):
            raise ValueError(f"the tokenizer given ({ours['kind']}, {tokenizer.vocab.source}) is not the one "
                             f"{dataset_path} was built with ({theirs})")


def _model_config(args: argparse.Namespace, meta: dict, subwords=None) -> ModelConfig:
    from uer_ds.cli.common import with_sub_vocab

    cfg = model_config_from_args(args)
    vocab_size = int(meta["vocab_size"])
    if cfg.vocab_size not in (0, vocab_size):
        raise ValueError(f"vocab_size {cfg.vocab_size} in the model config disagrees with the dataset's "
                         f"vocabulary ({vocab_size})")
    cfg = with_sub_vocab(cfg.replace(vocab_size=vocab_size), subwords)
    if cfg.subword_type != "none" and subwords is None:
        raise ValueError(f"subword_type '{cfg.subword_type}' needs the character vocabulary: give --sub_vocab_path "
                         "(and --vocab_path, --tokenizer word)")
    if cfg.subword_type != "none" and args.pipeline_stages > 1:
        raise ValueError("subword features with --pipeline_stages > 1: the pipeline's first stage receives only "
                         "src and seg, not the character ids; train with --pipeline_stages 1")
    return cfg


def run(args: argparse.Namespace) -> int:
    from uer_ds.data import PretrainDataset
    from uer_ds.engine import build_engine, checkpoint as ckpt, describe, dist, load_ds_config
    from uer_ds.engine.data import batch_iterator
    from uer_ds.models import Model, build_model, save_model
    from uer_ds.models.io import model_from_state
    from uer_ds.train import Reporter, train

    train_cfg = train_config_from_args(args)
    if args.stop_after_steps is not None and not 0 < args.stop_after_steps <= train_cfg.total_steps:
        raise ValueError(f"--stop_after_steps has value {args.stop_after_steps}: must be in [1, --total_steps "
                         f"({train_cfg.total_steps})]")
    subwords = getattr(tokenizer_from_args(args), "subwords", None) if args.sub_vocab_path else None
    dataset = PretrainDataset(args.dataset_path, seed=train_cfg.seed, subwords=subwords)
    cfg = _model_config(args, dataset.meta, subwords)
    _check_against_dataset(cfg, dataset.meta, args.dataset_path, args)
    out = Path(args.output_model_path)
    if args.resume:
        saved_cfg, _, _ = ckpt.read_metadata(out)
        if saved_cfg != cfg:
            diff = {k: (v, getattr(cfg, k)) for k, v in saved_cfg.to_dict().items() if getattr(cfg, k) != v}
            raise ValueError(f"--resume: the model config differs from the checkpoint's in {out}: "
                             + ", ".join(f"{k} checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items()))
    elif ckpt.is_checkpoint_dir(out):
        raise FileExistsError(f"{out} already holds a checkpoint: pass --resume to continue it, or choose a new "
                              "--output_model_path")
    pretrained = None
    if args.pretrained_model_path and not args.resume:
        pretrained = ckpt.read_pretrained(args.pretrained_model_path)
        notes = ckpt.check_pretrained(pretrained, build_model(cfg, device="meta"), args.pretrained_model_path,
                                      args.allow_partial_load)
        for line in notes:
            print(f"pretrained: {line}", flush=True)

    ds_config, source = load_ds_config(args.deepspeed_config)
    engine = build_engine(ds_config, source, train_cfg, cfg, lambda: Model(cfg), pretrained,
                          pipeline_stages=args.pipeline_stages, activation_checkpointing=args.activation_checkpointing)
    start_step = 0
    if args.resume:
        start_step = int(engine.load(str(out))["step"])
    if dist.is_rank0():
        print(f"uer-ds pretrain: {describe(engine)}; steps {start_step + 1}..{train_cfg.total_steps}", flush=True)

    batches = batch_iterator(dataset, train_cfg, engine.data_parallel_rank, engine.data_parallel_size,
                             start_step, args.num_workers)
    reporter = Reporter(tuple(cfg.target), args.metrics_path, args.tensorboard_dir or str(out / "tensorboard"),
                        train_cfg.total_steps, start_step, show_progress=not args.no_progress)
    run_state = {"dataset_path": str(args.dataset_path), "dataset": dataset.meta, "tokenizer": dataset.meta["tokenizer"],
                 "train": vars(train_cfg), "pipeline_stages": args.pipeline_stages, "world_size": dist.world_size()}

    def save(step: int) -> None:
        engine.save(str(out), step, dict(run_state, step=step,
                                         data_position={"micro_batches_per_rank": step * train_cfg.accumulation_steps,
                                                        "batch_size": train_cfg.batch_size}))

    if args.stop_after_steps is not None and args.stop_after_steps <= start_step:
        raise ValueError(f"--stop_after_steps {args.stop_after_steps}: the checkpoint in {out} is already at "
                         f"step {start_step}")
    record = train(engine, batches, train_cfg, start_step, reporter, save, stop_after=args.stop_after_steps)
    last = args.stop_after_steps or train_cfg.total_steps
    if last < train_cfg.total_steps:
        if dist.is_rank0():
            print(f"stopped after step {last} of {train_cfg.total_steps}: {json.dumps(record)}\n"
                  f"checkpoint in {out}; continue with the same command and --resume", flush=True)
        return 0
    if dist.is_rank0():
        final_cfg, state = ckpt.export_state(out)
        model = model_from_state(final_cfg, state, str(out))
        tmp = out / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, tmp)
        shutil.rmtree(out / "model", ignore_errors=True)
        tmp.rename(out / "model")
        print(f"final: {json.dumps(record)}\nwrote {out / 'model'} (and checkpoints in {out})", flush=True)
    dist.barrier()
    return 0
