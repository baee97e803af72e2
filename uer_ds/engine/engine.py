"""The object the training loop drives: `train_step`, `evaluate`, `save`, `load`.

Two implementations behind one interface, chosen once in `build_engine` — never by an `if` in the loop:
ZeRO 0-3 (with optional CPU offload) over a single-device model, and DeepSpeed's pipeline engine over
a PipelineModule generated from the model's layers.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import deepspeed
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from uer_ds.config import ModelConfig, TrainConfig
from uer_ds.engine import checkpoint as ckpt
from uer_ds.engine import dist
from uer_ds.engine.ds_config import (build_ds_config, describe_precision, offloads_optimizer, offloads_params,
                                     precision, zero_stage)
from uer_ds.engine.recompute import apply_activation_checkpointing
from uer_ds.data.batch import batch_info, forward_kwargs, to_device
from uer_ds.models.model import init_module
from uer_ds.models.targets import TargetResult
from uer_ds.registry import ENCODERS



# ---- statistics -------------------------------------------------------------------------------
@dataclass
class StepStats:
    """One optimizer step's statistics on this rank.

    values: a device tensor (float64), never read during the step: [loss, then per target or head
    name (the engine's `target_names`): loss x denominator, correct, denominator].  values[0] is
    weighted as trained (`Engine.loss_weights`), so its sum over micro-batches and ranks is the
    step's loss; the rest are plain sums (a target's loss over a window is the mean over all its
    predictions: sum(loss x denominator) / sum(denominator)).  bad_step: the step number where the
    loss was not finite, else +inf (a device scalar).  tokens and samples come from BatchInfo on the
    host; lr is the learning rate this step trained with.  The Reporter sums these over a report
    window and reads them back once, at the report step.
    """

    values: Optional[torch.Tensor] = None
    bad_step: Optional[torch.Tensor] = None
    tokens: int = 0
    samples: int = 0
    lr: float = 0.0


def stats_vector(result: TargetResult, weights: dict[str, Any], names: tuple[str, ...],
                 zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the weighted loss to train on (scalar), the StepStats vector of one micro-batch) - device ops only.

    weights: name -> the factor that turns that target's mean loss into its share of the step's loss.
    """
    parts = result.parts or {names[0]: result}
    total = sum(part.loss * weights[name] for name, part in parts.items())
    entries = [total.detach()]
    for name in names:
        part = parts.get(name)
        entries += [zero, zero, zero] if part is None else \
            [part.loss.detach() * part.denominator, part.correct, part.denominator]
    return total, torch.stack([e.to(torch.float64) for e in entries])


def loss_weights(infos: list[Any], names: tuple[str, ...], global_counts: Optional[list[Any]],
                 data_parallel_size: int) -> list[dict[str, Any]]:
    """Per micro-batch: target or head name -> the factor that turns its mean loss into its share of the
    step's loss: n / N, with n the micro-batch's labelled predictions (its BatchInfo) and N those of the
    whole global batch (every micro-batch of every data-parallel rank: `global_counts`, in `names` order;
    host numbers or device scalars).  So batch 8, batch 4 x 2 accumulation and 2 ranks x 4 give the same
    loss and gradients: the normalisation of torchtitan and of Hugging Face Transformers since 2024.
    Without counts (global_counts None: batches made by hand) the factor is 1 / (micro-batches x ranks),
    DeepSpeed's plain average of the micro-batches' means."""
    if global_counts is None:
        return [{name: 1.0 / (len(infos) * data_parallel_size) for name in names} for _ in infos]
    return [{name: info.predictions.get(name, 0) / (max(total, 1) if isinstance(total, (int, float)) else total)
             for name, total in zip(names, global_counts)} for info in infos]


def count_batch(stats: StepStats, batch: dict) -> None:
    """Tokens and samples from the collate function's BatchInfo (host values; no device read).  A batch
    without one (made by hand) is counted from its host tensors."""
    info = batch.get("info")
    if info is None:
        info = batch_info(batch["seg"], {})
    stats.tokens += info.tokens
    stats.samples += info.samples


# ---- schedule and parameter groups --------------------------------------------------------------
def lr_lambda(train: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the peak lr at optimizer step s (UER-py / Hugging Face schedules)."""
    warmup, total = train.warmup_steps, train.total_steps

    def multiplier(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if train.scheduler in ("constant", "constant_with_warmup"):
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if train.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)  # linear

    return multiplier


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and embeddings (p.dim() >= 2), none on biases and norms."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        shape = getattr(param, "ds_shape", param.shape)  # ZeRO-3 partitions flatten parameters
        (decay if len(shape) >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---- the engines --------------------------------------------------------------------------------
class Engine:
    """What train.py sees.  `module` is the trained nn.Module (a DeepSpeed engine wraps it)."""

    target_names: tuple[str, ...] = ("loss",)

    def __init__(self, ds_engine: Any, model_config: Optional[ModelConfig], ds_config: dict) -> None:
        self.ds = ds_engine
        self.model_config = model_config
        self.ds_config = ds_config
        self.device = dist.device()
        # `uer-ds bench overhead` sets a probe: probe.phase(name) is a context manager around each
        # phase of a step (forward, backward, step); None costs nothing
        self.probe: Optional[Any] = None
        self._zero: Optional[torch.Tensor] = None

    def _phase(self, name: str) -> Any:
        return self.probe.phase(name) if self.probe is not None else contextlib.nullcontext()

    # -- steps ---------------------------------------------------------------------------------
    def train_step(self, batches: list[dict], step: int) -> StepStats:
        """One optimizer step over `batches` (the accumulation_steps micro-batches of this rank).
        Never reads the device back: the returned StepStats hold device tensors."""
        raise NotImplementedError

    def loss_weights(self, batches: list[dict]) -> list[dict[str, Any]]:
        """`loss_weights` for this rank's micro-batches, with N summed over the data-parallel ranks by one
        all-reduce of a small tensor on the engine's device, left there (no host synchronisation); with one
        rank N is a host number."""
        infos = [b.get("info") for b in batches]
        if any(info is None for info in infos):
            return loss_weights(infos, self.target_names, None, self.data_parallel_size)
        local = [sum(info.predictions.get(name, 0) for info in infos) for name in self.target_names]
        if self.data_parallel_size == 1:
            return loss_weights(infos, self.target_names, local, 1)
        total = torch.tensor(local, dtype=torch.float64, device=self.device)
        dist.all_reduce_in_place(total, group=self.data_parallel_group)
        return loss_weights(infos, self.target_names, list(total.clamp(min=1).unbind()), self.data_parallel_size)

    def _micro_stats(self, stats: StepStats, result: TargetResult, weights: dict[str, Any],
                     step: int) -> torch.Tensor:
        """Add one micro-batch's result to `stats` (device ops); returns the loss to train on, scaled
        so that DeepSpeed's division by accumulation steps and averaging over ranks leave exactly the
        weighted sum."""
        if self._zero is None:
            self._zero = torch.zeros((), dtype=torch.float64, device=result.loss.device)
        total, vector = stats_vector(result, weights, self.target_names, self._zero)
        stats.values = vector if stats.values is None else stats.values + vector
        bad = torch.where(torch.isfinite(vector[0]), math.inf, float(step))
        stats.bad_step = bad if stats.bad_step is None else torch.minimum(stats.bad_step, bad)
        return total * (self.ds.gradient_accumulation_steps() * self.data_parallel_size)

    @torch.no_grad()
    def evaluate(self, batch: dict) -> TargetResult:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, batch: dict) -> Any:
        """The module's predictions for a batch (its forward with predict=True: logits, no loss).
        Collective under ZeRO-3: every rank calls it the same number of times."""
        raise NotImplementedError

    def gathered_state_dict(self) -> Optional[dict[str, torch.Tensor]]:
        """The whole model's weights, fp32 on CPU, on rank 0 (None on other ranks).  Collective.  With
        bf16/fp16 these are the optimizer's fp32 master weights (what DeepSpeed's zero_to_fp32 gives for
        a checkpoint saved at the same step), not the module's 16-bit copy cast up."""
        raise NotImplementedError

    def nonfinite_parameters(self) -> torch.Tensor:
        """How many of this rank's parameter tensors (under ZeRO-3: its partitions, padding left out) hold a NaN
        or an inf: a float64 scalar on the device, not read back (the caller reads it once, with other numbers)."""
        flags = []
        for param in self.ds.module.parameters():
            local = getattr(param, "ds_tensor", None)  # ZeRO-3: the parameter itself is an empty placeholder
            if local is None:
                local = param
            else:  # partitions are padded to one size on every rank; the padding is never written (garbage)
                start = torch.distributed.get_rank(group=param.ds_process_group) * local.numel()
                local = local.view(-1)[:max(0, min(local.numel(), param.ds_numel - start))]
            if local.numel():
                flags.append(torch.isfinite(local.detach()).all().to(self.device))
        if not flags:
            return torch.zeros((), dtype=torch.float64, device=self.device)
        return (~torch.stack(flags)).sum().to(torch.float64)

    # -- state ---------------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return float(self.ds.get_lr()[0])

    @property
    def grad_norm(self) -> Optional[float]:
        norm = self.ds.get_global_grad_norm()
        return None if norm is None else float(norm)

    @property
    def loss_scale(self) -> Optional[float]:
        if precision(self.ds_config) != "fp16":
            return None
        scale = getattr(self.ds.optimizer, "cur_scale", None)
        return None if scale is None else float(scale)

    @property
    def skipped_steps(self) -> int:
        return int(getattr(self.ds, "skipped_steps", 0))

    @property
    def data_parallel_rank(self) -> int:
        return dist.rank()

    @property
    def data_parallel_size(self) -> int:
        return dist.world_size()

    @property
    def data_parallel_group(self) -> Any:
        return None  # the default group: every rank holds a replica

    def compile(self, backend: Optional[str] = None) -> None:
        """torch.compile the model through DeepSpeed's `engine.compile()` (inductor unless `backend`).
        A recurrent encoder (lstm, gru, their two-way forms, rcnn, crnn) needs dynamo's `allow_rnn`,
        else each torch.lstm/gru call is a graph break; it is set for those models."""
        cfg = self.model_config
        if cfg is not None and ENCODERS[cfg.encoder].recurrent:
            import torch._dynamo

            torch._dynamo.config.allow_rnn = True
        self.ds.compile(**({"backend": backend} if backend else {}))

    def save(self, directory: str, step: int, state: dict) -> Path:
        """DeepSpeed state + our metadata under `global_step<step>`, then `latest` (last, atomic).  A
        directory of that name that `latest` does not name is what an interrupted save left (perhaps by
        another number of ranks, whose extra shard files a later load would take for its own): it is
        removed first.  A failed save removes what it wrote of the tag (`latest` names the previous one);
        a full disk raises uer_ds.outputs.NoSpaceError naming the path."""
        from uer_ds.outputs import writing

        tag = ckpt.tag_for(step)
        tag_dir = Path(directory) / tag
        if dist.is_rank0():
            ckpt.remove_incomplete(Path(directory), tag)
        dist.barrier()
        # on any failure (a full disk: "no space left", the path) the incomplete tag goes, `latest` stays
        partial = ([] if tag_dir.exists() else [tag_dir]) + [Path(directory) / f".{ckpt.LATEST}.tmp"]
        with writing(tag_dir, partial, what=f"checkpoint {tag}"):
            self.ds.save_checkpoint(directory, tag=tag, client_state={"uer_ds": state}, save_latest=False)
            ckpt.save_rng_state(tag_dir, dist.rank())
            dist.barrier()
            if dist.is_rank0():
                ckpt.write_metadata(tag_dir, self.model_config, dict(state, ds_config=self.ds_config))
                ckpt.write_latest(directory, tag)
            dist.barrier()
        return tag_dir

    def reschedule(self, train: TrainConfig, step: int) -> tuple[float, float]:
        """After a resume (`load`): follow `train`'s schedule (peak learning rate, warm-up, total steps,
        scheduler) from `step` on, instead of the saved one, whose peak rate came back with the optimizer's
        and scheduler's state.  The next step trains with what an uninterrupted run of `train` uses at
        step + 1.  Returns (the rate the saved schedule gives step + 1, the rate it gets now)."""
        optimizer, scheduler = self.ds.optimizer, self.ds.lr_scheduler
        multiplier = lr_lambda(train)(step)  # LambdaLR: after `step` optimizer steps, last_epoch is step
        before = float(optimizer.param_groups[0]["lr"])
        for group in optimizer.param_groups:
            group["initial_lr"] = train.learning_rate
            group["lr"] = train.learning_rate * multiplier
        scheduler.base_lrs = [train.learning_rate] * len(optimizer.param_groups)
        scheduler.lr_lambdas = [lr_lambda(train)] * len(optimizer.param_groups)
        scheduler.last_epoch = step
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # noqa: SLF001 (get_last_lr)
        return before, train.learning_rate * multiplier

    def load(self, directory: str, tag: Optional[str] = None) -> dict:
        """Resume from `directory` (its `latest`, or `tag`); returns the saved uer_ds state."""
        tag = tag or ckpt.read_latest(directory)
        path, client = self.ds.load_checkpoint(directory, tag=tag, load_optimizer_states=True,
                                               load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"{directory}: DeepSpeed could not load checkpoint '{tag}'")
        ckpt.load_rng_state(Path(directory) / tag, dist.rank())
        return client.get("uer_ds", {})


class ZeroEngine(Engine):
    """ZeRO stages 0-3 (data parallel), optional CPU offload."""

    def __init__(self, ds_engine: Any, model_config: Optional[ModelConfig], ds_config: dict) -> None:
        super().__init__(ds_engine, model_config, ds_config)
        names = getattr(ds_engine.module, "target", None)
        self.target_names = tuple(names) if names is not None else ("loss",)
        self._norm: Optional[torch.Tensor] = None
        if not hasattr(ds_engine.optimizer, "_global_grad_norm"):
            # no ZeRO, no fp16 wrapper: DeepSpeed clips with its own per-parameter loop and drops the
            # norm; clip with torch's multi-tensor (foreach) kernels instead and keep the norm on the
            # device (read at report steps only)
            params = [p for p in ds_engine.module.parameters() if p.requires_grad]

            def clip_and_record() -> None:
                self._norm = torch.nn.utils.clip_grad_norm_(params, ds_engine.gradient_clipping(), foreach=True)

            ds_engine.clip_fp32_gradients = clip_and_record
        if zero_stage(ds_config) == 0 and dist.world_size() == 1:
            # one replica: DeepSpeed would still run its all-reduce fallback (flattening every gradient)
            ds_engine.enable_backward_allreduce = False

    @property
    def grad_norm(self) -> Optional[float]:
        norm = self.ds.get_global_grad_norm()
        if norm is None:
            norm = self._norm
        return None if norm is None else float(norm)

    def train_step(self, batches: list[dict], step: int) -> StepStats:
        stats = StepStats(lr=self.lr)
        self.ds.train()
        for batch, weights in zip(batches, self.loss_weights(batches)):
            count_batch(stats, batch)
            batch = to_device(batch, self.device)
            with self._phase("forward"):
                # padded: the batch's Packing (moved with the batch) or whether it has padding
                result = self.ds(batch["src"], batch["tgt"], batch["seg"], **forward_kwargs(batch.get("info")))
                loss = self._micro_stats(stats, result, weights, step)
            with self._phase("backward"):
                self.ds.backward(loss)
            with self._phase("step"):
                self.ds.step()  # DeepSpeed applies the update at the accumulation boundary
        return stats

    @torch.no_grad()
    def evaluate(self, batch: dict) -> TargetResult:
        self.ds.eval()
        batch = to_device(batch, self.device)
        return self.ds(batch["src"], batch["tgt"], batch["seg"])

    @torch.no_grad()
    def predict(self, batch: dict) -> Any:
        self.ds.eval()
        batch = to_device(batch, self.device)
        return self.ds(batch["src"], batch["tgt"], batch["seg"], predict=True)

    def gathered_state_dict(self) -> Optional[dict[str, torch.Tensor]]:
        module = self.ds.module
        if zero_stage(self.ds_config) != 3:
            state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
                     for k, v in module.state_dict().items()} if dist.is_rank0() else None
        else:
            from deepspeed.runtime.zero import GatheredParameters

            state = {}
            for prefix, sub in module.named_modules():
                own = list(sub.named_parameters(recurse=False))
                with GatheredParameters([p for _, p in own], modifier_rank=None):
                    if dist.is_rank0():
                        for name, param in own:
                            state[f"{prefix}.{name}" if prefix else name] = \
                                param.detach().to("cpu", torch.float32).clone()
                if dist.is_rank0():
                    for name, buf in sub.named_buffers(recurse=False):
                        if name not in sub._non_persistent_buffers_set:
                            state[f"{prefix}.{name}" if prefix else name] = buf.detach().cpu().clone()
            state = state if dist.is_rank0() else None
        if precision(self.ds_config) != "fp32":
            self._master_weights(state)
        return state

    def _master_weights(self, state: Optional[dict[str, torch.Tensor]]) -> None:
        """Replace the 16-bit weights in `state` (rank 0) by the optimizer's fp32 master weights, with
        DeepSpeed's own accessor (collective: every rank calls it for every parameter).  Measured (issue 30):
        a zero2_bf16 fine-tuning's best model was off the master weights by ~4e-3 before this."""
        from deepspeed.utils import safe_get_full_fp32_param

        from uer_ds.models.io import aliased_keys

        module = self.ds.module
        for name, param in module.named_parameters():  # one name per tensor (tied ones: the first)
            full = safe_get_full_fp32_param(param)
            if full is not None and state is not None:
                state[name] = full.detach().to("cpu", torch.float32).clone()
        if state is not None:
            for alias, canonical in aliased_keys(module).items():
                state[alias] = state[canonical]


class PipeEngine(Engine):
    """DeepSpeed's pipeline engine: one train_batch per optimizer step (micro-batches = accumulation)."""

    def __init__(self, ds_engine: Any, model_config: ModelConfig, ds_config: dict) -> None:
        super().__init__(ds_engine, model_config, ds_config)
        self.target_names = tuple(model_config.target)
        self._shape: Optional[tuple[int, ...]] = None

    @property
    def data_parallel_rank(self) -> int:
        return self.ds.grid.get_data_parallel_rank()

    @property
    def data_parallel_size(self) -> int:
        return self.ds.grid.get_data_parallel_world_size()

    @property
    def data_parallel_group(self) -> Any:
        return self.ds.grid.get_data_parallel_group()

    def train_step(self, batches: list[dict], step: int) -> StepStats:
        from uer_ds.engine.pipeline import pipeline_batch

        for batch in batches:  # DeepSpeed sizes its stage-to-stage buffers once, from the first micro-batch
            shape = tuple(batch["src"].shape)
            if self._shape is None:
                self._shape = shape
            elif shape != self._shape:
                raise ValueError(f"the pipeline engine needs every micro-batch in one shape: got {shape} after "
                                 f"{self._shape}; pad batches to the sequence length (PretrainDataset.static_shapes)")
        stats = StepStats(lr=self.lr)
        if self.ds.is_first_stage():
            for batch in batches:
                count_batch(stats, batch)
        weights = self.loss_weights(batches)
        loss_fn = self.ds.module.loss_fn
        if loss_fn is not None:
            loss_fn.results.clear()
            loss_fn.weigh = lambda i, result: self._micro_stats(stats, result, weights[i], step)
        micro = iter([to_device(pipeline_batch(b, self.target_names), self.device) for b in batches])
        self.ds.train_batch(data_iter=micro)
        return stats

    @torch.no_grad()
    def evaluate(self, batch: dict) -> TargetResult:
        raise NotImplementedError("evaluation runs on an exported model, not inside the pipeline engine")


# ---- construction -------------------------------------------------------------------------------
def _zero3_init_module(model: nn.Module, state: Optional[dict]) -> None:
    """Give a model built under deepspeed.zero.Init its values, one gathered module at a time:
    from `state` (a Model state dict) when given, else the model's own initialisation on rank 0."""
    from deepspeed.runtime.zero import GatheredParameters

    for prefix, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        with GatheredParameters(own, modifier_rank=0):
            if dist.is_rank0():
                init_module(module)
                for name, param in module.named_parameters(recurse=False):
                    key = f"{prefix}.{name}" if prefix else name
                    if state is not None and key in state:
                        param.data.copy_(state[key].to(param.dtype))


def build_engine(ds_config: dict, source: str, train: TrainConfig, model_config: Optional[ModelConfig],
                 make_model: Callable[[], nn.Module], pretrained_state: Optional[dict] = None,
                 pipeline_stages: int = 1, activation_checkpointing: bool = False,
                 optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
                 as_on_gpu: bool = False) -> Engine:
    """Start the job, build the model where the ds_config wants it, and wrap it in DeepSpeed.

    make_model() builds the module with parameters but without values (they are set here: from
    pretrained_state, checked by the caller, or by each module's initialisation).
    optimizer(param_groups, lr=, betas=, eps=, weight_decay=) replaces the ds_config's optimizer (the
    same hyper-parameters): `uer-ds bench overhead` passes a stand-in for DeepSpeed's CUDA FusedAdam and
    as_on_gpu=True, so that a CPU run takes the DeepSpeed path a GPU run takes.
    """
    dist.init_distributed()
    world = dist.world_size()
    if pipeline_stages > 1 and world % pipeline_stages:
        raise ValueError(f"--pipeline_stages {pipeline_stages} must divide the number of processes ({world})")
    on_cpu = not torch.cuda.is_available() and not as_on_gpu
    full = build_ds_config(ds_config, source, train, data_parallel_size=world // pipeline_stages,
                           pipeline_stages=pipeline_stages, on_cpu=on_cpu)
    client_optimizer = None
    if optimizer is not None and not offloads_optimizer(full):  # offload keeps DeepSpeed's CPU Adam
        hyper = {k: v for k, v in full.pop("optimizer")["params"].items() if k not in ("torch_adam", "fused", "foreach")}
        client_optimizer = lambda groups: optimizer(groups, **hyper)  # noqa: E731
        full["zero_allow_untested_optimizer"] = True
    torch.manual_seed(train.seed)
    scheduler = lambda optimizer: LambdaLR(optimizer, lr_lambda(train))  # noqa: E731

    if pipeline_stages > 1:
        from uer_ds.engine.pipeline import UerPipelineModule

        module = UerPipelineModule(model_config, pipeline_stages,
                                   activation_checkpoint_interval=1 if activation_checkpointing else 0,
                                   seed=train.seed)
        if pretrained_state is not None:
            module.load_model_state(pretrained_state)
        engine_cls: type[Engine] = PipeEngine
    elif zero_stage(full) == 3:
        with deepspeed.zero.Init(config_dict_or_path=full, remote_device="cpu" if offloads_params(full) else None):
            module = make_model()
        _zero3_init_module(module, pretrained_state)
        engine_cls = ZeroEngine
    else:
        module = make_model()
        module.apply(init_module)
        if pretrained_state is not None:
            module.load_state_dict(pretrained_state, strict=False)
        engine_cls = ZeroEngine
    tie = getattr(module, "tie_weights", None)
    if callable(tie):
        tie()
    if activation_checkpointing and pipeline_stages == 1:
        apply_activation_checkpointing(module)
    ds_engine, _, _, _ = deepspeed.initialize(model=module, model_parameters=parameter_groups(module, train.weight_decay),
                                              optimizer=client_optimizer, lr_scheduler=scheduler, config=full)
    return engine_cls(ds_engine, model_config, full)


def describe(engine: Engine) -> str:
    cfg = engine.ds_config
    stages = getattr(engine.ds, "num_stages", 1)
    offload = [k for k in ("offload_optimizer", "offload_param")
               if (cfg.get("zero_optimization", {}).get(k) or {}).get("device", "none") != "none"]
    return (f"DeepSpeed ZeRO-{zero_stage(cfg)} {describe_precision(cfg)}, {dist.world_size()} process(es)"
            f"{f', {stages} pipeline stages' if stages > 1 else ''}{', offload: ' + ', '.join(offload) if offload else ''}; "
            f"micro-batch {cfg['train_micro_batch_size_per_gpu']} x accumulation {cfg['gradient_accumulation_steps']}"
            f" -> global batch {cfg['train_batch_size']}")


__all__ = ["Engine", "PipeEngine", "StepStats", "ZeroEngine", "build_engine", "describe", "lr_lambda",
           "parameter_groups"]
