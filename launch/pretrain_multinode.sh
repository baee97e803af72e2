#!/usr/bin/env bash
# Multi-node pre-training with the DeepSpeed launcher.
#
#   launch/pretrain_multinode.sh HOSTFILE DATASET_PREFIX OUTPUT_DIR [more uer-ds pretrain flags]
#
# Run it on the first machine of HOSTFILE; the launcher starts `python -m uer_ds pretrain` on every
# slot of every host over ssh.  MASTER_ADDR (default: this machine's hostname) must be reachable from
# all hosts on MASTER_PORT (default 29500).  Without ssh (e.g. a scheduler starts one launcher per
# node), run on node k:  deepspeed --hostfile H --no_ssh --node_rank k --master_addr ADDR ... instead.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
hostfile=$1 dataset=$2 output=$3
shift 3
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"
exec deepspeed --hostfile "$hostfile" --master_addr "${MASTER_ADDR:-$(hostname)}" --master_port "${MASTER_PORT:-29500}" \
  --module uer_ds pretrain \
  --dataset_path "$dataset" --vocab_path "${VOCAB_PATH:-$root/corpora/vocab.txt}" \
  --config_path "${CONFIG_PATH:-bert/base}" --deepspeed_config "${DS_CONFIG:-zero2_bf16}" \
  --output_model_path "$output" --total_steps "${TOTAL_STEPS:-100000}" --batch_size "${BATCH_SIZE:-32}" \
  --learning_rate "${LEARNING_RATE:-1e-4}" --report_steps 100 --save_checkpoint_steps 5000 "$@"
