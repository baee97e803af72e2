#!/usr/bin/env bash
# Gate of issue 27 (docs/commands/ernie.md): does ERNIE 2.0's two-stage continual multi-task schedule make a
# better starting point than its MLM alone, at equal steps?  A tiny BERT with a task embedding (bert/tiny:
# 2 layers, hidden 128; task_types_num 5) is pre-trained twice, from the same seed and initialisation:
#   ernie  the schedule: stage 1 knowledge masking (MLM) + sentence reordering + sentence distance,
#          stage 2 the same + discourse relation + IR relevance (each step one task)
#   mlm    the same knowledge-masking dataset alone, the same steps, batch and sequence length
# then each (and, for scale, the same model from random weights) is fine-tuned identically on Douban book
# review (train 20k, dev 10k, test 10k) over several seeds; best dev epoch, test accuracy of that model.
#
#   launch/ernie_gate.sh [OUT]        (default out/ernie_gate; about 45 minutes of CPU on 2 cores)
#
# Settings through the environment: SEEDS (default "1 2 3"), STEPS (pre-training steps, default 2000, half
# per stage), EPOCHS (fine-tuning, default 2), UER_DS_SHARED_DATA (default ../shared/data), UER_DS_LOCK (a
# lock file: each heavy command runs under `flock` on it, for machines shared with other jobs).  Finished pieces
# are kept: re-running skips a stage whose model or report exists.  Prints a table; writes OUT/summary.json.
#
# Data: the MLM reads the Douban training reviews (labels cut off: no dev or test text), each review its
# own instance ([CLS] review [SEP], as the classifier sees it), with ERNIE's phrase-level knowledge masking
# (jieba's noun-phrase chunks, half of the instances; the rest token masking); the sentence tasks read
# UER-py's CLUECorpusSmall sample (2,500 documents of sentences): sentence reordering, sentence distance,
# discourse relation (the shipped Chinese marker list) and IR relevance (corpora/generate_ir.py over it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$root/out/ernie_gate}")"
shared="${UER_DS_SHARED_DATA:-$root/../shared/data}"
seeds="${SEEDS:-1 2 3}"
steps="${STEPS:-2000}"
epochs="${EPOCHS:-2}"
data="$shared/datasets/douban_book_review"
clue="$shared/corpora/CLUECorpusSmall_bert_sampled.txt"
vocab="$shared/models/google_zh_vocab.txt"
for f in "$data/train.tsv" "$data/dev.tsv" "$data/test.tsv" "$clue" "$vocab"; do
  [ -f "$f" ] || { echo "$0: $f is missing (set UER_DS_SHARED_DATA to the folder with UER-py's data)" >&2; exit 1; }
done
"$root/launch/setup"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
mkdir -p "$out/data"
heavy() {  # a command that takes the CPU: under the shared lock when UER_DS_LOCK names one
  if [ -n "${UER_DS_LOCK:-}" ]; then flock "$UER_DS_LOCK" "$@"; else "$@"; fi
}

# ---- preprocessing -----------------------------------------------------------------------------------
tail -n +2 "$data/train.tsv" | cut -f2 > "$out/data/reviews.txt"
prep() {  # name corpus target [extra...]
  local name=$1 corpus=$2 target=$3
  shift 3
  [ -f "$out/data/$name.json" ] || heavy uer-ds preprocess --corpus_path "$corpus" --vocab_path "$vocab" \
    --dataset_path "$out/data/$name" --target "$target" --seq_length 64 --no_progress "$@"
}
prep mlm "$out/data/reviews.txt" mlm --dynamic_masking --masking phrase --knowledge_masking_prob 0.5 --processes_num 2
prep reorder "$clue" sentence_reorder
prep distance "$clue" sentence_distance
prep discourse "$clue" discourse --discourse_markers zh
[ -f "$out/data/ir.tsv" ] || python corpora/generate_ir.py --corpus "$clue" --output "$out/data/ir.tsv" --documents 2500
prep ir "$out/data/ir.tsv" ir_relevance

half=$((steps / 2))
cat > "$out/data/schedule.json" <<JSON
{"tasks": {"masking": {"dataset": "mlm"}, "reorder": {"dataset": "reorder"}, "distance": {"dataset": "distance"},
           "discourse": {"dataset": "discourse"}, "ir": {"dataset": "ir"}},
 "stages": [{"steps": $half, "tasks": {"masking": 2, "reorder": 1, "distance": 1}},
            {"steps": $((steps - half)), "tasks": {"masking": 2, "reorder": 1, "distance": 1, "discourse": 1, "ir": 1}}]}
JSON

# ---- pre-training: the same model, seed and settings; the schedule or its MLM alone ------------------------
model=(--vocab_path "$vocab" --config_path bert/tiny --embedding word pos seg task --task_types_num 5)
pretrain() {  # name [data flags...]
  local name=$1
  shift
  [ -f "$out/$name/model/model.safetensors" ] && return
  local resume=()
  [ -f "$out/$name/latest" ] && resume=(--resume)
  heavy uer-ds pretrain "$@" "${model[@]}" --deepspeed_config zero0 --output_model_path "$out/$name" \
    --batch_size 32 --learning_rate 1e-3 --warmup 0.05 --seed 1 --save_checkpoint_steps 500 --report_steps 100 \
    --metrics_path "$out/$name.metrics.jsonl" --no_progress "${resume[@]}" > "$out/$name.log" 2>&1
}
pretrain ernie --schedule "$out/data/schedule.json"
pretrain mlm --dataset_path "$out/data/mlm" --target mlm --total_steps "$steps"

# ---- fine-tuning: identical settings for every start ------------------------------------------------------
finetune() {  # name seed [extra...]
  local name=$1 seed=$2
  shift 2
  [ -f "$out/finetune/${name}_s$seed/report.json" ] && return
  heavy uer-ds finetune classifier --vocab_path "$vocab" "$@" --train_path "$data/train.tsv" --dev_path "$data/dev.tsv" \
    --test_path "$data/test.tsv" --output_model_path "$out/finetune/${name}_s$seed" --epochs_num "$epochs" \
    --batch_size 32 --seq_length 64 --learning_rate 5e-4 --pooling mean --seed "$seed" --no_progress \
    > "$out/finetune/${name}_s$seed.log" 2>&1
}
mkdir -p "$out/finetune"
for seed in $seeds; do
  finetune ernie "$seed" --pretrained_model_path "$out/ernie/model"
  finetune mlm "$seed" --pretrained_model_path "$out/mlm/model"
  finetune random "$seed" "${model[@]}"
  echo "seed $seed done"
done

# ---- the comparison ----------------------------------------------------------------------------------------
python - "$out" $seeds <<'PY'
import json, statistics, sys
from pathlib import Path

out, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
arms = ("ernie", "mlm", "random")
def result(name, seed):
    report = json.loads((out / "finetune" / f"{name}_s{seed}" / "report.json").read_text())
    return 100 * report["best"]["dev"]["accuracy"], 100 * report["test"]["accuracy"]
rows = {s: {a: result(a, s) for a in arms} for s in seeds}
def stats(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
def pretraining(name):
    records = [json.loads(line) for line in (out / f"{name}.metrics.jsonl").read_text().splitlines()]
    tokens = sum(r["tokens"] for r in records if "split" not in r)
    last = {}
    for r in records:  # the last report in which each head had predictions
        for key, value in r.items():
            if key.endswith(("_loss", "_acc")):
                last[key] = value
    return {"steps": records[-1]["step"], "tokens": tokens, "last": last}
pre = {name: pretraining(name) for name in ("ernie", "mlm")}
for name, p in pre.items():
    heads = ", ".join(f"{k} {v:.3f}" for k, v in sorted(p["last"].items()))
    print(f"pre-training {name}: {p['steps']} steps, {p['tokens']:,} non-padding tokens; last reports: {heads}")
print("| seed | ERNIE 2.0 schedule dev | test | MLM alone dev | test | random init dev | test | test: schedule - MLM |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for s, r in rows.items():
    print(f"| {s} | {r['ernie'][0]:.2f} | {r['ernie'][1]:.2f} | {r['mlm'][0]:.2f} | {r['mlm'][1]:.2f} | "
          f"{r['random'][0]:.2f} | {r['random'][1]:.2f} | {r['ernie'][1] - r['mlm'][1]:+.2f} |")
summary = {"seeds": seeds, "pretraining": pre, "runs": rows}
cells = []
for arm in arms:
    for i, split in enumerate(("dev", "test")):
        mean, std = stats([r[arm][i] for r in rows.values()])
        summary[f"{arm}_{split}"] = {"mean": mean, "std": std, "min": min(r[arm][i] for r in rows.values()),
                                     "max": max(r[arm][i] for r in rows.values())}
        cells.append(f"{mean:.2f} ± {std:.2f}")
gains = [r["ernie"][1] - r["mlm"][1] for r in rows.values()]
gain, gain_std = stats(gains)
summary["test_gain_over_mlm"] = {"mean": gain, "std": gain_std, "stderr": gain_std / len(gains) ** 0.5,
                                 "positive": sum(g > 0 for g in gains)}
print(f"| mean ± std | {' | '.join(cells)} | {gain:+.2f} ± {gain_std:.2f} |")
print(f"test accuracy, schedule - MLM alone (paired by seed): {gain:+.2f} ± {summary['test_gain_over_mlm']['stderr']:.2f} "
      f"(standard error), positive in {summary['test_gain_over_mlm']['positive']} of {len(gains)} seeds")
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
PY
