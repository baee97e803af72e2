#!/usr/bin/env bash
# Does `uer-ds augment` (EDA) help a classifier trained on few rows?  book_review with ROWS training rows,
# with and without augmentation (--aug_per_example AUG --keep_original, swap and delete: no synonym source),
# a small model from random weights (no pre-trained Chinese weights ship with the data), the same epochs,
# seeds and flags on both sides; test accuracy of the best-dev epoch per run, then mean and spread.
#
#   launch/augment_gain.sh [OUT]   # ROWS=200 AUG=4 SEEDS="1 2 3" EPOCHS=8 EVAL_ROWS=1000 CONFIG=rnn/lstm
#
# dev and test are the first EVAL_ROWS rows of book_review's dev.tsv and test.tsv.  Prints one line per run
# and a summary; writes OUT/results.json.  Every number it prints comes from the runs' report.json.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/out/augment_gain}" && cd "${1:-$root/out/augment_gain}" && pwd)"
data="${UER_DS_SHARED_DATA:-$root/../shared/data}"
rows="${ROWS:-200}"; aug="${AUG:-4}"; seeds="${SEEDS:-1 2 3}"; epochs="${EPOCHS:-8}"; eval_rows="${EVAL_ROWS:-1000}"
config="${CONFIG:-rnn/lstm}"
python="${PYTHON:-$root/.venv/bin/python}"
export DS_ACCELERATOR=cpu

head -n $((rows + 1)) "$data/datasets/book_review/train.tsv" > "$out/train.tsv"
head -n $((eval_rows + 1)) "$data/datasets/book_review/dev.tsv" > "$out/dev.tsv"
head -n $((eval_rows + 1)) "$data/datasets/book_review/test.tsv" > "$out/test.tsv"
"$python" -m uer_ds augment --input_path "$out/train.tsv" --output_path "$out/train_aug.tsv" --segment jieba \
  --aug_per_example "$aug" --keep_original --seed 1 --no_progress

for seed in $seeds; do
  for kind in plain aug; do
    train="$out/train.tsv"; [ "$kind" = aug ] && train="$out/train_aug.tsv"
    "$python" -m uer_ds finetune classifier --vocab_path "$data/models/google_zh_vocab.txt" --config_path "$config" \
      --emb_size 128 --hidden_size 128 --layers_num 1 --pooling mean --seq_length 128 --batch_size 32 \
      --learning_rate 1e-3 --epochs_num "$epochs" --seed "$seed" --report_steps 1000 --no_progress \
      --train_path "$train" --dev_path "$out/dev.tsv" --test_path "$out/test.tsv" \
      --output_model_path "$out/$kind-$seed" > "$out/$kind-$seed.log" 2>&1
    "$python" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], "test accuracy", round(r["test"]["accuracy"], 4))' \
      "$out/$kind-$seed/report.json" "$kind" "$seed"
  done
done

"$python" - "$out" $seeds <<'EOF'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
acc = {k: [json.load(open(f"{out}/{k}-{s}/report.json"))["test"]["accuracy"] for s in seeds] for k in ("plain", "aug")}
result = {k: {"runs": v, "mean": statistics.mean(v), "stdev": statistics.stdev(v) if len(v) > 1 else 0.0}
          for k, v in acc.items()}
result["gain_points"] = 100 * (result["aug"]["mean"] - result["plain"]["mean"])
json.dump(result, open(f"{out}/results.json", "w"), indent=2)
for k in ("plain", "aug"):
    print(f"{k:5s} test accuracy: mean {result[k]['mean']:.4f}  stdev {result[k]['stdev']:.4f}  runs {acc[k]}")
print(f"gain: {result['gain_points']:+.2f} points")
EOF
