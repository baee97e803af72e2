#!/usr/bin/env bash
# Quality gate of docs/benchmarks.md: does `uer-ds pretrain` make a better starting point? A tiny BERT
# (bert/tiny: 2 layers, hidden 128) is pre-trained with MLM on the texts of book_review_cls.txt (labels
# cut off: the 20,000 reviews of book_review's training set, no dev or test text), then fine-tuned on
# book_review; the same model from random weights is fine-tuned with the same settings, over several
# seeds, and the two are compared (best dev epoch, the test accuracy of that model).
#
#   launch/pretraining_gain.sh [OUT]          (default out/pretraining_gain; about 2 h 30 on 2 CPU cores)
#
# Settings through the environment: SEEDS (default "1 2 3 4 5"), STAGE1_STEPS (20000), STAGE2_STEPS
# (2000), UER_DS_SHARED_DATA (default ../shared/data). Finished pieces are kept: re-running skips a
# stage whose model or report exists, so an interrupted run continues. Prints a table; writes
# OUT/summary.json.
#
# Pre-training is two stages, as BERT's: 64-token windows first (most reviews are shorter: median 23
# characters; 1.5x the tokens/s of 128), then 128-token windows so that positions 64-127 are trained
# too. Each review is its own instance ([CLS] review [SEP], longer ones cut into windows), as the
# classifier sees it; masks are drawn anew every epoch.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$root/out/pretraining_gain}")"
shared="${UER_DS_SHARED_DATA:-$root/../shared/data}"
seeds="${SEEDS:-1 2 3 4 5}"
corpus="$shared/corpora/book_review_cls.txt"
data="$shared/datasets/book_review"
vocab="$shared/models/google_zh_vocab.txt"
for f in "$corpus" "$data/train.tsv" "$data/dev.tsv" "$data/test.tsv" "$vocab"; do
  [ -f "$f" ] || { echo "$0: $f is missing (set UER_DS_SHARED_DATA to the folder with UER-py's data)" >&2; exit 1; }
done
"$root/launch/setup"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
mkdir -p "$out"

# ---- pre-training ----------------------------------------------------------------------------------
cut -f2 "$corpus" > "$out/book_review.txt"
for T in 64 128; do
  [ -f "$out/mlm$T.json" ] || uer-ds preprocess --corpus_path "$out/book_review.txt" --vocab_path "$vocab" \
    --dataset_path "$out/mlm$T" --target mlm --seq_length "$T" --dynamic_masking --dup_factor 1 --no_progress
done
pretrain() {  # stage dataset steps lr [extra...]
  local stage=$1 dataset=$2 steps=$3 lr=$4
  shift 4
  [ -f "$out/$stage/model/model.safetensors" ] && return
  [ -f "$out/$stage/latest" ] && set -- "$@" --resume
  uer-ds pretrain --dataset_path "$out/$dataset" --vocab_path "$vocab" --config_path bert/tiny --target mlm \
    --data_processor mlm --deepspeed_config zero0 --output_model_path "$out/$stage" --total_steps "$steps" \
    --batch_size 64 --learning_rate "$lr" --save_checkpoint_steps 5000 --report_steps 250 \
    --metrics_path "$out/$stage.metrics.jsonl" "$@"
}
pretrain stage1 mlm64 "${STAGE1_STEPS:-20000}" 1e-3 --warmup 0.02
pretrain stage2 mlm128 "${STAGE2_STEPS:-2000}" 5e-4 --warmup 0.05 --pretrained_model_path "$out/stage1/model"

# ---- fine-tuning: random and pre-trained, one process each, side by side (one thread each) -----------
finetune() {  # name seed [extra...]
  local name=$1 seed=$2
  shift 2
  [ -f "$out/finetune/${name}_s$seed/report.json" ] && return
  OMP_NUM_THREADS=1 uer-ds finetune classifier --vocab_path "$vocab" --config_path bert/tiny \
    --train_path "$data/train.tsv" --dev_path "$data/dev.tsv" --test_path "$data/test.tsv" \
    --output_model_path "$out/finetune/${name}_s$seed" --epochs_num 3 --batch_size 32 --seq_length 128 \
    --learning_rate 5e-4 --pooling mean --seed "$seed" --no_progress "$@" > "$out/finetune/${name}_s$seed.log" 2>&1
}
mkdir -p "$out/finetune"
for seed in $seeds; do
  finetune random "$seed" &
  finetune pretrained "$seed" --pretrained_model_path "$out/stage2/model" &
  wait -n && wait -n || { echo "$0: a fine-tuning run failed; see $out/finetune/*_s$seed.log" >&2; exit 1; }
  echo "seed $seed done"
done

# ---- the comparison ----------------------------------------------------------------------------------
"$root/.venv/bin/python" - "$out" $seeds <<'PY'
import json, statistics, sys
from pathlib import Path

out, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
def result(name, seed):
    report = json.loads((out / "finetune" / f"{name}_s{seed}" / "report.json").read_text())
    return 100 * report["best"]["dev"]["accuracy"], 100 * report["test"]["accuracy"]
rows = {s: {n: result(n, s) for n in ("random", "pretrained")} for s in seeds}
def last_mlm(stage):
    return json.loads((out / f"{stage}.metrics.jsonl").read_text().splitlines()[-1])
mlm = {stage: last_mlm(stage) for stage in ("stage1", "stage2")}
print("pre-trained model: masked-token accuracy " + ", ".join(
    f"{stage} {m['mlm_acc']:.3f} (MLM loss {m['mlm_loss']:.2f})" for stage, m in mlm.items()))
def stats(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
gains = [r["pretrained"][1] - r["random"][1] for r in rows.values()]
gain, gain_std = stats(gains)
summary = {"seeds": seeds, "mlm_acc": {stage: m["mlm_acc"] for stage, m in mlm.items()}, "runs": rows,
           "test_gain": {"mean": gain, "std": gain_std, "stderr": gain_std / len(gains) ** 0.5,
                         "positive": sum(g > 0 for g in gains)}}
print("| seed | random dev | random test | pre-trained dev | pre-trained test | test gain |")
print("| --- | --- | --- | --- | --- | --- |")
for s, r in rows.items():
    print(f"| {s} | {r['random'][0]:.2f} | {r['random'][1]:.2f} | {r['pretrained'][0]:.2f} | "
          f"{r['pretrained'][1]:.2f} | {r['pretrained'][1] - r['random'][1]:+.2f} |")
cells = {}
for i, split in enumerate(("dev", "test")):
    for name in ("random", "pretrained"):
        mean, std = stats([r[name][i] for r in rows.values()])
        summary[f"{name}_{split}"] = {"mean": mean, "std": std}
        cells[name, split] = f"{mean:.2f} ± {std:.2f}"
print(f"| mean ± std | {cells['random', 'dev']} | {cells['random', 'test']} | {cells['pretrained', 'dev']} | "
      f"{cells['pretrained', 'test']} | {gain:+.2f} ± {gain_std:.2f} |")
print(f"test gain (paired by seed): {gain:+.2f} ± {summary['test_gain']['stderr']:.2f} (standard error), "
      f"positive in {summary['test_gain']['positive']} of {len(gains)} seeds")
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
PY
