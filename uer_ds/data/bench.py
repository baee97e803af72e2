"""`uer-ds bench preprocess`: speed of preprocessing against Hugging Face tokenizers and pure Python.

Rows (each the best of --runs):
  uer_ds preprocess, P processes   the whole command: read, tokenize (C), write OUT.bin/.idx/.json,
                                   in a fresh interpreter; CPU s = CPU time of it and its workers
  HF tokenizers, 1 thread          BertWordPieceTokenizer.encode_batch over the lines already in
                                   memory (RAYON_NUM_THREADS=1, in a subprocess so it takes effect);
                                   tokenization only, nothing written
  pure Python                      uer_ds's own BertTokenizer.encode per line (the reference the C
                                   code reproduces), lines in memory, nothing written
MB/s counts corpus bytes over wall time; MB/CPU s over CPU time, which other work on the machine
disturbs less; bytes/token is OUT.bin + OUT.idx over the tokens.  The ids of HF and of
the Python tokenizer are compared with ours (ids_equal).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_OURS_SCRIPT = r"""
import json, resource, sys, time
from uer_ds.data.preprocessing import PreprocessOptions, preprocess
from uer_ds.tokenizers import build_tokenizer
corpus, vocab, lower, target, processes, runs, prefix = sys.argv[1:]
tok = build_tokenizer("bert", vocab_path=vocab, do_lower_case=lower == "true")

def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))

best = None
for _ in range(int(runs)):
    began, cpu0 = time.perf_counter(), cpu()
    meta = preprocess(corpus, prefix, tok, PreprocessOptions(target), processes_num=int(processes), progress=False)
    run = (time.perf_counter() - began, cpu() - cpu0)
    best = min(best or run, run)
json.dump({"seconds": best[0], "cpu_seconds": best[1], "tokens": meta["counts"]["tokens"]}, sys.stdout)
"""

_HF_SCRIPT = r"""
import json, sys, time
from tokenizers import BertWordPieceTokenizer
corpus, vocab, lower, runs = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
lines = [l for l in open(corpus, encoding="utf-8-sig").read().split("\n") if l.strip()]
tok = BertWordPieceTokenizer(vocab, lowercase=lower, strip_accents=None if lower else False)
best = None
for _ in range(runs):
    t, c = time.perf_counter(), time.process_time()
    out = tok.encode_batch(lines, add_special_tokens=False)
    best = min(best or (1e9,), (time.perf_counter() - t, time.process_time() - c))
ids = [i for e in out for i in e.ids]
json.dump({"seconds": best[0], "cpu_seconds": best[1], "tokens": len(ids), "ids": ids}, sys.stdout)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus_path", required=True, help="one document per line (or a bert corpus with --target)")
    parser.add_argument("--vocab_path", required=True, help="WordPiece vocabulary")
    parser.add_argument("--do_lower_case", default="true", choices=("true", "false"),
                        help="lower-case before WordPiece, for every tokenizer compared (default true)")
    parser.add_argument("--target", default="mlm", help="data processor, which picks the corpus format (default mlm)")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts (default 1,2)")
    parser.add_argument("--repeat", type=int, default=1, help="concatenate the corpus this many times first")
    parser.add_argument("--runs", type=int, default=3, help="take the best of this many runs (default 3)")
    parser.add_argument("--skip_hf", action="store_true", help="leave out Hugging Face tokenizers")
    parser.add_argument("--skip_python", action="store_true", help="leave out the pure-Python tokenizer")
    parser.add_argument("--json_path", default="bench_preprocess.json", help="where to write the results")


def _corpus(path: Path, repeat: int, folder: str) -> Path:
    if repeat <= 1:
        return path
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        data += b"\n"
    out = Path(folder) / f"{path.stem}_x{repeat}{path.suffix}"
    with open(out, "wb") as f:
        for _ in range(repeat):
            f.write(data)
    return out


def _ours(corpus: Path, args: argparse.Namespace, processes: int, folder: str) -> dict:
    """In a fresh interpreter (as `uer-ds preprocess` runs: no torch loaded, so forking is cheap)."""
    from uer_ds.data.mmap_dataset import MMapDataset

    prefix = os.path.join(folder, f"bench_p{processes}")
    out = subprocess.run([sys.executable, "-c", _OURS_SCRIPT, str(corpus), args.vocab_path, args.do_lower_case,
                          args.target, str(processes), str(args.runs), prefix], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    disk = os.path.getsize(prefix + ".bin") + os.path.getsize(prefix + ".idx")
    return {"name": f"uer_ds preprocess (C), {processes} process{'es' if processes > 1 else ''}",
            "seconds": result["seconds"], "cpu_seconds": result["cpu_seconds"], "tokens": result["tokens"],
            "bytes_per_token": disk / result["tokens"], "ids": np.asarray(MMapDataset(prefix).tokens)}


def _hf(corpus: Path, vocab: str, lower: bool, runs: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="true")
    out = subprocess.run([sys.executable, "-c", _HF_SCRIPT, str(corpus), vocab, "1" if lower else "0", str(runs)],
                         capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout)
    return {"name": "HF tokenizers BertWordPieceTokenizer.encode_batch, 1 thread", "seconds": result["seconds"],
            "cpu_seconds": result["cpu_seconds"], "tokens": result["tokens"], "ids": np.asarray(result["ids"])}


def _python(corpus: Path, vocab: str, lower: bool) -> dict:
    from uer_ds.tokenizers import build_tokenizer

    tok = build_tokenizer("bert", vocab_path=vocab, do_lower_case=lower)
    lines = [x for x in corpus.read_text(encoding="utf-8-sig").split("\n") if x.strip()]
    began, cpu = time.perf_counter(), time.process_time()
    ids = [i for line in lines for i in tok.encode(line)]
    return {"name": "uer_ds BertTokenizer, pure Python", "seconds": time.perf_counter() - began,
            "cpu_seconds": time.process_time() - cpu, "tokens": len(ids), "ids": np.asarray(ids)}


def run(args: argparse.Namespace) -> int:
    lower = args.do_lower_case == "true"
    folder = tempfile.mkdtemp(prefix="uer_ds_bench_")
    try:
        corpus = _corpus(Path(args.corpus_path), args.repeat, folder)
        size = corpus.stat().st_size
        rows = [_ours(corpus, args, int(p), folder) for p in args.processes.split(",")]
        if not args.skip_hf:
            rows.append(_hf(corpus, args.vocab_path, lower, args.runs))
        if not args.skip_python:
            rows.append(_python(corpus, args.vocab_path, lower))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    reference = rows[0]["ids"]
    hf = next((r for r in rows if r["name"].startswith("HF")), None)
    for r in rows:
        r["mb_per_s"] = size / r["seconds"] / 1e6
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["ids_equal"] = bool(np.array_equal(r.pop("ids"), reference))
        r["vs_hf"] = (hf["seconds"] / r["seconds"]) if hf else None
        r["mb_per_cpu_s"] = size / r["cpu_seconds"] / 1e6
    _print(args, size, rows)
    report = {"benchmark": "preprocess", "corpus": args.corpus_path, "repeat": args.repeat, "bytes": size,
              "vocab": args.vocab_path, "target": args.target, "runs": args.runs,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "rows": rows}
    Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json_path}")
    return 0


def _print(args, size: int, rows: list[dict]) -> None:
    print(f"corpus {args.corpus_path} x{args.repeat} ({size / 1e6:.2f} MB), vocab {os.path.basename(args.vocab_path)}, "
          f"best of {args.runs}, {os.cpu_count()} CPUs")
    width = max(len(r["name"]) for r in rows)
    print(f"{'':<{width}}  {'MB/s':>7}  {'tokens/s':>11}  {'bytes/token':>11}  {'x HF':>6}  {'CPU s':>6}  {'MB/CPU s':>8}  ids equal")
    for r in rows:
        bpt = f"{r['bytes_per_token']:.2f}" if "bytes_per_token" in r else "-"
        vs = f"{r['vs_hf']:.1f}" if r["vs_hf"] else "-"
        print(f"{r['name']:<{width}}  {r['mb_per_s']:>7.2f}  {r['tokens_per_s']:>11,.0f}  {bpt:>11}  {vs:>6}  "
              f"{r['cpu_seconds']:>6.3f}  {r['mb_per_cpu_s']:>8.2f}  {'yes' if r['ids_equal'] else 'NO'}")
