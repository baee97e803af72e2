"""Sequence lengths of real fine-tuning data, for the varlen rows of `uer-ds bench kernels`.

The benchmark runs where ../shared/data may be absent (a GPU machine gets the repository only), so the
length histograms are kept in `length_distributions.json` beside this module: derived counts, not the
data.  They are the lengths the project's own readers give (the classifier's [CLS] text [SEP] cut at
seq_length; CMRC2018's question + context windows at doc stride 128), tokenized with Google's Chinese
BERT vocabulary.  Regenerate (and check) them with

    python -m uer_ds.kernels.lengths --data_dir ../shared/data

A batch is then `sample(name, seq, rows, rng)`: lengths drawn from the histogram (cut at seq when the
histogram is for a longer seq), padded by the runner to its longest row.  Also `uniform` (1..seq) and
`full` (every row seq long: no padding).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

DISTRIBUTIONS_FILE = Path(__file__).with_name("length_distributions.json")
# name -> (task whose reader makes the examples, file under the data folder)
SOURCES = {"book_review": ("classifier", "datasets/book_review/dev.tsv"),
           "cmrc2018": ("cmrc", "datasets/cmrc2018/dev.json")}
SYNTHETIC = ("uniform", "full")
SEQ_LENGTHS = (128, 512)
VOCAB = "models/google_zh_vocab.txt"


def measure(data_dir: Path, seq_lengths=SEQ_LENGTHS) -> dict:
    """{name: {seq: {"source": file, "examples": n, "counts": {length: count}}}} from the data itself."""
    from uer_ds.tasks import TASKS
    from uer_ds.tokenizers import build_tokenizer

    tokenizer = build_tokenizer("bert", vocab_path=data_dir / VOCAB)
    out: dict = {}
    for name, (task, relative) in SOURCES.items():
        for seq in seq_lengths:
            spec = {"doc_stride": 128, "max_query_length": 64} if task == "cmrc" else {}
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                examples = TASKS[task].read(str(data_dir / relative), tokenizer, seq, spec, True)  # (its notes muted)
            lengths, counts = np.unique([len(e.src) for e in examples], return_counts=True)
            out.setdefault(name, {})[str(seq)] = {"source": relative, "examples": len(examples),
                                                  "counts": {str(k): int(c) for k, c in zip(lengths, counts)}}
    return out


def load() -> dict:
    return json.loads(DISTRIBUTIONS_FILE.read_text(encoding="utf-8"))


def names() -> tuple[str, ...]:
    return tuple(SOURCES) + SYNTHETIC


def sample(name: str, seq: int, rows: int, rng: np.random.Generator,
           distributions: Optional[dict] = None) -> list[int]:
    """`rows` sequence lengths of distribution `name` at sequence length `seq` (each 1..seq)."""
    if name == "uniform":
        return rng.integers(1, seq + 1, rows).tolist()
    if name == "full":
        return [seq] * rows
    if name not in SOURCES:
        raise ValueError(f"length distribution '{name}' is unknown: it must be one of {', '.join(names())}")
    table = (distributions or load())[name]
    kept = [int(s) for s in table if int(s) >= seq]
    histogram = table[str(min(kept) if kept else max(int(s) for s in table))]["counts"]
    lengths = np.array([int(k) for k in histogram])
    weights = np.array(list(histogram.values()), dtype=np.float64)
    return np.minimum(rng.choice(lengths, size=rows, p=weights / weights.sum()), seq).tolist()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uer_ds.kernels.lengths", description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True, help="the shared data folder (../shared/data)")
    parser.add_argument("--check", action="store_true", help="compare with the kept file instead of writing it")
    args = parser.parse_args(argv)
    measured = measure(Path(args.data_dir))
    if args.check:
        same = measured == load()
        print("length_distributions.json is " + ("up to date" if same else "OUT OF DATE"))
        return 0 if same else 1
    DISTRIBUTIONS_FILE.write_text(json.dumps(measured, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    for name, per_seq in measured.items():
        for seq, entry in per_seq.items():
            counts = entry["counts"]
            total = sum(counts.values())
            mean = sum(int(k) * v for k, v in counts.items()) / total
            print(f"{name} seq {seq}: {entry['examples']} examples, mean length {mean:.1f}, "
                  f"{1 - mean / int(seq):.0%} padding when padded to seq")
    print(f"wrote {DISTRIBUTIONS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
