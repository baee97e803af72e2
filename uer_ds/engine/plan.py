"""Memory planning: model-state, optimizer and activation memory per rank for ZeRO 0-3 with and without
offload, from the model config and the hardware; a recommended ds_config and micro-batch.

Model states follow the ZeRO paper's accounting (Adam: 16 bytes per parameter in mixed precision,
fp32 master weights and both moments included) and DeepSpeed's own estimators where they exist
(ZeRO-2 and ZeRO-3, `estimate_zero{2,3}_model_states_mem_needs`).  Activations follow Korthikanti et al.
(2022): a transformer layer keeps s*b*h*(34 + 5*a*s/h) bytes at 16-bit (the second term is the
attention matrix, which flash attention does not keep); with activation checkpointing only each
layer's input (2*s*b*h) plus one layer's full set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from uer_ds.config import ModelConfig

GiB = 2**30
# CUDA context, allocator slack and communication buffers not modelled below.
OVERHEAD_GB = 1.5
MICRO_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Setup:
    name: str          # the shipped ds_config it corresponds to
    stage: int
    offload_optimizer: bool
    offload_params: bool


SETUPS = [Setup("zero0", 0, False, False), Setup("zero1", 1, False, False), Setup("zero2", 2, False, False),
          Setup("zero3", 3, False, False), Setup("zero2_offload", 2, True, False),
          Setup("zero3_offload", 3, True, True)]


@dataclass
class Row:
    setup: Setup
    gpu_states_gb: float
    cpu_states_gb: float
    activations_per_sample_gb: float
    micro_batch: int  # largest that fits, 0 if none
    fits: bool


def parameter_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(total unique parameters, largest single module's parameters) of the model."""
    from uer_ds.models import build_model

    model = build_model(cfg, device="meta")
    total = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return total, largest


def model_state_bytes(setup: Setup, params: int, largest: int, gpus: int, nodes: int,
                      mixed_precision: bool) -> tuple[float, float]:
    """(GPU bytes, CPU bytes) per rank for parameters, gradients and Adam states."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    n = gpus * nodes
    if not mixed_precision:  # fp32: params 4 + grads 4 + Adam 8, no master copy
        gpu = {0: 16 * params, 1: 8 * params + 8 * params / n, 2: 4 * params + 12 * params / n,
               3: 16 * params / n + 4 * largest}[setup.stage]
        cpu = 0.0
        if setup.offload_optimizer:
            moved = {1: 8 * params / n, 2: 12 * params / n, 3: 12 * params / n}[setup.stage]
            gpu -= moved
            cpu += moved * gpus * 1.5
        if setup.offload_params:
            gpu -= 4 * params / n
            cpu += 4 * params / nodes * 1.5
        return gpu, cpu
    if setup.stage == 0:
        return 16 * params, 0.0
    if setup.stage == 1:
        return 4 * params + 12 * params / n, 0.0
    if setup.stage == 2:
        cpu, gpu = estimate_zero2_model_states_mem_needs(params, gpus, nodes, cpu_offload=setup.offload_optimizer)
        return float(gpu), float(cpu)
    cpu, gpu, _ = estimate_zero3_model_states_mem_needs(params, largest, gpus, nodes,
                                                         cpu_offload=setup.offload_optimizer,
                                                         cpu_offload_params=setup.offload_params)
    return float(gpu), float(cpu)


def training_flops_per_sequence(cfg: ModelConfig, seq_length: int, predictions: float) -> float:
    """Model FLOPs of one sequence's forward and backward pass (no recomputation counted), the numerator
    of MFU.  Each multiply-add of a weight matrix costs 2 FLOPs forward and 4 backward, so 6 per weight
    per token it is applied to; attention's two products (Q K^T and probabilities x V) add 12 x H x T per
    token per layer (Chowdhery et al. 2022, PaLM, Appendix B; Narayanan et al. 2021).

    Encoder: every transformer layer's projections (4 H^2 for Q, K, V, output; 2 H F for the feed-forward)
    on all T tokens; heads: MLM/LM (H x H transform and H x V output) on the `predictions` positions per
    sequence (MLM: the masked count; LM: T).  Embedding lookups, norms and softmaxes are not counted.
    BERT-large, T = 128, 20 masked, V = 21,128: about 240 GFLOP per sequence.
    """
    h, t, layers = cfg.hidden_size, seq_length, cfg.layers_num
    if cfg.encoder != "transformer":
        raise ValueError(f"training FLOPs are modelled for transformer encoders (encoder is '{cfg.encoder}')")
    per_layer = 4 * h * h + 2 * h * cfg.feedforward_size
    body = t * (6 * layers * per_layer + 12 * layers * h * t)
    if cfg.factorized_embedding_parameterization:
        body += t * 6 * cfg.emb_size * h
    head = 0.0
    if "mlm" in cfg.target or "lm" in cfg.target:
        width = cfg.emb_size if cfg.factorized_embedding_parameterization else h
        head = 6 * predictions * ((h * width if "mlm" in cfg.target else 0) + width * cfg.vocab_size)
    return float(body + head)


# Dense bf16 peak of the GPUs MFU is reported against (vendors' datasheets), in TFLOP/s.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def bf16_peak_tflops(device_name: str) -> Optional[float]:
    """The datasheet bf16 dense peak for a CUDA device name, or None when unknown."""
    for key, value in BF16_PEAK_TFLOPS.items():  # "H100 PCIe" before "H100"
        if key in device_name:
            return value
    return None


def activation_bytes_per_sample(cfg: ModelConfig, seq_length: int, mixed_precision: bool, flash: bool,
                                checkpointing: bool) -> float:
    s, h, a, layers = seq_length, cfg.hidden_size, max(cfg.heads_num, 1), cfg.layers_num
    scale = 1.0 if mixed_precision else 2.0
    if cfg.encoder == "transformer":
        per_layer = s * h * (34 + (0 if flash else 5 * a * s / h)) * scale
    else:  # recurrent / convolutional: a handful of (s, h) tensors per layer
        per_layer = 16 * s * h * scale
    body = (2 * s * h * scale * layers + per_layer) if checkpointing else per_layer * layers
    predicted = {"mlm": 0.15 * s, "lm": s, "bilm": 2 * s}
    logits = sum(predicted.get(t, 0) for t in cfg.target) * cfg.vocab_size * (2 * scale + 4)  # + fp32 loss copy
    return body + logits


def plan(cfg: ModelConfig, gpus: int, gpu_memory_gb: float, nodes: int = 1, cpu_memory_gb: Optional[float] = None,
         seq_length: int = 512, mixed_precision: bool = True, flash: bool = False,
         checkpointing: bool = False) -> tuple[list[Row], Optional[Row], int, int]:
    params, largest = parameter_counts(cfg)
    per_sample = activation_bytes_per_sample(cfg, seq_length, mixed_precision, flash, checkpointing)
    rows = []
    for setup in SETUPS:
        gpu, cpu = model_state_bytes(setup, params, largest, gpus, nodes, mixed_precision)
        free = gpu_memory_gb * GiB - gpu - OVERHEAD_GB * GiB
        cpu_ok = cpu_memory_gb is None or cpu <= cpu_memory_gb * GiB
        micro = max((b for b in MICRO_BATCHES if b * per_sample <= free), default=0) if cpu_ok else 0
        rows.append(Row(setup, gpu / GiB, cpu / GiB, per_sample / GiB, micro, micro > 0))
    # fewest communications first: the lowest stage without offload whose micro-batch reaches 8
    # (or the best any setup reaches), offload only when nothing else fits.  With one GPU, stage 0 (no
    # ZeRO: nothing to partition; the fast single-process path).  With several, ZeRO-1 or higher:
    # DeepSpeed's stage-0 data parallelism reduces gradients through a per-parameter fallback loop,
    # ZeRO-1/2 in overlapped buckets.
    candidates = [r for r in rows if gpus * nodes == 1 or r.setup.stage >= 1]
    best_micro = max((r.micro_batch for r in candidates), default=0)
    target = min(8, best_micro)
    recommended = next((r for r in candidates if r.fits and r.micro_batch >= target), None)
    return rows, recommended, params, largest


def default_ds_config(cfg: ModelConfig, world: int, seq_length: int) -> tuple[str, str]:
    """The shipped ds_config `pretrain`/`finetune` take without --deepspeed_config, and why (fp32, as
    UER-py trains unless told otherwise): one process -> zero0 (the single-process fast path); several
    on GPUs -> the planner's recommendation for this model and these GPUs; several on CPUs -> zero1."""
    import torch

    if world == 1:
        return "zero0", "one process: nothing for ZeRO to partition"
    if not torch.cuda.is_available():
        return "zero1", f"{world} processes on CPUs: data parallel with ZeRO-1"
    gpus = min(torch.cuda.device_count(), world)
    memory = torch.cuda.get_device_properties(0).total_memory / GiB
    _, best, _, _ = plan(cfg, gpus, memory, nodes=max(1, world // gpus), seq_length=seq_length,
                         mixed_precision=False)
    name = best.setup.name if best is not None else "zero3_offload"
    return name, f"{world} processes: the planner's pick for {gpus} GPU(s) of {memory:.0f} GiB per node"


def format_plan(rows: list[Row], recommended: Optional[Row], params: int, largest: int, gpus: int, nodes: int,
                gpu_memory_gb: float, seq_length: int, precision: str) -> str:
    lines = [f"parameters: {params:,} (largest module {largest:,}); {nodes} node(s) x {gpus} GPU(s) of "
             f"{gpu_memory_gb:g} GiB; seq_length {seq_length}; {precision}",
             f"{'ds_config':<15} {'GPU states':>11} {'CPU states':>11} {'act/sample':>11} {'micro-batch':>12}"]
    for r in rows:
        lines.append(f"{r.setup.name:<15} {r.gpu_states_gb:>9.2f}GB {r.cpu_states_gb:>9.2f}GB "
                     f"{r.activations_per_sample_gb:>9.3f}GB {r.micro_batch if r.fits else 'does not fit':>12}")
    if recommended is None:
        lines.append("recommendation: nothing fits; use more GPUs, a shorter sequence, activation checkpointing "
                     "or a larger GPU")
    else:
        suffix = "" if precision == "fp32" else f"_{precision}"
        lines.append(f"recommendation: --deepspeed_config {recommended.setup.name}{suffix}"
                     f" --batch_size {recommended.micro_batch}")
    return "\n".join(lines)
