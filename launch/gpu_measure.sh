#!/usr/bin/env bash
# The GPU figures, measured ON a lent GPU machine (H100/H200) from the repository root, after
# launch/gpu_wheels.sh filled .whl/ here.  With the device tool, for example:
#   run(command="bash launch/gpu_measure.sh kernels", carry=[".whl"], timeout_s=600)   (issue 16: the unpadded path)
#   run(command="bash launch/gpu_measure.sh pretrain", carry=[".whl"], timeout_s=600)
#   run(command="bash launch/gpu_measure.sh offload", carry=[".whl"], timeout_s=600)
#   run(command="bash launch/gpu_measure.sh profile", carry=[".whl"], timeout_s=600)
# Each part fits one 10-minute call; results (JSON, PNG, logs) go to $OUT (or out/gpu).
set -uo pipefail
part=${1:-all}
out=${OUT:-out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TORCH_EXTENSIONS_DIR=/tmp/torch_extensions
# DeepSpeed's JIT builder reads TORCH_CUDA_ARCH_LIST as numbers: an entry like "9.0a" (the image's) fails
export TORCH_CUDA_ARCH_LIST="$(echo "${TORCH_CUDA_ARCH_LIST:-}" | sed -E 's/([0-9])[a-z]+/\1/g')"
[ -n "$TORCH_CUDA_ARCH_LIST" ] || unset TORCH_CUDA_ARCH_LIST
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 1
# No pip install of the project: the GPU machine has no package index (an editable install wants one for
# its build isolation).  The source tree is used in place: kernels/ linked where the package expects it
# (setup.py's package_dir does this on an install) and the C extension built beside its source.
[ -e uer_ds/kernels ] || ln -s ../kernels/src uer_ds/kernels
python3 setup.py -q build_ext --inplace || exit 1
export PYTHONPATH="$PWD:/tmp/site"
uer() { python3 -m uer_ds "$@"; }
# step SECONDS NAME COMMAND...: one measurement, time-limited; a failure is logged and the next one runs
step() {
  local limit=$1 name=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v '^\[20' | tee "$out/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$out/steps.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# A 21,128-entry vocabulary (the shipped one padded with unused tokens) gives the BERTs their real size.
vocab=/tmp/vocab_21128.txt
python3 - "$vocab" <<'PY'
import sys
tokens = open("corpora/vocab.txt", encoding="utf-8").read().splitlines()
tokens += [f"[unused{i}]" for i in range(21128 - len(tokens))]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(tokens) + "\n")
PY

if [ "$part" = kernels ] || [ "$part" = all ]; then
  # issue 16, one call of at most 10 minutes (timeout_s=600): the step limits below add up to ~560 s.
  # 1. correctness at real sizes, compiled (bf16/fp16): the figures mean nothing if these fail
  step 100 kernel_gpu_tests python3 -m pytest tests/kernels -m gpu -q -p no:cacheprovider
  # 2. BERT-base fine-tuning steps on book_review's lengths (synthetic words, real lengths: the data is not
  #    on this machine), batch 32, seq 128 and 512: --kernels triton (unpadded) vs torch.  Goal: >= 1.5x.
  for seq in 128 512; do
    for kernels in torch triton; do
      step 50 "finetune_${kernels}_s${seq}" python3 -m uer_ds bench finetune --config_path bert/base \
        --vocab_path "$vocab" --synthetic_lengths book_review --seq_length "$seq" --batch_size 32 --steps 20 \
        --warmup_steps 5 --kernels "$kernels" --deepspeed_config zero0_bf16 \
        --json_path "$out/finetune_${kernels}_s${seq}.json"
    done
  done
  # 3. varlen attention on real lengths (book_review, CMRC2018 at seq 128 and 512, uniform, full), d 64 and 128,
  #    against torch's varlen_attn, SDPA on the padded batch and our padded kernel; CUDA-graph and do_bench
  #    timings.  Goals: >= 1.2x torch_varlen, >= 2x sdpa on book_review at 512; d 128 >= 0.9x sdpa on full.
  step 100 kernels_varlen python3 -m uer_ds bench kernels --ops varlen --head_dim 64 128 \
    --providers triton torch_varlen sdpa triton_padded --chart none --out "$out/kernels_varlen.json"
  # 4. LayerNorm and the fused sublayer close, 16,384 rows, hidden 768..8192.  Goal: LN fwd+bwd >= 1.3x torch.
  step 60 kernels_norm python3 -m uer_ds bench kernels --ops layer_norm sublayer --providers triton torch \
    --chart none --out "$out/kernels_norm.json"
  # 5. BERT-large pre-training at seq 128, batch 64, with the kernels (goal: at least the `pretrain` part's
  #    --kernels torch figure, #9's)
  step 70 pretrain_large_s128_b64x1_triton python3 -m uer_ds bench pretrain --config_path bert/large \
    --vocab_path "$vocab" --deepspeed_config zero0_bf16 --seq_length 128 --batch_size 64 --steps 15 \
    --warmup_steps 5 --kernels triton --json_path "$out/pretrain_large_s128_b64x1_triton.json"
  # 6. the host's time per kernel call (issue/total us), ours and PyTorch's
  step 25 overhead python3 launch/gpu_overhead.py
  python3 - "$out" <<'PY' | tee "$out/finetune_table.md"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("| seq | padding | torch real tokens/s | triton real tokens/s | triton / torch | step ms torch / triton |")
print("| --- | --- | --- | --- | --- | --- |")
for seq in (128, 512):
    runs = {k: out / f"finetune_{k}_s{seq}.json" for k in ("torch", "triton")}
    if not all(p.exists() for p in runs.values()):
        print(f"| {seq} | n/a | n/a | n/a | n/a | n/a |")
        continue
    t, k = (json.loads(p.read_text()) for p in runs.values())
    print(f"| {seq} | {t['padding']:.0%} | {t['tokens_per_s']:,.0f} | {k['tokens_per_s']:,.0f} | "
          f"{k['tokens_per_s'] / t['tokens_per_s']:.2f}x | {1e3 * t['step_time_s']:.1f} / {1e3 * k['step_time_s']:.1f} |")
PY
fi

if [ "$part" = pretrain ] || [ "$part" = all ]; then
  # issue #9: the step never syncs on CUDA (sync debug mode "error"), then BERT-base / BERT-large MLM
  # throughput at seq 128 (batch 64, and 64 x 4 accumulation) and seq 512 (batch 16), eager and (seq 128,
  # batch 64) compiled; seq/s, tokens/s, model TFLOP/s and MFU per run; one table at the end.
  step 240 gpu_step_tests python3 -m pytest tests/engine/test_gpu_step.py -q -p no:cacheprovider
  ds=${PRETRAIN_DS_CONFIG:-zero0_bf16}
  for cfg in bert/base bert/large; do
    for shape in "128 64 1" "128 64 4" "512 16 1"; do
      read -r seq batch accum <<< "$shape"
      for compiled in "" "--compile"; do
        [ -n "$compiled" ] && [ "$shape" != "128 64 1" ] && continue
        name="pretrain_${cfg#bert/}_s${seq}_b${batch}x${accum}${compiled:+_compile}"
        step 150 "$name" python3 -m uer_ds bench pretrain --config_path "$cfg" --vocab_path "$vocab" \
          --deepspeed_config "$ds" --seq_length "$seq" --batch_size "$batch" --accumulation_steps "$accum" \
          --steps 20 --warmup_steps 5 --kernels torch $compiled --json_path "$out/$name.json"
      done
    done
  done
  python3 - "$out" <<'PY' | tee "$out/pretrain_table.md"
import json, pathlib, sys
print("| model | seq | batch | compile | seq/s | tokens/s | model TFLOP/s | MFU | peak GPU GB |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for f in sorted(pathlib.Path(sys.argv[1]).glob("pretrain_*.json")):
    r = json.loads(f.read_text())
    print(f"| {r['config']} | {r['seq_length']} | {r['batch_size']}x{r['accumulation_steps']} | {r['compile']} | "
          f"{r['samples_per_s']:,.0f} | {r['tokens_per_s']:,.0f} | {r.get('model_tflops_per_s', 0):,.0f} | "
          f"{r.get('mfu', 0):.1%} | {r['peak_memory_gb']:.1f} |")
PY
fi

if [ "$part" = offload ] || [ "$part" = all ]; then
  # BERT-large fine-tuning on one GPU with ZeRO-Offload (optimizer on the CPU), batch 32: peak GPU memory.
  step 400 offload python3 -m uer_ds finetune classifier --config_path bert/large --vocab_path "$vocab" \
    --train_path corpora/reviews_cls/train.tsv --dev_path corpora/reviews_cls/dev.tsv \
    --output_model_path /tmp/bert_large_offload --deepspeed_config zero2_offload_bf16 --activation_checkpointing \
    --epochs_num 1 --batch_size 32 --seq_length 128 --learning_rate 2e-5 \
    --metrics_path "$out/offload_metrics.jsonl" --no_progress
fi

if [ "$part" = overhead ] || [ "$part" = profile ]; then
  # the ops' CPU cost per call (a GPU that waits on the CPU shows it as time)
  step 120 overhead python3 launch/gpu_overhead.py
fi

if [ "$part" = profile ]; then
  # where a BERT-base step's time goes: cProfile of the benchmark
  for kernels in torch triton; do
    step 200 "profile_$kernels" python3 -m cProfile -o "/tmp/prof_$kernels.pstats" -m uer_ds bench pretrain \
      --config_path bert/base --vocab_path "$vocab" --deepspeed_config zero0_bf16 --batch_size 64 --seq_length 128 \
      --steps 60 --kernels "$kernels" --json_path "/tmp/prof_$kernels.json"
    python3 -c "import pstats, sys; p = pstats.Stats(sys.argv[1]); p.sort_stats('tottime').print_stats(25); \
p.sort_stats('cumtime').print_stats(45)" "/tmp/prof_$kernels.pstats" > "$out/pstats_$kernels.txt" 2>&1
  done
fi
