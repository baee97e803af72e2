"""`uer-ds pretrain` (also `deepspeed [--hostfile H] --module uer_ds pretrain ...`)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Optional

from uer_ds.cli.common import (add_model_arguments, add_tokenizer_arguments, add_uer_engine_arguments,
                               deepspeed_config_name, job_fingerprint, resolve_config_default, tokenizer_from_args)
from uer_ds.compat import accepted_notes, add_accepted_flags
from uer_ds.config import ModelConfig, add_train_config_arguments, model_config_from_args, train_config_from_args

# masking options UER-py's pretrain.py takes (uer_ds records them at preprocessing; see _apply_masking_flags)
MASKING_FLAGS = ("dynamic_masking", "whole_word_masking", "span_masking", "span_geo_prob", "span_max_length")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DeepSpeed engine")
    group.add_argument("--deepspeed_config",
                       help="DeepSpeed JSON (engine settings only) or a shipped name in ds_configs/: zero0..zero3, "
                            "zero2_offload, zero3_offload, *_bf16, *_fp16, pipeline (default: follows the job: "
                            "zero0 for one process, the planner's ZeRO stage for several)")
    group.add_argument("--deepspeed", action="store_true", help="accepted for TencentPretrain compatibility")
    group.add_argument("--pipeline_stages", type=int, default=1, help="pipeline-parallel stages (default 1: none)")
    group.add_argument("--activation_checkpointing", action="store_true",
                       help="recompute transformer layer activations in backward")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the model (DeepSpeed's engine.compile(), inductor); batches are padded "
                            "to --seq_length so shapes stay static")
    add_uer_engine_arguments(group)


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """UER-py's own launch flags; `deepspeed [--hostfile H] --module uer_ds pretrain ...` is the other way."""
    group = parser.add_argument_group("UER-py's launch flags (start this machine's processes; the deepspeed "
                                      "launcher is the alternative)")
    group.add_argument("--world_size", type=int, default=None,
                       help="processes in the whole job (UER-py's meaning; default 1)")
    group.add_argument("--gpu_ranks", type=int, nargs="+", default=[],
                       help="the global ranks this machine runs, one process each on local devices 0, 1, ...; "
                            "with --world_size 1, the one device to use")
    group.add_argument("--master_ip", default=None,
                       help="tcp://HOST:PORT of rank 0, the same on every machine (default: this machine, a free port)")
    group.add_argument("--backend", choices=("nccl", "gloo"), default=None,
                       help="process-group backend (default: nccl on GPUs, gloo on CPUs)")


def add_masking_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("masking (UER-py's pretrain.py flags; uer_ds sets them at preprocessing)")
    group.add_argument("--dynamic_masking", action="store_true", default=None,
                       help="checked against the dataset (preprocess --dynamic_masking)")
    group.add_argument("--whole_word_masking", action="store_true", default=None,
                       help="whole-word masking: applied at training time to a dynamic-masking dataset whose index "
                            "has word boundaries; otherwise it must match the dataset")
    group.add_argument("--span_masking", action="store_true", default=None,
                       help="span masking: applied at training time to a dynamic-masking dataset; otherwise it "
                            "must match the dataset")
    group.add_argument("--span_geo_prob", type=float, default=None,
                       help="span length distribution (with --span_masking)")
    group.add_argument("--span_max_length", type=int, default=None, help="longest span (with --span_masking)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output and logging")
    group.add_argument("--output_model_path", required=True,
                       help="checkpoint directory: global_step<N>/ tags, 'latest', and the final model in model/")
    group.add_argument("--resume", action="store_true", help="continue from output_model_path's latest checkpoint; a new --learning_rate, --warmup, "
                            "--total_steps or --scheduler applies from the resume step (the run prints the rate "
                            "before and after); --total_steps must exceed the saved step")
    group.add_argument("--stop_after_steps", type=int,
                       help="end this run after step N with a checkpoint (job time limits; resume with --resume); "
                            "the schedule still follows --total_steps")
    group.add_argument("--metrics_path", help="write one JSON line per report step (rank 0)")
    group.add_argument("--tensorboard_dir", help="TensorBoard log directory (default: <output_model_path>/tensorboard)")
    group.add_argument("--no_progress", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset_path", help="dataset prefix written by `uer-ds preprocess` (or --schedule)")
    parser.add_argument("--schedule",
                        help="ERNIE 2.0's continual multi-task pre-training: a JSON schedule of tasks (datasets) and "
                             "stages (uer_ds/data/schedule.py), instead of --dataset_path")
    parser.add_argument("--pretrained_model_path",
                        help="initial weights: a model directory, a uer_ds checkpoint directory or one of its "
                             "global_step<N> tags, a .safetensors/.bin file, or a UER-py/TencentPretrain .bin "
                             "(converted in memory)")
    parser.add_argument("--allow_partial_load", action="store_true",
                        help="load a pretrained model whose keys do not all match (reported), instead of failing")
    parser.add_argument("--num_workers", type=int, default=1, help="DataLoader worker processes per rank")
    add_output_arguments(parser)
    add_engine_arguments(parser)
    add_launch_arguments(parser)
    add_model_arguments(parser, model_flag="--pretrained_model_path")
    add_tokenizer_arguments(parser, subwords=True)
    add_train_config_arguments(parser)
    add_masking_arguments(parser)
    add_accepted_flags(parser, ("--instances_buffer_size", "--log_path", "--log_level", "--log_file_level",
                                "--optimizer"))


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


def _model_source(args: argparse.Namespace):
    """The model a run starts from, as the resolver recognises it: --pretrained_model_path, or with --resume
    the run in --output_model_path (for its config); None without one."""
    from uer_ds.convert.resolve import resolve_model

    if args.resume:
        out = Path(args.output_model_path)
        return resolve_model(out, "--output_model_path", kinds=("run",)) if (out / "latest").is_file() else None
    if args.pretrained_model_path:
        return resolve_model(args.pretrained_model_path, "--pretrained_model_path", config_path=args.config_path)
    return None


def _read_pretrained(source, cfg: ModelConfig, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """(--pretrained_model_path's weights under uer_ds's names, report lines), checked against the model of
    `cfg` key by key and shape by shape (--allow_partial_load relaxes it)."""
    from uer_ds.convert.resolve import format_hint
    from uer_ds.engine.checkpoint import check_pretrained
    from uer_ds.models import build_model

    state, notes = source.pretrained_state(cfg)
    if source.kind == "task":  # a fine-tuned model's heads are no pre-training targets
        from uer_ds.tasks.model import HEAD_PREFIX

        heads = sorted({k.split(".")[1] for k in state if k.startswith(HEAD_PREFIX)})
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
        if heads:
            notes.append(f"not loaded: the fine-tuned model's head(s) {heads}")
    try:
        notes += check_pretrained(state, build_model(cfg, device="meta"), args.pretrained_model_path,
                                  args.allow_partial_load)
    except ValueError as err:
        raise ValueError(f"{err}.{format_hint(state, args.pretrained_model_path)}") from None
    return state, notes


def _model_config(args: argparse.Namespace, meta: dict, subwords=None, base: Optional[ModelConfig] = None
                  ) -> ModelConfig:
    from uer_ds.cli.common import with_sub_vocab

    # the head sizes a dataset fixes (ERNIE 2.0's sentence_reorder_segments, discourse_labels_num) and a
    # schedule's targets (issue 27), merged like flags and validated once
    fixed = dict(meta.get("head_config") or {}, **({"target": list(meta["targets"])} if "targets" in meta else {}))
    cfg = model_config_from_args(args, base=base, **fixed)
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


# A resumed run may change these; the new schedule applies from the resume step (Engine.reschedule), as an
# uninterrupted run with the new values would have it there, and the run says so (the rate before and after).
SCHEDULE_FLAGS = ("learning_rate", "warmup", "total_steps", "scheduler")
# These come back with the optimizer's saved state (DeepSpeed restores its parameter groups): a new value
# would be silently ignored, so it is refused.
OPTIMIZER_FLAGS = ("weight_decay", "adam_beta1", "adam_beta2", "adam_eps")


def _resume_plan(out: Path, cfg: ModelConfig, dataset, train_cfg, args: argparse.Namespace
                 ) -> tuple[str, bool, dict[str, tuple]]:
    """Check a --resume against the checkpoint before anything starts (the first second, not after
    DeepSpeed's start-up): the model config, the dataset, the seed and the optimizer's settings must be
    the saved ones, and --total_steps above the saved step; batch size, accumulation and the schedule may
    change (the data continues from the samples consumed; the new schedule from the resume step), and so
    may the number of processes (through DeepSpeed's universal checkpoint).
    Returns (tag, universal, {flag: (saved, given)} of the schedule flags that changed)."""
    import os

    from uer_ds.engine import checkpoint as ckpt

    saved_cfg, saved, tag_dir = ckpt.read_metadata(out)
    saved_data, saved_train = saved.get("dataset") or {}, saved.get("train") or {}
    step = int(saved.get("step", 0))
    pairs = ckpt.config_changes(saved_cfg, cfg)
    pairs[f"dataset (run_id of {saved.get('dataset_path')} then, {args.dataset_path} now)"] = \
        (saved_data.get("run_id"), dataset.meta.get("run_id"))
    for key in ("seed",) + OPTIMIZER_FLAGS:
        pairs[f"--{key}"] = (saved_train.get(key, getattr(train_cfg, key)), getattr(train_cfg, key))
    ckpt.check_unchanged(str(tag_dir), pairs, "Resume with the saved ones (batch size, accumulation, the schedule "
                         "--learning_rate/--warmup/--total_steps/--scheduler and the number of processes may "
                         "change), or train into a new --output_model_path")
    # the same run first (above), then the steps it would train
    if train_cfg.total_steps <= step:
        raise ValueError(f"--total_steps has value {train_cfg.total_steps}: the checkpoint {tag_dir} is already at "
                         f"step {step}, and a resumed run trains steps {step + 1}..--total_steps: give more than {step}")
    changes = {f"--{key}": (saved_train[key], getattr(train_cfg, key)) for key in SCHEDULE_FLAGS
               if key in saved_train and saved_train[key] != getattr(train_cfg, key)}
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return tag_dir.name, ckpt.resharding(tag_dir, saved, world, args.pipeline_stages), changes


def _resume(engine, out: Path, tag: str, universal: bool, dataset):
    """Load the checkpoint (on another number of processes through its universal form, which rank 0
    writes once); returns (step, DataPosition) (a schedule: {task: DataPosition})."""
    from uer_ds.engine import checkpoint as ckpt, dist
    from uer_ds.engine.data import position_from_state

    if universal:
        if dist.is_rank0():
            print(f"--resume: {out / tag} was saved by another number of processes: loading it through DeepSpeed's "
                  f"universal checkpoint ({out / (tag + ckpt.UNIVERSAL_SUFFIX)}, written once)", flush=True)
            ckpt.convert_to_universal(out, tag)
        dist.barrier()
        state = ckpt.load_universal(engine, out, tag + ckpt.UNIVERSAL_SUFFIX)
    else:
        state = engine.load(str(out), tag)
    from uer_ds.engine.schedule import ScheduleData

    if isinstance(dataset, ScheduleData):  # issue 27: a schedule, one position per task
        position = dataset.positions_from_state(state)
        if dist.is_rank0():
            print(f"resumed at step {state['step']}: {dataset.describe_positions(position)}", flush=True)
        return int(state["step"]), position
    position = position_from_state(state, len(dataset))
    if dist.is_rank0():
        print(f"resumed at step {state['step']}: epoch {position.epoch}, {position.in_epoch:,} of its samples "
              f"consumed ({position.consumed_samples:,} in all)", flush=True)
    return int(state["step"]), position


def _open_schedule(args: argparse.Namespace, train_cfg, subwords):
    """Issue 27: `--schedule`: its datasets and plan (ScheduleData), the TrainConfig with the schedule's
    total steps, and the lines that describe it.  The pipeline engine takes one target set: refused."""
    import dataclasses

    from uer_ds.config import TrainConfig
    from uer_ds.data.schedule import describe
    from uer_ds.engine.schedule import open_schedule

    if args.pipeline_stages > 1:
        raise ValueError("--schedule with --pipeline_stages > 1: the pipeline engine trains one set of targets on "
                         "batches of one shape; train a schedule with ZeRO (--pipeline_stages 1)")
    data = open_schedule(args.schedule, train_cfg.seed, subwords)
    total = data.schedule.total_steps
    if train_cfg.total_steps not in (TrainConfig.total_steps, total):
        raise ValueError(f"--total_steps {train_cfg.total_steps}: the schedule {args.schedule} trains {total} steps "
                         "(the sum of its stages); leave --total_steps out")
    train_cfg = dataclasses.replace(train_cfg, total_steps=total)
    return data, train_cfg, describe(data.schedule) + [f"targets from the schedule: {', '.join(data.targets)}"]


def _apply_masking_flags(dataset, args: argparse.Namespace) -> list[str]:
    """UER-py's pretrain.py takes masking flags; uer_ds records them at preprocessing.  Flags equal to the
    dataset's are fine; a dynamic-masking dataset takes new span / whole-word settings at training time
    (as UER-py does); anything else is an error naming the preprocess flags to use."""
    from uer_ds.data.instances import BUILDERS

    options = dataset.meta["options"]
    given = {k: getattr(args, k) for k in MASKING_FLAGS if getattr(args, k, None) is not None}
    differs = {k: v for k, v in given.items() if options.get(k) != v}
    if not differs:
        return []
    flags = " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in differs.items())
    if "dynamic_masking" in differs or not options.get("dynamic_masking"):
        raise ValueError(f"{flags}: {args.dataset_path} was preprocessed with "
                         f"{ {k: options.get(k) for k in differs} } and masks at preprocessing (static masking); "
                         f"rerun `uer-ds preprocess ... --dynamic_masking {flags}`, or drop the flag(s)")
    dataset.meta["options"] = {**options, **given}
    dataset.builder = BUILDERS[dataset.meta["data_processor"]](dataset.data, dataset.meta, dataset.seed, True)
    return [f"masking at training time (dynamic masking): {flags}"]


def dataset_identity(prefix: str, meta: dict, instances: int) -> dict:
    """What tells one preprocessed dataset from another (compared between the ranks of a job): its run id
    (new at every preprocessing), what it was built for, its instance count and file sizes."""
    sizes = {suffix: os.path.getsize(f"{prefix}{suffix}") for suffix in (".bin", ".idx")
             if os.path.isfile(f"{prefix}{suffix}")}
    return {"run_id": meta.get("run_id"), "data_processor": meta.get("data_processor"),
            "seq_length": meta.get("seq_length"), "options": meta.get("options"), "instances": instances,
            "bytes": sizes}


def _dataset_identity(args: argparse.Namespace, dataset) -> dict:
    """dataset_identity of --dataset_path, or with --schedule of each task's dataset (and the schedule file)."""
    datasets = getattr(dataset, "datasets", None)
    if datasets is None:
        return dataset_identity(args.dataset_path, dataset.meta, len(dataset))
    return {"schedule": str(args.schedule), **{
        f"task {name}": dataset_identity(task.dataset, datasets[name].meta, len(datasets[name]))
        for name, task in ((t.name, t) for t in dataset.schedule.tasks)}}


def _launch(args: argparse.Namespace) -> Optional[int]:
    """UER-py's --world_size/--gpu_ranks/--master_ip/--backend: start this machine's processes and
    return their exit status, or set up this one process (None: carry on here)."""
    import os

    import torch

    from uer_ds.engine import dist

    plan = dist.plan_local_launch(args.world_size, args.gpu_ranks, args.master_ip, args.backend,
                                  torch.cuda.is_available())
    if plan is None:
        return None
    if dist.in_launched_process():  # a process we (or another launcher) started
        if int(os.environ.get("WORLD_SIZE", "1")) != plan.world_size:
            raise ValueError(f"--world_size {plan.world_size}: the launcher that started this process made a job of "
                             f"{os.environ.get('WORLD_SIZE')}; under `deepspeed ...` leave out UER-py's launch flags")
        return None
    if plan.spawns:
        print(f"uer-ds pretrain: starting global rank(s) {list(plan.ranks)} of {plan.world_size} on this machine "
              f"(rank 0 at {plan.master_addr}:{plan.master_port})", flush=True)
        return dist.launch_local_ranks(plan, args.command_argv)
    os.environ.update(dist.launch_env(plan, 0))
    return None


def run(args: argparse.Namespace) -> int:
    from uer_ds.data import PretrainDataset
    from uer_ds.engine.ds_config import default_ds_config_name, load_ds_config

    train_cfg = train_config_from_args(args)
    if (args.schedule is None) == (args.dataset_path is None):
        raise ValueError("give --dataset_path (one dataset) or --schedule (ERNIE 2.0's multi-task schedule), not both")
    if args.stop_after_steps is not None and not 0 < args.stop_after_steps <= train_cfg.total_steps:
        raise ValueError(f"--stop_after_steps has value {args.stop_after_steps}: must be in [1, --total_steps "
                         f"({train_cfg.total_steps})]")
    model_source = _model_source(args)
    base, config_note = resolve_config_default(args, model_source)
    notes = [config_note] if config_note else []
    subwords = getattr(tokenizer_from_args(args), "subwords", None) if args.sub_vocab_path else None
    if args.schedule:  # issue 27: ERNIE 2.0's continual multi-task schedule (uer_ds/engine/schedule.py)
        dataset, train_cfg, schedule_notes = _open_schedule(args, train_cfg, subwords)
        notes += schedule_notes
        if args.stop_after_steps is not None and args.stop_after_steps > train_cfg.total_steps:
            raise ValueError(f"--stop_after_steps has value {args.stop_after_steps}: the schedule has "
                             f"{train_cfg.total_steps} steps")
    else:
        dataset = PretrainDataset(args.dataset_path, seed=train_cfg.seed, subwords=subwords)
        notes += _apply_masking_flags(dataset, args)
    cfg = _model_config(args, dataset.meta, subwords, base)
    # the pre-trained weights are read and checked against the config before any process starts
    pretrained = _read_pretrained(model_source, cfg, args) if args.pretrained_model_path and not args.resume else None
    if args.deepspeed_config is None:  # the default follows the job
        world = args.world_size or int(os.environ.get("WORLD_SIZE", "1"))
        args.deepspeed_config, why = default_ds_config_name(cfg, world, int(dataset.meta["seq_length"]),
                                                            args.pipeline_stages)
        if args.deepspeed_config != "zero0":  # one process: no ZeRO, as the engine line says
            notes.append(f"--deepspeed_config not given: {args.deepspeed_config} ({why})")
    ds_name, fp16_notes = deepspeed_config_name(args)
    notes += fp16_notes
    ds_config, source = load_ds_config(ds_name)  # bad input fails here, before any process starts
    launched = _launch(args)
    if launched is not None:
        return launched
    lock = None
    if os.environ.get("RANK", "0") == "0":  # one writer per output: rank 0 holds the lock for the whole job
        from uer_ds.outputs import lock_output

        command = " ".join(["uer-ds", *getattr(args, "command_argv", ["pretrain"])])
        lock = lock_output(args.output_model_path, "--output_model_path", command)
        notes += [line for line in [lock.note("--output_model_path", args.output_model_path)] if line]
    try:
        return _pretrain(args, train_cfg, notes, dataset, cfg, ds_config, source, pretrained)
    finally:
        if lock is not None:
            lock.release()


def _pretrain(args: argparse.Namespace, train_cfg, notes: list[str], dataset, cfg: ModelConfig, ds_config: dict,
              source: str, pretrained: Optional[tuple[dict, list[str]]]) -> int:
    """The job in this process (under the output's lock on rank 0): checks, engine, training, the final model.
    pretrained: (--pretrained_model_path's checked weights, report lines), or None."""
    from uer_ds.atomic import atomic_path
    from uer_ds.engine import build_engine, checkpoint as ckpt, describe, dist
    from uer_ds.engine.data import DataPosition, advance, batch_iterator
    from uer_ds.models import Model, save_model
    from uer_ds.models.io import model_from_state
    from uer_ds.outputs import writing
    from uer_ds.train import Reporter, train

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # several processes: meet the others, check they run this job
        dist.init_distributed(args.dist_timeout, job_fingerprint(args, **{
            "model config": cfg.to_dict(), "dataset": _dataset_identity(args, dataset),
            "ds_config": ds_config}))
    if os.environ.get("RANK", "0") == "0":
        for line in notes + accepted_notes(args):
            print(line, flush=True)
    if args.schedule:  # issue 27
        dataset.check_model(cfg)
        dataset.check_tokenizer(tokenizer_from_args(args))
    else:
        _check_against_dataset(cfg, dataset.meta, args.dataset_path, args)
    out = Path(args.output_model_path)
    resume = _resume_plan(out, cfg, dataset, train_cfg, args) if args.resume else None
    if resume is None and ckpt.is_checkpoint_dir(out):
        raise FileExistsError(f"{out} already holds a checkpoint: pass --resume to continue it, or choose a new "
                              "--output_model_path")
    if pretrained is not None:
        pretrained, pretrained_notes = pretrained
        for line in pretrained_notes if os.environ.get("RANK", "0") == "0" else []:
            print(f"pretrained: {line}", flush=True)

    if resume is not None and resume[1]:  # another number of processes: through the universal checkpoint
        ds_config = dict(ds_config, checkpoint=dict(ds_config.get("checkpoint", {}), load_universal=True))
    engine = build_engine(ds_config, source, train_cfg, cfg, lambda: Model(cfg), pretrained,
                          pipeline_stages=args.pipeline_stages, activation_checkpointing=args.activation_checkpointing)
    if args.compile:
        engine.compile()
    # one shape for every batch: a compiled graph, or the pipeline's stage-to-stage buffers
    dataset.static_shapes = args.compile or args.pipeline_stages > 1
    start_step, position = 0, (dataset.start_positions() if args.schedule else DataPosition())
    if resume is not None:
        tag, universal, changes = resume
        start_step, position = _resume(engine, out, tag, universal, dataset=dataset)
        if changes:
            before, now = engine.reschedule(train_cfg, start_step)
            if dist.is_rank0():
                print(f"--resume: {', '.join(f'{flag} {a} -> {b}' for flag, (a, b) in changes.items())}: the new "
                      f"schedule applies from step {start_step + 1}, whose learning rate is {now:.6g} (the saved "
                      f"schedule's: {before:.6g})", flush=True)
    if dist.is_rank0():
        print(f"uer-ds pretrain: {describe(engine)}; steps {start_step + 1}..{train_cfg.total_steps}", flush=True)

    dp_size = engine.data_parallel_size
    if args.schedule:  # issue 27: each step one task of the plan
        batches = dataset.batches(train_cfg, engine.data_parallel_rank, dp_size, start_step, position, args.num_workers)
    else:
        batches = batch_iterator(dataset, train_cfg, engine.data_parallel_rank, dp_size, position, args.num_workers)
    reporter = Reporter(tuple(cfg.target), args.metrics_path, args.tensorboard_dir or str(out / "tensorboard"),
                        train_cfg.total_steps, start_step, show_progress=not args.no_progress)
    run_state = {"dataset_path": str(args.dataset_path), "dataset": dataset.meta, "tokenizer": dataset.meta["tokenizer"],
                 "train": vars(train_cfg), "pipeline_stages": args.pipeline_stages, "world_size": dist.world_size()}

    def save(step: int) -> None:
        if args.schedule:  # issue 27: every task's position
            now = dataset.position_state(dataset.positions_after(position, start_step, step, train_cfg, dp_size))
        else:
            now = advance(position, (step - start_step) * train_cfg.accumulation_steps, train_cfg.batch_size, dp_size,
                          len(dataset)).to_dict()
        engine.save(str(out), step, dict(run_state, step=step, data_position=dict(
            now, batch_size=train_cfg.batch_size, accumulation_steps=train_cfg.accumulation_steps,
            data_parallel_size=dp_size)))

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
        with writing(out / "model", what="model directory", removed=True), atomic_path(out / "model") as tmp:
            save_model(model, tmp)
        print(f"final: {json.dumps(record)}\nwrote {out / 'model'} (and checkpoints in {out})", flush=True)
    dist.barrier()
    return 0
