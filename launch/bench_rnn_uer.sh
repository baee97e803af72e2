#!/usr/bin/env bash
# Recurrent encoders side by side (issue 18, item 0): `uer-ds finetune classifier` against UER-py's
# finetune/run_classifier.py on the same data, config and flags, one run after the other, REPEATS times
# each; prints a table (wall time, test accuracy, machine load before/after) and writes OUT/results.json.
#
#   launch/bench_rnn_uer.sh UERPY_CHECKOUT [OUT]   # ENCODER=lstm|gru|bilstm|bigru|rcnn|crnn REPEATS=2 THREADS=1
#                                                    # UERPY_RCNN=FILE (rcnn/crnn: UER-py's own, below)
#                                                    # ROWS=9600 SEEDS="7" (several seeds: accuracy as a mean)
#
# UERPY_CHECKOUT: a checkout of dbiir/UER-py (finetune/, uer/), e.g.
#   git clone https://github.com/dbiir/UER-py   (or: git --git-dir=<mirror> archive HEAD finetune uer models/special_tokens_map.json | tar -x -C DIR)
# UER-py needs the `six` package beside torch (pip install six).
# Set-up (the issue's): a 9,600-row sentiment training set (the first 9,600 rows of Douban book review's
# train.tsv; dev and test: its first 1,200 rows each), an LSTM with emb/hidden 128 and 2 layers (word
# embedding only), 3 epochs, batch 64, seq_length 128, mean pooling, lr 1e-3, seed 7, no gradient
# clipping on our side (UER-py clips none).  rcnn/crnn (kernel_size 4): UER-py removed them in 2021;
# UERPY_RCNN=FILE, its uer/encoders/mixed_encoder.py from before then (e.g. `git -C UER-py show
# 0b04dd7:uer/encoders/mixed_encoder.py > FILE`), gives them a UER-py column: the script copies the
# checkout to OUT/uerpy_rcnn and registers that file's RcnnEncoder/CrnnEncoder there (nothing else
# changes); without it only our column is measured.
# Run it on a quiet machine: both programs share the CPU cores with whatever else runs (load recorded).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
uerpy="$(cd "${1:?usage: launch/bench_rnn_uer.sh UERPY_CHECKOUT [OUT]}" && pwd)"
out="$(mkdir -p "${2:-$root/out/bench_rnn_uer}" && cd "${2:-$root/out/bench_rnn_uer}" && pwd)"
encoder="${ENCODER:-lstm}"
repeats="${REPEATS:-2}"
seeds="${SEEDS:-7}"
threads="${THREADS:-1}"
python="${PYTHON:-$root/.venv/bin/python}"
data="${DATA:-$root/../shared/data/datasets/douban_book_review}"
vocab="${VOCAB:-$root/../shared/data/models/google_zh_vocab.txt}"
for need in finetune/run_classifier.py models/special_tokens_map.json; do
  [ -f "$uerpy/$need" ] || { echo "$uerpy: no $need (a UER-py checkout has it)" >&2; exit 1; }
done

mkdir -p "$out/data"
rows="${ROWS:-9600}"  # a smaller ROWS for a smoke run (dev/test: an eighth of it)
head -n $((rows + 1)) "$data/train.tsv" > "$out/data/train.tsv"
head -n $((rows / 8 + 1)) "$data/dev.tsv" > "$out/data/dev.tsv"
head -n $((rows / 8 + 1)) "$data/test.tsv" > "$out/data/test.tsv"
cat > "$out/config.json" <<EOF
{"emb_size": 128, "hidden_size": 128, "layers_num": 2, "dropout": 0.1, "max_seq_length": 1024,
 "embedding": ["word"], "remove_embedding_layernorm": true, "encoder": "$encoder", "target": ["lm"],
 "data_processor": "lm"}
EOF
if [ "${encoder#bi}" != "$encoder" ]; then  # UER-py's bidirectional encoders take bilm; ours too
  sed -i 's/"target": \["lm"\]/"target": ["bilm"]/; s/"data_processor": "lm"/"data_processor": "bilm"/' "$out/config.json"
fi
flags=(--vocab_path "$vocab" --config_path "$out/config.json" --train_path "$out/data/train.tsv"
       --dev_path "$out/data/dev.tsv" --test_path "$out/data/test.tsv" --epochs_num 3 --batch_size 64
       --seq_length 128 --pooling mean --learning_rate 1e-3)
programs=(uer_ds)
case "$encoder" in
  lstm|gru|bilstm|bigru) programs+=(uerpy) ;;
  rcnn|crnn)
    sed -i 's/"data_processor": "lm"/"data_processor": "lm", "kernel_size": 4/' "$out/config.json"
    if [ -n "${UERPY_RCNN:-}" ]; then  # UER-py's own rcnn/crnn, from its history
      grep -q "class RcnnEncoder" "$UERPY_RCNN" || { echo "$UERPY_RCNN: no RcnnEncoder (want UER-py's old mixed_encoder.py)" >&2; exit 1; }
      rm -rf "$out/uerpy_rcnn" && mkdir -p "$out/uerpy_rcnn"
      cp -r "$uerpy/finetune" "$uerpy/uer" "$uerpy/models" "$out/uerpy_rcnn/"
      cp "$UERPY_RCNN" "$out/uerpy_rcnn/uer/encoders/mixed_encoder.py"
      printf '%s\n' "from uer.encoders.mixed_encoder import RcnnEncoder, CrnnEncoder" \
        'str2encoder.update({"rcnn": RcnnEncoder, "crnn": CrnnEncoder})' >> "$out/uerpy_rcnn/uer/encoders/__init__.py"
      uerpy="$out/uerpy_rcnn"
      programs+=(uerpy)
    fi ;;
esac

: > "$out/runs.jsonl"
run=0
for seed in $seeds; do
for repeat in $(seq 1 "$repeats"); do
  run=$((run + 1))
  order=("${programs[@]}")
  if [ $((run % 2)) -eq 0 ] && [ ${#programs[@]} -eq 2 ]; then order=("${programs[1]}" "${programs[0]}"); fi
  for program in "${order[@]}"; do  # the order alternates, so a load that falls or rises favours neither
    log="$out/$program.$run.log"
    load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
    start=$(date +%s.%N)
    if [ "$program" = uer_ds ]; then
      (cd "$root" && OMP_NUM_THREADS=$threads DS_ACCELERATOR=cpu "$python" -m uer_ds finetune classifier "${flags[@]}" \
        --seed "$seed" --max_grad_norm 0 --output_model_path "$out/model_uer_ds" --no_progress) > "$log" 2>&1 || true
      acc=$(grep -o "test (best model): [0-9]* examples  accuracy [0-9.]*" "$log" | awk '{print $NF}' || true)
    else
      (cd "$uerpy" && OMP_NUM_THREADS=$threads "$python" finetune/run_classifier.py "${flags[@]}" \
        --seed "$seed" --output_model_path "$out/model_uerpy.bin") > "$log" 2>&1 || true
      acc=$(grep -o "Acc. (Correct/Total): [0-9.]*" "$log" | tail -1 | awk '{print $NF}' || true)
    fi
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "{\"program\": \"$program\", \"run\": $run, \"seed\": $seed, \"wall_s\": $wall, \"test_accuracy\": ${acc:-null}," \
         "\"load_before\": \"$load_before\", \"load_after\": \"$load_after\"}" >> "$out/runs.jsonl"
    echo "$program run $run (seed $seed): ${wall%.*} s, test accuracy ${acc:-? (failed: see $log)} (load $load_before -> $load_after)" >&2
  done
done
done

"$python" - "$out" "$encoder" "$threads" <<'EOF'
import json, statistics, sys
out, encoder, threads = sys.argv[1], sys.argv[2], sys.argv[3]
runs = [json.loads(line) for line in open(f"{out}/runs.jsonl")]
rows = sum(1 for _ in open(f"{out}/data/train.tsv")) - 1
print(f"{encoder}, emb/hidden 128, 2 layers; {rows:,} training rows, 3 epochs, batch 64, seq 128; {threads} thread(s)")
print(f"{'program':<8} {'run':>3} {'seed':>4} {'wall s':>8} {'test acc':>9}  load before -> after")
for r in runs:
    acc = "n/a" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
    print(f"{r['program']:<8} {r['run']:>3} {r['seed']:>4} {r['wall_s']:>8.1f} {acc:>9}  "
          f"{r['load_before']} -> {r['load_after']}")
summary = {}
for program in dict.fromkeys(r["program"] for r in runs):
    walls = [r["wall_s"] for r in runs if r["program"] == program]
    accs = [r["test_accuracy"] for r in runs if r["program"] == program and r["test_accuracy"] is not None]
    summary[program] = {"wall_s_mean": statistics.mean(walls), "wall_s_min": min(walls), "wall_s_max": max(walls),
                        "test_accuracy_mean": statistics.mean(accs) if accs else None,
                        "test_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else None, "runs": len(walls)}
    s = summary[program]
    spread = f" ± {s['test_accuracy_std']:.4f}" if s["test_accuracy_std"] is not None else ""
    print(f"{program:<8} mean {s['wall_s_mean']:.1f} s (spread {s['wall_s_min']:.1f}-{s['wall_s_max']:.1f}), "
          f"test accuracy {s['test_accuracy_mean'] if accs else float('nan'):.4f}{spread}")
if "uerpy" in summary:
    ratio = summary["uerpy"]["wall_s_mean"] / summary["uer_ds"]["wall_s_mean"]
    print(f"uer_ds time / UER-py time: {1 / ratio:.2f} (speed-up {ratio:.2f}x)")
    summary["speedup_vs_uerpy"] = ratio
json.dump({"encoder": encoder, "threads": int(threads), "train_rows": rows, "runs": runs, "summary": summary},
          open(f"{out}/results.json", "w"), indent=2)
print(f"wrote {out}/results.json")
EOF
