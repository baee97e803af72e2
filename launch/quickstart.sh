#!/usr/bin/env bash
# README command 1: set up .venv, then the quickstart on the shipped corpus (CPU is enough):
#   preprocess -> pre-train a tiny BERT with DeepSpeed ZeRO-2, stopping half-way -> resume to the end
#   -> fine-tune a classifier on corpora/reviews_cls from it -> predict the unlabelled test set.
# Outputs go to out/quickstart/ (or $QUICKSTART_OUT; removed and rewritten on each run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/launch/setup"
cd "$root"
export PATH="$root/.venv/bin:$PATH" DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}" \
       TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$root/.torch_extensions}"
out=${QUICKSTART_OUT:-out/quickstart}
rm -rf "$out"
mkdir -p "$out"
quiet() { grep -v -e '^\[20' -e 'UserWarning' -e 'warnings.warn' || true; }  # DeepSpeed's INFO lines

echo "== 1. preprocess: corpus -> $out/dataset.{bin,idx,json}"
uer-ds preprocess --corpus_path corpora/reviews_bert.txt --vocab_path corpora/vocab.txt \
  --dataset_path "$out/dataset" --target bert --seq_length 128 --processes_num 2

pretrain=(uer-ds pretrain --dataset_path "$out/dataset" --vocab_path corpora/vocab.txt --config_path bert/tiny
          --deepspeed_config zero2 --output_model_path "$out/pretrain" --total_steps 200 --batch_size 16
          --learning_rate 1e-3 --warmup 0.1 --report_steps 50 --save_checkpoint_steps 100
          --metrics_path "$out/pretrain_metrics.jsonl" --no_progress)
echo "== 2. pre-train a tiny BERT (MLM + NSP) with ZeRO-2, stopping after step 100 of 200"
"${pretrain[@]}" --stop_after_steps 100 2>&1 | quiet
echo "== 3. resume from the step-100 checkpoint and finish"
"${pretrain[@]}" --resume 2>&1 | quiet
python - "$out/pretrain_metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for r in rows:
    print(f"step {r['step']:>4}  loss {r['loss']:.3f}  mlm acc {r['mlm_acc']:.3f}  nsp acc {r['sp_acc']:.3f}  "
          f"{r['tokens_per_s']:,.0f} tokens/s")
PY
echo "== 4. fine-tune a classifier on corpora/reviews_cls from the pre-trained model (dev after each epoch)"
uer-ds finetune classifier --pretrained_model_path "$out/pretrain/model" --vocab_path corpora/vocab.txt \
  --config_path bert/tiny --train_path corpora/reviews_cls/train.tsv --dev_path corpora/reviews_cls/dev.tsv \
  --test_path corpora/reviews_cls/test.tsv --output_model_path "$out/classifier" --epochs_num 3 --batch_size 32 \
  --seq_length 64 --learning_rate 1e-3 --bad_case_path "$out/bad_cases.tsv" --no_progress 2>&1 | quiet
echo "== 5. predict the unlabelled test set with the best model"
uer-ds infer classifier --load_model_path "$out/classifier" --vocab_path corpora/vocab.txt \
  --test_path corpora/reviews_cls/test_nolabel.tsv --prediction_path "$out/predictions.tsv" --output_prob \
  --no_progress 2>&1 | quiet
head -n 4 "$out/predictions.tsv"
