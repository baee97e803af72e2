"""Engine and output options of the training recipes (pre-training and fine-tuning): one dataclass each,
their flags generated from the fields (uer_ds.config.options), as TrainConfig's are.  The ds_config a job
takes without --deepspeed_config is chosen in one place: uer_ds.engine.ds_config.choose_ds_config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from uer_ds.config.options import option

FP16_OPT_LEVELS = ("O0", "O1", "O2", "O3")  # apex's levels, which UER-py passes through


@dataclass(frozen=True)
class EngineConfig:
    """How the DeepSpeed engine runs (not what it trains): the ds_config, pipeline stages, recomputation,
    compilation, UER-py's fp16 switches and the collectives' timeout."""

    deepspeed_config: Optional[str] = option(
        "DeepSpeed JSON (engine settings only) or a shipped name in ds_configs/: zero0..zero3, zero2_offload, "
        "zero3_offload, *_bf16, *_fp16, pipeline (default: follows the job: zero0 for one process, the planner's "
        "ZeRO stage for several)", default=None)
    deepspeed: bool = option("accepted for TencentPretrain compatibility", default=False)
    pipeline_stages: int = option("pipeline-parallel stages (default 1: none)", default=1)
    activation_checkpointing: bool = option("recompute transformer layer activations in backward", default=False)
    compile: bool = option("torch.compile the model (DeepSpeed's engine.compile(), inductor); batches are padded to "
                           "--seq_length so shapes stay static", default=False)
    fp16: bool = option("UER-py's mixed precision: take the fp16 variant of a shipped --deepspeed_config (zero2 -> "
                        "zero2_fp16; DeepSpeed's loss scaling and fp32 master weights)", default=False)
    fp16_opt_level: Optional[str] = option(
        "accepted with --fp16 (apex's level in UER-py); DeepSpeed's fp16 is one mode, close to O2", default=None,
        choices=FP16_OPT_LEVELS)
    dist_timeout: Optional[float] = option(
        "seconds a collective (and the start-up rendezvous of several processes) may wait for the other ranks "
        "before the job fails, naming the rank and host it lost (default 300; DeepSpeed's own is 600, torch's 1800)",
        default=None)


# fine-tuning's help texts where they differ from pre-training's (fine-tuning has no pipeline stages)
FINETUNE_ENGINE_HELP = {
    "deepspeed_config": "DeepSpeed JSON or a shipped name (ds_configs/): zero0..zero3, zero2_offload, zero3_offload, "
                        "*_bf16, *_fp16 (default: follows the job: zero0 for one process, the planner's ZeRO stage for "
                        "several)",
    "activation_checkpointing": "recompute transformer layer activations in backward (less memory)",
    "compile": "torch.compile the model (DeepSpeed's engine.compile(), inductor)",
}


@dataclass(frozen=True)
class OutputConfig:
    """Where a training run writes (rank 0) and how it shows progress; resuming and stopping early."""

    output_model_path: str = option(
        "checkpoint directory: global_step<N>/ tags, 'latest', and the final model in model/", default="",
        required=True)
    resume: bool = option(
        "continue from output_model_path's latest checkpoint; a new --learning_rate, --warmup, --total_steps or "
        "--scheduler applies from the resume step (the run prints the rate before and after); --total_steps must "
        "exceed the saved step", default=False)
    stop_after_steps: Optional[int] = option(
        "end this run after step N with a checkpoint (job time limits; resume with --resume); the schedule still "
        "follows --total_steps", default=None)
    metrics_path: Optional[str] = option("write one JSON line per report step (rank 0)", default=None)
    tensorboard_dir: Optional[str] = option(
        "TensorBoard log directory (default: <output_model_path>/tensorboard)", default=None)
    no_progress: bool = option("no progress bar", default=False)

    def tensorboard(self) -> str:
        """--tensorboard_dir, else <output_model_path>/tensorboard."""
        from pathlib import Path

        return self.tensorboard_dir or str(Path(self.output_model_path) / "tensorboard")


__all__ = ["FINETUNE_ENGINE_HELP", "FP16_OPT_LEVELS", "EngineConfig", "OutputConfig"]
