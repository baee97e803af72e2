#!/usr/bin/env bash
# The GPU figures, measured ON a lent GPU machine (H100/H200, 15 minutes of device time in all, the start
# included) from the repository root, after launch/gpu_preflight.sh printed PREFLIGHT OK here (it fills
# .whl/ with launch/gpu_wheels.sh).  Two calls, the second at once (the machine stays warm only ~30 s;
# Triton's and DeepSpeed's build caches carry over).  15 min = ~2 min start + 8 min + ~5 min:
#   run(command="bash launch/gpu_measure.sh first", carry=[".whl"], timeout_s=500)    # <= 8 min: the headline
#   run(command="GPU_DEADLINE_S=<status budget_left_s - 40> bash launch/gpu_measure.sh second", carry=[".whl"],
#       timeout_s=<the same + 20>)                                                     # the rest, in priority order
# Each call's steps run in priority order under one deadline (GPU_DEADLINE_S; first 450 s, second 270 s):
# a step gets min(its limit, the time left) and is skipped, said so, when too little is left.  After every
# step everything measured so far is packed into $OUT/gpu_<call>.tar.gz (so a call killed at its limit
# still returns its figures), beside $OUT/steps_<call>.txt and $OUT/summary_<call>.md (the tables,
# launch/gpu_summary.py): three files, under the eight that come back.
# `bash launch/gpu_measure.sh dry first|second` (what the preflight runs, on the CPU) checks every command
# line instead of running it: uer-ds commands with UER_DS_PARSE_ONLY=1, pytest with --collect-only,
# Python scripts compiled.
set -uo pipefail
dry=0
if [ "${1:-}" = dry ]; then dry=1; shift; fi
call=${1:-first}
case "$call" in first|second) ;; *) echo "usage: gpu_measure.sh [dry] first|second" >&2; exit 2 ;; esac
out=${OUT:-out/gpu}
mkdir -p "$out"
work=/tmp/gpu_$call
rm -rf "$work" && mkdir -p "$work"
export PYTHONUNBUFFERED=1 TORCH_EXTENSIONS_DIR=/tmp/torch_extensions
# DeepSpeed's JIT builder reads TORCH_CUDA_ARCH_LIST as numbers: an entry like "9.0a" (the image's) fails
export TORCH_CUDA_ARCH_LIST="$(echo "${TORCH_CUDA_ARCH_LIST:-}" | sed -E 's/([0-9])[a-z]+/\1/g')"
[ -n "$TORCH_CUDA_ARCH_LIST" ] || unset TORCH_CUDA_ARCH_LIST
site=${GPU_SITE:-/tmp/site}
wheels=${GPU_WHEELS:-.whl}  # the tests point a dry run at an empty folder: this environment's packages then
if [ "$dry" = 1 ] && [ -z "$(ls "$wheels"/*.whl 2>/dev/null)" ]; then
  echo "gpu_measure.sh: dry run without wheels in $wheels: deepspeed and the rest from this environment"
else
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$wheels"/*.whl \
    || { echo "gpu_measure.sh: the wheels in .whl/ did not install (run launch/gpu_wheels.sh here first)"; exit 1; }
fi
# No pip install of the project: the GPU machine has no package index.  The source tree is used in place:
# kernels/src linked where the package expects it (setup.py's package_dir does this on an install), and
# the C extension built beside its source when a compiler is there (optional: preprocessing falls back to
# the Python tokenizers, which only the benchmarks' start-up uses).
[ -e uer_ds/kernels ] || ln -s ../kernels/src uer_ds/kernels
python3 setup.py -q build_ext --inplace > "$work/build_ext.txt" 2>&1 \
  || echo "gpu_measure.sh: C extension not built (preprocessing uses the Python tokenizer): $(tail -1 "$work/build_ext.txt")"
export PYTHONPATH="$PWD:$site"
start_s=$SECONDS
deadline=${GPU_DEADLINE_S:-$([ "$call" = first ] && echo 450 || echo 270)}
builder_pid=""

pack() {  # everything so far into one archive, the step log and the tables beside it
  tar czf "$out/gpu_$call.tar.gz.tmp" -C "$work" . && mv "$out/gpu_$call.tar.gz.tmp" "$out/gpu_$call.tar.gz"
  cp "$work/steps.txt" "$out/steps_$call.txt" 2>/dev/null
  python3 launch/gpu_summary.py "$work" > "$out/summary_$call.md" 2>&1
}

# the command as the dry run checks it: parse, collect or compile, never run
dry_form() {
  local args=("$@") i
  for i in "${!args[@]}"; do
    if [ "${args[$i]}" = "-m" ] && [ "${args[$((i + 1))]:-}" = uer_ds ]; then
      echo "UER_DS_PARSE_ONLY=1 python3 ${args[*]:$i}"; return
    fi
    if [ "${args[$i]}" = "-m" ] && [ "${args[$((i + 1))]:-}" = pytest ]; then
      echo "python3 ${args[*]:$i} --collect-only -q"; return
    fi
  done
  case "${args[1]:-}" in *.py) echo "python3 -m py_compile ${args[1]}"; return ;; esac
  echo "python3 -c pass"
}

# step LIMIT NAME COMMAND...: one measurement, time-limited within the call's deadline; a failure is logged
# and the next step runs.  Stale build locks (a JIT build killed half-way) are removed after it.
step() {
  local limit=$1 name=$2; shift 2
  local left=$((deadline - (SECONDS - start_s) - 10)) began=$SECONDS rc
  if [ "$dry" = 1 ]; then
    local form; form=$(dry_form "$@")
    env $form > "$work/$name.txt" 2>&1; rc=$?
    echo "== $name: dry $([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc): $form")" | tee -a "$work/steps.txt"
    [ $rc = 0 ] || tail -5 "$work/$name.txt"
    pack; return
  fi
  if [ "$left" -lt 20 ]; then
    echo "== $name: skipped, ${left} s left of the call's ${deadline} s" | tee -a "$work/steps.txt"; return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  timeout -k 5 "$limit" "$@" > "$work/$name.txt" 2>&1; rc=$?
  grep -v '^\[20' "$work/$name.txt" | tail -n 25
  echo "== $name: exit $rc after $((SECONDS - began)) s (limit $limit s; $((SECONDS - start_s)) s into the call)" \
    | tee -a "$work/steps.txt"
  if [ -z "$builder_pid" ] || ! kill -0 "$builder_pid" 2>/dev/null; then
    find "$TORCH_EXTENSIONS_DIR" -name lock -delete 2>/dev/null
  fi
  pack
}

uer() { python3 -m uer_ds "$@"; }
if [ "$dry" = 0 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$work/gpu.txt" 2>&1; cat "$work/gpu.txt"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$work/gpu.txt" 2>&1
fi
# A 21,128-entry vocabulary (the shipped one padded with unused tokens) gives the BERTs their real size.
vocab=/tmp/vocab_21128.txt
python3 - "$vocab" <<'PY'
import sys
tokens = open("corpora/vocab.txt", encoding="utf-8").read().splitlines()
tokens += [f"[unused{i}]" for i in range(21128 - len(tokens))]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(tokens) + "\n")
PY
pretrain() {  # pretrain NAME LIMIT CONFIG SEQ BATCH KERNELS [more flags]
  local name=$1 limit=$2 cfg=$3 seq=$4 batch=$5 kernels=$6; shift 6
  step "$limit" "$name" python3 -m uer_ds bench pretrain --config_path "$cfg" --vocab_path "$vocab" \
    --deepspeed_config zero0_bf16 --seq_length "$seq" --batch_size "$batch" --steps 20 --warmup_steps 5 \
    --kernels "$kernels" --json_path "$work/$name.json" "$@"
}
finetune() {  # finetune NAME LIMIT SEQ KERNELS [more flags]: BERT-base on book_review's lengths
  local name=$1 limit=$2 seq=$3 kernels=$4; shift 4
  step "$limit" "$name" python3 -m uer_ds bench finetune --config_path bert/base --vocab_path "$vocab" \
    --synthetic_lengths book_review --seq_length "$seq" --batch_size 32 --steps 20 --warmup_steps 5 \
    --kernels "$kernels" --deepspeed_config zero0_bf16 --json_path "$work/$name.json" "$@"
}

if [ "$call" = first ]; then
  # 1. the training step never waits on the device (sync debug mode "error" over the timed steps)
  step 90 sync_check_torch python3 -m uer_ds bench pretrain --config_path bert/base --vocab_path "$vocab" \
    --deepspeed_config zero0_bf16 --batch_size 16 --seq_length 128 --steps 5 --warmup_steps 3 --check_syncs \
    --json_path "$work/sync_check_torch.json"
  # 2. BERT-large and BERT-base MLM at seq 128, batch 64: eager PyTorch, then --kernels triton.
  #    Goals (H100): large >= 1,800 seq/s, base >= 4,500 seq/s.
  pretrain pretrain_large_s128_b64_torch 90 bert/large 128 64 torch
  pretrain pretrain_large_s128_b64_triton 150 bert/large 128 64 triton
  pretrain pretrain_base_s128_b64_torch 60 bert/base 128 64 torch
  pretrain pretrain_base_s128_b64_triton 90 bert/base 128 64 triton
  # 3. BERT-base fine-tuning on book_review's lengths, batch 32, seq 128: unpadded Triton vs torch (goal 1.5x)
  finetune finetune_base_s128_torch 60 128 torch
  finetune finetune_base_s128_triton 90 128 triton
  # 4. the Triton path's step is sync-free too
  step 60 sync_check_triton python3 -m uer_ds bench pretrain --config_path bert/base --vocab_path "$vocab" \
    --deepspeed_config zero0_bf16 --batch_size 16 --seq_length 128 --steps 5 --warmup_steps 3 --check_syncs \
    --kernels triton --json_path "$work/sync_check_triton.json"
  # 5. varlen attention, reduced grid: book_review lengths at 128 and 512, d 64 and 128 (goal >= 0.9x torch_varlen)
  step 90 kernels_varlen_book_review python3 -m uer_ds bench kernels --ops varlen --head_dim 64 128 \
    --lengths book_review --varlen_seq 128 512 --providers triton torch_varlen sdpa --chart none \
    --out "$work/kernels_varlen_book_review.json"
else
  # 0. DeepSpeed's CPU Adam (offload) and FusedAdam (the comparison) build in the background, with their own
  #    generous limit, while the GPU tests (no timings) run; nothing timed runs until they are done.
  if [ "$dry" = 0 ]; then
    timeout 300 python3 -c "
from deepspeed.ops.op_builder import CPUAdamBuilder, FusedAdamBuilder
for b in (CPUAdamBuilder(), FusedAdamBuilder()):
    b.load(verbose=False); print(type(b).__name__, 'built')" > "$work/build_ops.txt" 2>&1 &
    builder_pid=$!
  fi
  # 1. correctness at real sizes, compiled (bf16/fp16): the figures mean nothing if these fail; and the
  #    sync-free step tests (with and without torch.compile).  Eight workers share Triton's compiles (one
  #    worker took 150-260 s).
  step 180 gpu_tests python3 -m pytest tests/kernels tests/engine/test_gpu_step.py -m gpu -q -p no:cacheprovider \
    -o addopts= -n 8
  [ -n "$builder_pid" ] && { wait "$builder_pid"; echo "== build_ops: exit $? ($((SECONDS - start_s)) s into the call)" \
    | tee -a "$work/steps.txt"; builder_pid=""; find "$TORCH_EXTENSIONS_DIR" -name lock -delete 2>/dev/null; }
  # 2. seq 512, batch 16: pre-training eager and --kernels triton; fine-tuning on book_review's lengths
  pretrain pretrain_large_s512_b16_torch 60 bert/large 512 16 torch
  pretrain pretrain_large_s512_b16_triton 90 bert/large 512 16 triton
  finetune finetune_base_s512_torch 60 512 torch
  finetune finetune_base_s512_triton 90 512 triton
  # 3. BERT-large fine-tuning on one GPU with ZeRO-Offload: peak GPU memory and samples/s
  step 120 offload_large_s128 python3 -m uer_ds bench finetune --config_path bert/large --vocab_path "$vocab" \
    --synthetic_lengths book_review --seq_length 128 --batch_size 32 --steps 10 --warmup_steps 3 \
    --deepspeed_config zero2_offload_bf16 --activation_checkpointing --kernels torch \
    --json_path "$work/offload_large_s128.json"
  # 4. LayerNorm and the fused sublayer close (goal: sublayer >= 1.3x torch's unfused ops at 768/1024)
  step 90 kernels_norm python3 -m uer_ds bench kernels --ops layer_norm sublayer --providers triton torch \
    --hidden 768 1024 4096 --chart none --out "$work/kernels_norm.json"
  # 5. Adam step for BERT-large's parameters: torch's fused AdamW (the default) against DeepSpeed's FusedAdam
  step 60 adam_step python3 launch/gpu_adam.py --json_path "$work/adam_step.json"
  # 6. torch.compile, BERT-base seq 128 batch 64
  pretrain pretrain_base_s128_b64_compile 150 bert/base 128 64 torch --compile
  # 7. the rest of the varlen grid, and the kernels' host cost per call
  step 120 kernels_varlen_rest python3 -m uer_ds bench kernels --ops varlen --head_dim 64 128 \
    --lengths cmrc2018 uniform full --varlen_seq 128 512 --providers triton torch_varlen sdpa triton_padded \
    --chart none --out "$work/kernels_varlen_rest.json"
  step 40 overhead python3 launch/gpu_overhead.py
fi
pack
echo "== gpu_measure.sh $call: done after $((SECONDS - start_s)) s; $out: $(ls "$out" | tr '\n' ' ')"
cat "$out/summary_$call.md"
