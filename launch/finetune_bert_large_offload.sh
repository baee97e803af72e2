#!/usr/bin/env bash
# Fine-tune BERT-large (24 layers, hidden 1024, ~325M parameters) as a classifier on ONE GPU with
# DeepSpeed ZeRO-2 + optimizer offload (zero2_offload_bf16): the fp32 master weights and the Adam moments
# (12 bytes per parameter, ~4 GB) live in CPU memory and DeepSpeedCPUAdam updates them there; the GPU
# keeps the bf16 weights, the gradients being reduced and the activations (checkpointed per layer).
#
#   launch/finetune_bert_large_offload.sh PRETRAINED [DATASET_DIR] [OUT]
#
# PRETRAINED: a BERT-large model directory (e.g. `uer-ds convert --from hf ...` of a Chinese BERT-large,
# or `uer-ds pretrain` output); DATASET_DIR holds train.tsv, dev.tsv, test.tsv (UER-py format; default
# ../shared/data/datasets/book_review); OUT: the fine-tuned model (default out/bert_large_cls).
# Peak GPU memory is recorded per report in OUT.metrics.jsonl (memory_gb, torch.cuda.max_memory_allocated);
# `uer-ds plan --config_path bert/large --target cls --tie_weights false --vocab_size 21128 --seq_length 128
#  --precision bf16 --activation_checkpointing` gives the estimate to compare with.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pretrained="${1:?usage: $0 PRETRAINED_MODEL [DATASET_DIR] [OUT]}"
data="${2:-$root/../shared/data/datasets/book_review}"
out="${3:-$root/out/bert_large_cls}"
vocab="${VOCAB_PATH:-$root/../shared/data/models/google_zh_vocab.txt}"
"$root/launch/setup"
cd "$root"
export PATH="$root/.venv/bin:$PATH" TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$root/.torch_extensions}"

deepspeed --num_gpus 1 --module uer_ds finetune classifier \
  --pretrained_model_path "$pretrained" --config_path bert/large --vocab_path "$vocab" \
  --train_path "$data/train.tsv" --dev_path "$data/dev.tsv" --test_path "$data/test.tsv" \
  --output_model_path "$out" --deepspeed_config zero2_offload_bf16 --activation_checkpointing \
  --epochs_num 3 --batch_size 32 --seq_length 128 --learning_rate 2e-5 --warmup 0.1 \
  --report_steps 50 --metrics_path "$out.metrics.jsonl" --bad_case_path "$out.bad_cases.tsv"

python - "$out.metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if '"split"' not in line]
print(f"peak GPU memory (torch.cuda.max_memory_allocated): {max(r['memory_gb'] for r in rows):.2f} GiB")
PY
