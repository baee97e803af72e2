#!/usr/bin/env bash
# The pruned rows of `uer-ds bench infer` (issue 25, item 4a): a BERT-base-shaped classifier (random weights:
# speed does not depend on them), the same pruned to --width_mult 0.5 by `uer-ds prune`, and the ONNX fp32 and
# int8 exports of both, side by side at batch 1 and 32 on the first 256 texts of book_review's test set, seq 128.
#
#   launch/bench_prune.sh prepare [OUT]     # the models (a few minutes on 2 cores)
#   launch/bench_prune.sh run N [OUT]       # one benchmark run -> OUT/bench_N.json (about 2.5 minutes on 2 cores
#                                           # with BENCH_SECONDS=5 timed seconds per model and batch size; default 10)
#
# The BERT-base classifier is `uer-ds finetune` run for one step of batch 8 at learning rate 1e-9 from random
# initialisation (the real fine-tuning path writes the task directory; one step leaves the weights random).
# Run it on a quiet machine (`uptime` before and after): every model shares the cores with whatever else runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
what="${1:?usage: launch/bench_prune.sh prepare|run N [OUT]}"
python="${PYTHON:-$root/.venv/bin/python}"
data="${DATA:-$root/../shared/data/datasets/book_review}"
vocab="${VOCAB:-$root/../shared/data/models/google_zh_vocab.txt}"
uer_ds=("$python" -m uer_ds)
export DS_ACCELERATOR=cpu

if [ "$what" = prepare ]; then
  out="$(mkdir -p "${2:-$root/out/bench_prune}" && cd "${2:-$root/out/bench_prune}" && pwd)"
  head -n 257 "$data/test.tsv" > "$out/test256.tsv"
  head -n 9 "$data/train.tsv" > "$out/train8.tsv"
  [ -f "$out/base/config.json" ] || "${uer_ds[@]}" finetune classifier --vocab_path "$vocab" --config_path bert/base \
    --train_path "$out/train8.tsv" --dev_path "$out/train8.tsv" --seq_length 128 --batch_size 8 --learning_rate 1e-9 \
    --epochs_num 1 --seed 7 --no_progress --output_model_path "$out/base"
  "${uer_ds[@]}" prune --load_model_path "$out/base" --train_path "$data/train.tsv" --max_examples 64 \
    --batch_size 16 --width_mult 0.5 --output_model_path "$out/base_pruned0.5" --no_progress
  for m in base base_pruned0.5; do
    "${uer_ds[@]}" export onnx --load_model_path "$out/$m" --output "$out/$m.onnx" --check_path "$out/test256.tsv"
    "${uer_ds[@]}" export onnx --load_model_path "$out/$m" --output "$out/$m.int8.onnx" --int8 \
      --check_path "$out/test256.tsv"
  done
  ls -l "$out"
elif [ "$what" = run ]; then
  n="${2:?usage: launch/bench_prune.sh run N [OUT]}"
  out="$(cd "${3:-$root/out/bench_prune}" && pwd)"
  uptime
  "${uer_ds[@]}" bench infer --load_model_path "$out/base" "$out/base.onnx" "$out/base.int8.onnx" \
    "$out/base_pruned0.5" "$out/base_pruned0.5.onnx" "$out/base_pruned0.5.int8.onnx" \
    --test_path "$out/test256.tsv" --batch_sizes 1 32 --seconds "${BENCH_SECONDS:-10}" --json_path "$out/bench_$n.json"
  uptime
else
  echo "launch/bench_prune.sh: '$what' is neither prepare nor run" >&2
  exit 2
fi
