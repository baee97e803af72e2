#!/usr/bin/env bash
# The GPU figures, measured ON a lent GPU machine (H100/H200) from the repository root, after
# launch/gpu_wheels.sh filled .whl/ here.  With the device tool, for example:
#   run(command="bash launch/gpu_measure.sh kernels", carry=[".whl"], timeout_s=600)
#   run(command="bash launch/gpu_measure.sh pretrain", carry=[".whl"], timeout_s=600)
#   run(command="bash launch/gpu_measure.sh offload", carry=[".whl"], timeout_s=600)
# Each part fits one 10-minute call; results (JSON, PNG, logs) go to $OUT (or out/gpu).
set -euo pipefail
part=${1:-all}
out=${OUT:-out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TORCH_EXTENSIONS_DIR=/tmp/torch_extensions
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e .   # builds the C extension here
uer() { python3 -m uer_ds "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# A 21,128-entry vocabulary (the shipped one padded with unused tokens) gives the BERTs their real size.
vocab="$out/vocab_21128.txt"
python3 - "$vocab" <<'PY'
import sys
tokens = open("corpora/vocab.txt", encoding="utf-8").read().splitlines()
tokens += [f"[unused{i}]" for i in range(21128 - len(tokens))]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(tokens) + "\n")
PY

if [ "$part" = kernels ] || [ "$part" = all ]; then
  python3 -m pytest tests/kernels -m gpu -q -p no:cacheprovider 2>&1 | tee "$out/kernel_gpu_tests.txt"
  uer bench kernels --ops layer_norm --out "$out/kernels_layer_norm.json" 2>&1 | tee "$out/kernels_layer_norm.txt"
  uer bench kernels --ops attention --providers triton sdpa torch --out "$out/kernels_attention.json" \
    2>&1 | tee "$out/kernels_attention.txt"
fi

if [ "$part" = pretrain ] || [ "$part" = all ]; then
  # BERT-base / BERT-large, seq 128, bf16: sequences/s with the PyTorch reference and with the kernels
  for cfg in bert/base bert/large; do
    for kernels in torch triton; do
      uer bench pretrain --config_path "$cfg" --vocab_path "$vocab" --deepspeed_config zero0_bf16 \
        --batch_size 64 --seq_length 128 \
        --steps 30 --kernels "$kernels" --json_path "$out/pretrain_${cfg#bert/}_${kernels}.json" 2>&1 \
        | grep -v '^\[20' | tee "$out/pretrain_${cfg#bert/}_${kernels}.txt"
    done
  done
fi

if [ "$part" = offload ] || [ "$part" = all ]; then
  # BERT-large fine-tuning on one GPU with ZeRO-Offload (optimizer on the CPU), batch 32: peak GPU memory.
  uer finetune classifier --config_path bert/large --vocab_path "$vocab" \
    --train_path corpora/reviews_cls/train.tsv --dev_path corpora/reviews_cls/dev.tsv \
    --output_model_path "$out/bert_large_offload" --deepspeed_config zero2_offload_bf16 --activation_checkpointing \
    --epochs_num 1 --batch_size 32 --seq_length 128 --learning_rate 2e-5 \
    --metrics_path "$out/offload_metrics.jsonl" --no_progress 2>&1 | grep -v '^\[20' | tee "$out/offload.txt"
fi
