#!/usr/bin/env bash
# Multi-node pre-training with the DeepSpeed launcher.
#
#   launch/pretrain_multinode.sh HOSTFILE DATASET_PREFIX OUTPUT_DIR [more uer-ds pretrain flags]
#
# Run it on the first machine of HOSTFILE; the launcher starts `python -m uer_ds pretrain` on every
# slot of every host over ssh (pdsh), or with LAUNCHER=openmpi through mpirun.  Every host needs the same
# checkout, .venv and data at the same paths, and passwordless ssh from this one (docs/multi-node.md).
# First every host is asked for `true` over ssh (at most 10 s each, in parallel): a host that does not
# answer stops the launch at once, named.  MASTER_ADDR (default: the first host's first address from
# `hostname -I` there, as DeepSpeed chooses it) must be reachable from all hosts on MASTER_PORT (default
# 29500).  Variables every host needs go in .deepspeed_env (here or in ~; DS_ENV_FILE names another).
# Without ssh (a scheduler starts one launcher per node), run on node k:
#   deepspeed --hostfile H --no_ssh --node_rank k --master_addr ADDR ... instead.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
hostfile=$1 dataset=$2 output=$3
shift 3
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"
[ -f "$hostfile" ] || { echo "pretrain_multinode.sh: no hostfile $hostfile" >&2; exit 2; }
hosts=$(awk '!/^[[:space:]]*(#|$)/ {print $1}' "$hostfile")
[ -n "$hosts" ] || { echo "pretrain_multinode.sh: $hostfile names no host" >&2; exit 2; }

# ssh that neither prompts nor waits for ever: a host that stops answering ends its connection within
# 15 s (ServerAlive), so the launcher learns of a cut link; pdsh passes the same options on
ssh_opts=(-o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3)
export PDSH_SSH_ARGS_APPEND="${PDSH_SSH_ARGS_APPEND:-} ${ssh_opts[*]}"
declare -A checks=()
for host in $hosts; do
  ssh "${ssh_opts[@]}" "$host" true </dev/null >/dev/null 2>"${TMPDIR:-/tmp}/.uer_ds_ssh_check.$$.$host" &
  checks[$host]=$!
done
failed=""
for host in $hosts; do
  if ! wait "${checks[$host]}"; then
    failed+=" $host"
    echo "pretrain_multinode.sh: host $host does not answer ssh: $(head -c 300 "${TMPDIR:-/tmp}/.uer_ds_ssh_check.$$.$host")" >&2
  fi
  rm -f "${TMPDIR:-/tmp}/.uer_ds_ssh_check.$$.$host"
done
if [ -n "$failed" ]; then
  echo "pretrain_multinode.sh: not launching: no ssh to$failed (passwordless ssh from $(hostname) to every host of $hostfile is needed; docs/multi-node.md)" >&2
  exit 1
fi

first=$(echo "$hosts" | head -1)
master_addr=${MASTER_ADDR:-$(ssh "${ssh_opts[@]}" "$first" hostname -I </dev/null | awk '{print $1}')}
master_port=${MASTER_PORT:-29500}
launcher=(--master_addr "$master_addr" --master_port "$master_port")
if [ "${LAUNCHER:-pdsh}" = openmpi ]; then  # mpirun does not pass these on by itself
  launcher+=(--launcher openmpi --launcher_args "-x MASTER_ADDR=$master_addr -x MASTER_PORT=$master_port ${MPI_ARGS:-}")
fi
exec deepspeed --hostfile "$hostfile" "${launcher[@]}" \
  --module uer_ds pretrain \
  --dataset_path "$dataset" --vocab_path "${VOCAB_PATH:-$root/corpora/vocab.txt}" \
  --config_path "${CONFIG_PATH:-bert/base}" --deepspeed_config "${DS_CONFIG:-zero2_bf16}" \
  --output_model_path "$output" --total_steps "${TOTAL_STEPS:-100000}" --batch_size "${BATCH_SIZE:-32}" \
  --learning_rate "${LEARNING_RATE:-1e-4}" --report_steps 100 --save_checkpoint_steps 5000 "$@"
