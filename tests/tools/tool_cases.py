"""Models for the tool tests: random Hugging Face models over the shipped vocabulary (corpora/vocab.txt),
every parameter redrawn, converted to uer_ds directories; their HF originals are the reference."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))
from hf_cases import perturb_  # noqa: E402

from uer_ds.convert import convert  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VOCAB = ROOT / "corpora" / "vocab.txt"
VOCAB_SIZE = len(VOCAB.read_text(encoding="utf-8").splitlines())
TOL = dict(rtol=1e-5, atol=1e-5)


def hf_tokenizer():
    return transformers.BertTokenizer(str(VOCAB), do_lower_case=True)


def make(kind: str, directory: Path, seed: int = 0):
    """(HF model, uer_ds model directory) for kind bert-mlm, bert or gpt2."""
    torch.manual_seed(seed)
    if kind.startswith("bert"):
        cfg = transformers.BertConfig(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=64)
        hf = (transformers.BertForMaskedLM if kind == "bert-mlm" else transformers.BertModel)(cfg).eval()
        family = "bert"
    else:
        cfg = transformers.GPT2Config(vocab_size=VOCAB_SIZE, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      bos_token_id=2, eos_token_id=3)
        hf = transformers.GPT2LMHeadModel(cfg).eval()
        family = "gpt2"
    perturb_(hf, seed)
    hf.save_pretrained(directory / "hf")
    convert("hf", "uer_ds", directory / "hf", directory / "ours", family)
    return hf, directory / "ours"
