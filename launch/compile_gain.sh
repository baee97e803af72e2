#!/usr/bin/env bash
# Issue #9's CPU figure: pre-training speed of bert/tiny and bert/mini with --compile against without,
# side by side: the runs alternate (eager, compiled, eager, compiled, ...) so both see the same machine,
# REPEATS times each (default 2), and one table gives the mean and the spread of tokens/s.
# Usage: launch/compile_gain.sh [OUT]   (env: REPEATS, STEPS, CONFIGS, DEEPSPEED_CONFIG, THREADS)
# Same work for both: MLM on CLUECorpusSmall_sampled at seq 128, batch 32, tokens counted as batch x
# seq_length per step; the compiled runs' compilation happens in the untimed warm-up steps.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=${1:-$root/out/compile_gain}
repeats=${REPEATS:-2}
steps=${STEPS:-30}
configs=${CONFIGS:-"bert/tiny bert/mini"}
ds=${DEEPSPEED_CONFIG:-zero0}
shared=${UER_DS_SHARED_DATA:-$root/../shared/data}
mkdir -p "$out"
export DS_ACCELERATOR=cpu OMP_NUM_THREADS=${THREADS:-2}
uer() { "$root/.venv/bin/python" -m uer_ds "$@"; }
corpus="$shared/corpora/CLUECorpusSmall_sampled.txt"
vocab="$shared/models/google_zh_vocab.txt"
[ -f "$corpus" ] || { echo "needs $corpus (the shared UER-py data; set UER_DS_SHARED_DATA)" >&2; exit 1; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/load.txt"
for round in $(seq 1 "$repeats"); do
  for cfg in $configs; do
    for mode in eager compile; do
      name="${cfg#*/}_${mode}_$round"
      uer bench pretrain --config_path "$cfg" --corpus_path "$corpus" --vocab_path "$vocab" --deepspeed_config "$ds" \
        --batch_size 32 --seq_length 128 --steps "$steps" --warmup_steps 5 \
        $([ "$mode" = compile ] && echo --compile) --json_path "$out/$name.json" > "$out/$name.log" 2>&1
      echo "$name: $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['tokens_per_s']))" \
        "$out/$name.json") tokens/s; load $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/load.txt"
python3 - "$out" <<'PY'
import json, pathlib, statistics, sys
rows = {}
for f in sorted(pathlib.Path(sys.argv[1]).glob("*_*_*.json")):
    model, mode, _ = f.stem.rsplit("_", 2)
    rows.setdefault(model, {}).setdefault(mode, []).append(json.loads(f.read_text())["tokens_per_s"])
print("| model | eager tokens/s | compiled tokens/s | compiled / eager |")
print("| --- | --- | --- | --- |")
for model, modes in rows.items():
    e, c = modes.get("eager", [0]), modes.get("compile", [0])
    fmt = lambda v: f"{statistics.mean(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})"
    print(f"| bert/{model} | {fmt(e)} | {fmt(c)} | {statistics.mean(c) / statistics.mean(e):.2f} |")
PY
