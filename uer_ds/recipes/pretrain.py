"""Pre-training as named steps: plan -> launch -> build -> run -> export (`uer-ds pretrain`).

- plan: the flags read into typed options, checked, and everything a bad input can stop read before any
  process starts: the dataset (or ERNIE 2.0's schedule), the model config, the pre-trained weights, the
  ds_config (uer_ds.engine.ds_config.choose_ds_config).
- launch: UER-py's --world_size/--gpu_ranks start this machine's processes (each runs the recipe again).
- build: in each process, under the output's lock on rank 0: the ranks meet, the data and the resume point
  are checked, the engine is built (and the checkpoint loaded with --resume).
- run: uer_ds.train.train with a DataCheckpoint saving where the data stands at each checkpoint.
- export: rank 0 gathers the last checkpoint into the final model directory.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from uer_ds.config import EngineConfig, ModelConfig, OutputConfig, TrainConfig, train_config_from_args
from uer_ds.config.options import option, options_from_args
from uer_ds.recipes.inputs import job_fingerprint, resolve_config_default, tokenizer_from_args, with_sub_vocab


@dataclass(frozen=True)
class PretrainOptions:
    """What `uer-ds pretrain` trains on and starts from."""

    dataset_path: Optional[str] = option("dataset prefix written by `uer-ds preprocess` (or --schedule)", default=None)
    schedule: Optional[str] = option(
        "ERNIE 2.0's continual multi-task pre-training: a JSON schedule of tasks (datasets) and stages "
        "(uer_ds/data/schedule.py), instead of --dataset_path", default=None)
    pretrained_model_path: Optional[str] = option(
        "initial weights: a model directory, a uer_ds checkpoint directory or one of its global_step<N> tags, a "
        ".safetensors/.bin file, or a UER-py/TencentPretrain .bin (converted in memory)", default=None)
    allow_partial_load: bool = option(
        "load a pretrained model whose keys do not all match (reported), instead of failing", default=False)
    num_workers: int = option("DataLoader worker processes per rank", default=1)


@dataclass(frozen=True)
class LaunchOptions:
    """UER-py's own launch flags; `deepspeed [--hostfile H] --module uer_ds pretrain ...` is the other way."""

    world_size: Optional[int] = option("processes in the whole job (UER-py's meaning; default 1)", default=None)
    gpu_ranks: list[int] = option(
        "the global ranks this machine runs, one process each on local devices 0, 1, ...; with --world_size 1, the "
        "one device to use", default_factory=list, nargs="+")
    master_ip: Optional[str] = option(
        "tcp://HOST:PORT of rank 0, the same on every machine (default: this machine, a free port)", default=None)
    backend: Optional[str] = option("process-group backend (default: nccl on GPUs, gloo on CPUs)", default=None,
                                    choices=("nccl", "gloo"))


@dataclass(frozen=True)
class MaskingOptions:
    """UER-py's pretrain.py masking flags; uer_ds records masking at preprocessing (see apply_masking)."""

    dynamic_masking: Optional[bool] = option("checked against the dataset (preprocess --dynamic_masking)",
                                             default=None)
    whole_word_masking: Optional[bool] = option(
        "whole-word masking: applied at training time to a dynamic-masking dataset whose index has word "
        "boundaries; otherwise it must match the dataset", default=None)
    span_masking: Optional[bool] = option(
        "span masking: applied at training time to a dynamic-masking dataset; otherwise it must match the dataset",
        default=None)
    span_geo_prob: Optional[float] = option("span length distribution (with --span_masking)", default=None)
    span_max_length: Optional[int] = option("longest span (with --span_masking)", default=None)

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class PretrainPlan:
    """What plan() read and checked; build/run/export take it.  `args` stays for the job's fingerprint
    (every flag, compared between ranks) and the model-config flags."""

    args: argparse.Namespace
    options: PretrainOptions
    engine: EngineConfig
    output: OutputConfig
    launch: LaunchOptions
    train: TrainConfig
    dataset: Any  # PretrainDataset, or ScheduleData with --schedule
    cfg: ModelConfig
    tokenizer: Any
    ds_config: dict
    ds_source: str
    pretrained: Optional[tuple[dict, list[str]]]
    notes: list[str] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return Path(self.output.output_model_path)


def main(args: argparse.Namespace) -> int:
    """`uer-ds pretrain`: plan, then launch this machine's processes or run the job in this one."""
    plan = plan_run(args)
    launched = launch(plan)
    if launched is not None:
        return launched
    lock = None
    if os.environ.get("RANK", "0") == "0":  # one writer per output: rank 0 holds the lock for the whole job
        from uer_ds.outputs import lock_output

        command = " ".join(["uer-ds", *(args.command_argv or ["pretrain"])])
        lock = lock_output(plan.output.output_model_path, "--output_model_path", command)
        plan.notes += [line for line in [lock.note("--output_model_path", plan.output.output_model_path)] if line]
    try:
        return run_job(plan)
    finally:
        if lock is not None:
            lock.release()


# ---- plan ----------------------------------------------------------------------------------------
def plan_run(args: argparse.Namespace) -> PretrainPlan:
    """Read the flags into options and check everything a bad input can stop, before any process starts."""
    from uer_ds.engine.ds_config import choose_ds_config, load_ds_config
    from uer_ds.recipes.pretrain_data import open_data

    options, output = options_from_args(PretrainOptions, args), options_from_args(OutputConfig, args)
    engine, launch_opts = options_from_args(EngineConfig, args), options_from_args(LaunchOptions, args)
    train_cfg = train_config_from_args(args)
    if (options.schedule is None) == (options.dataset_path is None):
        raise ValueError("give --dataset_path (one dataset) or --schedule (ERNIE 2.0's multi-task schedule), not both")
    _check_stop(output.stop_after_steps, train_cfg.total_steps)
    source = model_source(options, output, args.config_path)
    base, config_note, config_path = resolve_config_default(args.config_path, source)
    notes = [config_note] if config_note else []
    tokenizer = tokenizer_from_args(args)
    subwords = getattr(tokenizer, "subwords", None) if args.sub_vocab_path else None
    dataset, train_cfg, data_notes = open_data(options, engine, train_cfg, subwords, options_from_args(MaskingOptions, args))
    notes += data_notes
    if options.schedule:
        _check_stop(output.stop_after_steps, train_cfg.total_steps, "the schedule has")
    cfg = model_config(args, dataset.meta, subwords, base, config_path, engine.pipeline_stages)
    # the pre-trained weights are read and checked against the config before any process starts
    pretrained = read_pretrained(source, cfg, options) if options.pretrained_model_path and not output.resume else None
    world = launch_opts.world_size or int(os.environ.get("WORLD_SIZE", "1"))
    ds_name, ds_notes = choose_ds_config(engine, cfg, world, int(dataset.meta["seq_length"]))
    ds_config, ds_source = load_ds_config(ds_name)  # bad input fails here, before any process starts
    return PretrainPlan(args, options, engine, output, launch_opts, train_cfg, dataset, cfg, tokenizer, ds_config,
                        ds_source, pretrained, notes + ds_notes)


def _check_stop(stop_after: Optional[int], total: int, what: Optional[str] = None) -> None:
    if stop_after is None or 0 < stop_after <= total:
        return
    if what:
        raise ValueError(f"--stop_after_steps has value {stop_after}: {what} {total} steps")
    raise ValueError(f"--stop_after_steps has value {stop_after}: must be in [1, --total_steps ({total})]")


def model_config(args: argparse.Namespace, meta: dict, subwords, base: Optional[ModelConfig],
                 config_path: Optional[str], pipeline_stages: int) -> ModelConfig:
    """The model config of the flags over the JSON (or the starting model's own config), with the head
    sizes the dataset fixes and its vocabulary size, validated once."""
    from uer_ds.config import model_config_from_args

    # the head sizes a dataset fixes (ERNIE 2.0's sentence_reorder_segments, discourse_labels_num) and a
    # schedule's targets (issue 27), merged like flags and validated once
    fixed = dict(meta.get("head_config") or {}, **({"target": list(meta["targets"])} if "targets" in meta else {}))
    cfg = model_config_from_args(args, base=base, config_path=config_path, **fixed)
    vocab_size = int(meta["vocab_size"])
    if cfg.vocab_size not in (0, vocab_size):
        raise ValueError(f"vocab_size {cfg.vocab_size} in the model config disagrees with the dataset's "
                         f"vocabulary ({vocab_size})")
    cfg = with_sub_vocab(cfg.replace(vocab_size=vocab_size), subwords)
    if cfg.subword_type != "none" and subwords is None:
        raise ValueError(f"subword_type '{cfg.subword_type}' needs the character vocabulary: give --sub_vocab_path "
                         "(and --vocab_path, --tokenizer word)")
    if cfg.subword_type != "none" and pipeline_stages > 1:
        raise ValueError("subword features with --pipeline_stages > 1: the pipeline's first stage receives only "
                         "src and seg, not the character ids; train with --pipeline_stages 1")
    return cfg


def model_source(options: PretrainOptions, output: OutputConfig, config_path: Optional[str]):
    """The model a run starts from, as the resolver recognises it: --pretrained_model_path, or with --resume
    the run in --output_model_path (for its config); None without one."""
    from uer_ds.convert.resolve import resolve_model

    if output.resume:
        out = Path(output.output_model_path)
        return resolve_model(out, "--output_model_path", kinds=("run",)) if (out / "latest").is_file() else None
    if options.pretrained_model_path:
        return resolve_model(options.pretrained_model_path, "--pretrained_model_path", config_path=config_path)
    return None


def read_pretrained(source, cfg: ModelConfig, options: PretrainOptions) -> tuple[dict, list[str]]:
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
    path = options.pretrained_model_path
    try:
        notes += check_pretrained(state, build_model(cfg, device="meta"), path, options.allow_partial_load)
    except ValueError as err:
        raise ValueError(f"{err}.{format_hint(state, path)}") from None
    return state, notes


# ---- launch --------------------------------------------------------------------------------------
def launch(plan: PretrainPlan) -> Optional[int]:
    """UER-py's --world_size/--gpu_ranks/--master_ip/--backend: start this machine's processes and
    return their exit status, or set up this one process (None: carry on here)."""
    import torch

    from uer_ds.engine import dist

    opts = plan.launch
    local = dist.plan_local_launch(opts.world_size, opts.gpu_ranks, opts.master_ip, opts.backend,
                                   torch.cuda.is_available())
    if local is None:
        return None
    if dist.in_launched_process():  # a process we (or another launcher) started
        if int(os.environ.get("WORLD_SIZE", "1")) != local.world_size:
            raise ValueError(f"--world_size {local.world_size}: the launcher that started this process made a job of "
                             f"{os.environ.get('WORLD_SIZE')}; under `deepspeed ...` leave out UER-py's launch flags")
        return None
    if local.spawns:
        print(f"uer-ds pretrain: starting global rank(s) {list(local.ranks)} of {local.world_size} on this machine "
              f"(rank 0 at {local.master_addr}:{local.master_port})", flush=True)
        return dist.launch_local_ranks(local, plan.args.command_argv)
    os.environ.update(dist.launch_env(local, 0))
    return None


# ---- build -> run -> export ------------------------------------------------------------------------
def run_job(plan: PretrainPlan) -> int:
    """The job in this process (under the output's lock on rank 0): build, train, export."""
    built = build(plan)
    record = train_run(plan, built)
    last = plan.output.stop_after_steps or plan.train.total_steps
    if last < plan.train.total_steps:
        from uer_ds.engine import dist

        if dist.is_rank0():
            print(f"stopped after step {last} of {plan.train.total_steps}: {json.dumps(record)}\n"
                  f"checkpoint in {plan.out}; continue with the same command and --resume", flush=True)
        return 0
    export(plan, record)
    return 0


@dataclass
class Built:
    """What build() made: the engine, the step it starts after, where the data starts, the resume point."""

    engine: Any
    start_step: int
    position: Any
    resume: Any


def build(plan: PretrainPlan) -> Built:
    """The ranks meet (checking they run one job), the data and the resume point are checked, the engine
    is built, and with --resume the checkpoint loaded (the new schedule applied from there)."""
    from uer_ds.compat import accepted_notes
    from uer_ds.engine import build_engine, checkpoint as ckpt, dist
    from uer_ds.engine.data import DataPosition
    from uer_ds.models import Model
    from uer_ds.recipes.pretrain_data import check_against_dataset, load_resume_point, resume_point

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # several processes: meet the others, check they run this job
        dist.init_distributed(plan.engine.dist_timeout, fingerprint(plan))
    rank0 = os.environ.get("RANK", "0") == "0"
    for line in plan.notes + accepted_notes(plan.args) if rank0 else []:
        print(line, flush=True)
    cfg, dataset, out = plan.cfg, plan.dataset, plan.out
    if plan.options.schedule:  # issue 27
        dataset.check_model(cfg)
        dataset.check_tokenizer(plan.tokenizer)
    else:
        check_against_dataset(cfg, dataset.meta, plan.options.dataset_path, plan.tokenizer)
    resume = (resume_point(out, cfg, dataset, plan.train, plan.options.dataset_path, plan.engine.pipeline_stages)
              if plan.output.resume else None)
    if resume is None and ckpt.is_checkpoint_dir(out):
        raise FileExistsError(f"{out} already holds a checkpoint: pass --resume to continue it, or choose a new "
                              "--output_model_path")
    pretrained = None
    if plan.pretrained is not None:
        pretrained, pretrained_notes = plan.pretrained
        for line in pretrained_notes if rank0 else []:
            print(f"pretrained: {line}", flush=True)
    ds_config = plan.ds_config
    if resume is not None and resume.universal:  # another number of processes: through the universal checkpoint
        ds_config = dict(ds_config, checkpoint=dict(ds_config.get("checkpoint", {}), load_universal=True))
    engine = build_engine(ds_config, plan.ds_source, plan.train, cfg, lambda: Model(cfg), pretrained,
                          pipeline_stages=plan.engine.pipeline_stages,
                          activation_checkpointing=plan.engine.activation_checkpointing)
    if plan.engine.compile:
        engine.compile()
    # one shape for every batch: a compiled graph, or the pipeline's stage-to-stage buffers
    dataset.static_shapes = plan.engine.compile or plan.engine.pipeline_stages > 1
    position = dataset.start_positions() if plan.options.schedule else DataPosition()
    built = Built(engine, 0, position, resume)
    if resume is not None:
        built.start_step, built.position = load_resume_point(engine, out, resume, dataset)
        _reschedule(engine, plan.train, built.start_step, resume.changes)
    return built


def _reschedule(engine, train_cfg: TrainConfig, start_step: int, changes: dict[str, tuple]) -> None:
    """A resume with a new schedule (--learning_rate, ...): applied from the resume step, said on rank 0."""
    from uer_ds.engine import dist

    if not changes:
        return
    before, now = engine.reschedule(train_cfg, start_step)
    if dist.is_rank0():
        print(f"--resume: {', '.join(f'{flag} {a} -> {b}' for flag, (a, b) in changes.items())}: the new "
              f"schedule applies from step {start_step + 1}, whose learning rate is {now:.6g} (the saved "
              f"schedule's: {before:.6g})", flush=True)


def train_run(plan: PretrainPlan, built: Built) -> dict:
    """uer_ds.train.train from the start step, saving the data position with each checkpoint; returns the
    last report's record."""
    from uer_ds.engine import describe, dist
    from uer_ds.engine.data import batch_iterator
    from uer_ds.recipes.pretrain_data import DataCheckpoint
    from uer_ds.train import Reporter, train

    engine, train_cfg, dataset, start = built.engine, plan.train, plan.dataset, built.start_step
    if dist.is_rank0():
        print(f"uer-ds pretrain: {describe(engine)}; steps {start + 1}..{train_cfg.total_steps}", flush=True)
    rank, dp_size, workers = engine.data_parallel_rank, engine.data_parallel_size, plan.options.num_workers
    if plan.options.schedule:  # issue 27: each step one task of the plan
        batches = dataset.batches(train_cfg, rank, dp_size, start, built.position, workers)
    else:
        batches = batch_iterator(dataset, train_cfg, rank, dp_size, built.position, workers)
    output = plan.output
    reporter = Reporter(tuple(plan.cfg.target), output.metrics_path, output.tensorboard(), train_cfg.total_steps,
                        start, show_progress=not output.no_progress)
    run_state = {"dataset_path": str(plan.options.dataset_path), "dataset": dataset.meta,
                 "tokenizer": dataset.meta["tokenizer"], "train": vars(train_cfg),
                 "pipeline_stages": plan.engine.pipeline_stages, "world_size": dist.world_size()}
    save = DataCheckpoint(engine, plan.out, train_cfg, dataset, built.position, start, run_state,
                          schedule=bool(plan.options.schedule))
    if output.stop_after_steps is not None and output.stop_after_steps <= start:
        raise ValueError(f"--stop_after_steps {output.stop_after_steps}: the checkpoint in {plan.out} is already at "
                         f"step {start}")
    return train(engine, batches, train_cfg, start, reporter, save, stop_after=output.stop_after_steps)


def export(plan: PretrainPlan, record: dict) -> None:
    """Rank 0: the last checkpoint gathered into one fp32 model directory, <output_model_path>/model."""
    from uer_ds.atomic import atomic_path
    from uer_ds.engine import checkpoint as ckpt, dist
    from uer_ds.models import save_model
    from uer_ds.models.io import model_from_state
    from uer_ds.outputs import writing

    out = plan.out
    if dist.is_rank0():
        final_cfg, state = ckpt.export_state(out)
        model = model_from_state(final_cfg, state, str(out))
        with writing(out / "model", what="model directory", removed=True), atomic_path(out / "model") as tmp:
            save_model(model, tmp)
        print(f"final: {json.dumps(record)}\nwrote {out / 'model'} (and checkpoints in {out})", flush=True)
    dist.barrier()


def fingerprint(plan: PretrainPlan) -> dict:
    """This rank's description of the job, compared between ranks before the first collective."""
    from uer_ds.recipes.pretrain_data import dataset_identity_of

    return job_fingerprint(plan.args, **{"model config": plan.cfg.to_dict(),
                                         "dataset": dataset_identity_of(plan), "ds_config": plan.ds_config})


__all__ = ["Built", "LaunchOptions", "MaskingOptions", "PretrainOptions", "PretrainPlan", "build", "export",
           "launch", "main", "model_config", "plan_run", "run_job", "train_run"]
