#!/usr/bin/env bash
# README command 1: set up .venv, then the quickstart on the shipped corpus.
# (At this stage: build a tiny BERT from its config, tokenize the corpus, one forward pass, MLM loss.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/launch/setup"
cd "$root"
export PATH="$root/.venv/bin:$PATH"

uer-ds model summary --config_path bert/tiny --vocab_path corpora/vocab.txt

python - <<'PY'
import math, torch
from uer_ds.config import ModelConfig
from uer_ds.models import IGNORE_INDEX, build_model
from uer_ds.tokenizers import build_tokenizer

torch.manual_seed(0)
tok = build_tokenizer("bert", vocab_path="corpora/vocab.txt")
cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": tok.vocab_size, "target": ["mlm"], "data_processor": "mlm"})
model = build_model(cfg).eval()
lines = open("corpora/reviews.txt", encoding="utf-8").read().splitlines()[:32]
seq = 128
src = torch.full((len(lines), seq), tok.pad_id)
seg = torch.zeros_like(src)
for i, line in enumerate(lines):
    ids = [tok.cls_id] + tok.encode(line)[: seq - 2] + [tok.sep_id]
    src[i, : len(ids)] = torch.tensor(ids)
    seg[i, : len(ids)] = 1
picked = (torch.rand(src.shape) < 0.15) & (seg > 0) & (src != tok.cls_id) & (src != tok.sep_id)
tgt = torch.where(picked, src, IGNORE_INDEX)
src = torch.where(picked, tok.mask_id, src)
with torch.no_grad():
    result = model(src, tgt, seg)
print(f"tokenized {len(lines)} documents, {int((seg > 0).sum())} tokens; masked {int(result.denominator)}")
print(f"MLM loss of the untrained tiny BERT: {result.loss.item():.4f} "
      f"(ln vocab_size = {math.log(tok.vocab_size):.4f}), accuracy {result.accuracy:.4f}")
PY
