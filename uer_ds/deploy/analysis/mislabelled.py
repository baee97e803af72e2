"""`uer-ds analyse mislabelled`: likely mislabelled training rows by confident learning (Northcutt, Jiang and
Chuang 2021, "Confident Learning: Estimating Uncertainty in Dataset Labels"), computed by cleanlab
(`cleanlab.filter.find_label_issues`, `cleanlab.rank.get_label_quality_scores`) on out-of-fold predicted
probabilities: each row's probabilities come from a model that never saw it.

The probabilities come from --probs_path (N rows x C classes, in file order: .npy, or text with C numbers a
line), or from --folds K fine-tunings: the rows are split into K stratified folds (scikit-learn's
StratifiedKFold, --seed), and for each fold `uer-ds finetune classifier` trains on the other K - 1 folds with
the fine-tuning flags given after `--` (the command line is the stable interface) and `uer-ds infer
classifier --output_prob` predicts the held-out fold.  The out-of-fold probabilities are kept as
oof_probs.npy, to rerun with other settings through --probs_path.

Output directory (written together, atomically):
  label_issues.tsv   the flagged rows, lowest label quality first: line (in --train_path), given, suggested
                     (the most probable class), label_quality (cleanlab's score for --rank_by; self_confidence:
                     the probability of the given label), given_prob, suggested_prob, text_a [text_b]
  mislabelled.json   settings, rows, flagged, flagged per given label, the probabilities' source, seconds
  oof_probs.npy      (N, C) float64 out-of-fold probabilities (with --folds)
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from uer_ds.deploy.analysis.common import check_positive, output_dir, write_tsv, writing

TSV, JSON, PROBS = "label_issues.tsv", "mislabelled.json", "oof_probs.npy"
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
RANKS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
# set by this command for each fold: a pass-through flag among them would be silently overridden
OWN_FLAGS = ("--train_path", "--output_model_path", "--test_path", "--label_path", "--no_header")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train_path", required=True, help="the labelled training file to check (the task's format)")
    parser.add_argument("--label_path", help="label names, one per line (the label column holds names)")
    parser.add_argument("--no_header", action="store_true", help="a file without a header row (PaddleNLP's "
                                                                 "text_a[<TAB>text_b]<TAB>label)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folds", type=int, help="K: fine-tune K models, each on K - 1 folds, and predict the "
                                                  "held-out fold (the fine-tuning flags follow `--`)")
    source.add_argument("--probs_path", help="precomputed out-of-fold probabilities, (rows, classes) in file order: "
                                             ".npy, or text with one row of numbers a line")
    parser.add_argument("--seed", type=int, default=7, help="the fold split's seed (default 7)")
    parser.add_argument("--filter_by", choices=FILTERS, default="prune_by_noise_rate",
                        help="cleanlab's rule for flagging (default prune_by_noise_rate)")
    parser.add_argument("--rank_by", choices=RANKS, default="self_confidence",
                        help="cleanlab's label quality score, which orders the output (default self_confidence)")
    parser.add_argument("--keep_fold_models", action="store_true", help="keep the fold models and predictions "
                                                                        "(folds/ in --output_dir)")
    parser.add_argument("--output_dir", required=True, help="where the output files go (created)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("finetune_args", nargs=argparse.REMAINDER,
                        help="after `--`: the flags of `uer-ds finetune classifier` for each fold (--dev_path among "
                             "them; not --train_path, --output_model_path, --test_path, --label_path, --no_header)")


# ---- the training file ---------------------------------------------------------------------------------
def read_rows(path: str, label_path: Optional[str], no_header: bool):
    """(rows, labels (N,) int64, label names or None) of a labelled file, as the classifier reads its labels
    (uer_ds.tasks.data: errors name file:line, the value and the rule)."""
    from uer_ds.tasks.data import headerless_columns, parse_label, read_label_names, read_tsv

    if not Path(path).is_file():
        raise FileNotFoundError(f"--train_path '{path}': no such file")
    names = read_label_names(label_path) if label_path else None
    columns = headerless_columns(path, True, None) if no_header else None
    _, rows = read_tsv(path, ["label", "text_a"], optional=["text_b"], columns=columns)
    labels = np.array([parse_label(row, None, names=names) for row in rows], dtype=np.int64)
    return rows, labels, names


def load_probs(path: str, rows: Sequence, labels_num: int) -> np.ndarray:
    """(N, C) float64 probabilities from .npy or text; ValueError naming the file and row for a wrong shape,
    a value outside [0, 1] or a row that does not sum to 1 (1e-3), with the training file's line."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--probs_path '{path}': no such file")
    try:
        probs = np.load(path) if path.endswith(".npy") else np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(f"--probs_path {path}: not a .npy array or rows of numbers ({err})") from None
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(rows):
        raise ValueError(f"--probs_path {path}: shape {probs.shape}, expected ({len(rows)}, classes): one row per "
                         "example of --train_path, in file order")
    if probs.shape[1] < labels_num or probs.shape[1] < 2:
        raise ValueError(f"--probs_path {path}: {probs.shape[1]} column(s), but the labels need at least "
                         f"{max(labels_num, 2)} (one per class)")
    bad = np.flatnonzero(~np.isfinite(probs).all(1) | (probs < 0).any(1) | (probs > 1).any(1)
                         | (np.abs(probs.sum(1) - 1) > 1e-3))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"--probs_path {path}: row {i + 1} (for {rows[i].where}) is {probs[i].tolist()}: each row "
                         "must be probabilities in [0, 1] summing to 1")
    return probs


# ---- out-of-fold probabilities ---------------------------------------------------------------------------
def check_finetune_args(flags: Sequence[str]) -> list[str]:
    """The pass-through flags without a leading `--`; ValueError for a flag this command sets itself, or
    without --dev_path (fine-tuning needs it)."""
    flags = list(flags[1:] if flags and flags[0] == "--" else flags)
    given = {f.split("=", 1)[0] for f in flags if f.startswith("--")}
    clash = [f for f in OWN_FLAGS if f in given]
    if clash:
        raise ValueError(f"fine-tuning flags after `--`: {', '.join(clash)} is set by `analyse mislabelled` for each "
                         "fold (give --label_path / --no_header before `--`)")
    if "--dev_path" not in given:
        raise ValueError("fine-tuning flags after `--`: --dev_path is missing (each fold's fine-tuning evaluates on "
                         f"it); given: {shlex.join(flags) or 'none'}")
    return flags


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """The held-out row indices of each of `folds` stratified folds (scikit-learn StratifiedKFold, shuffled)."""
    from sklearn.model_selection import StratifiedKFold

    if not 2 <= folds <= len(labels):
        raise ValueError(f"--folds has value {folds}: must be at least 2 and at most the {len(labels)} rows")
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held for _, held in split.split(np.zeros(len(labels)), labels)]


def _run(cmd: list[str], log: Path, what: str) -> None:
    with open(log, "w", encoding="utf-8") as f:
        result = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if result.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-8:]
        raise ValueError(f"{what} failed (exit {result.returncode}): {shlex.join(cmd)}\n  " + "\n  ".join(tail))


def _read_probs(path: Path, count: int, headerless: bool) -> np.ndarray:
    """The `prob` column of `uer-ds infer classifier --output_prob` output -> (count, C)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not headerless:
        column, lines = lines[0].split("\t").index("prob"), lines[1:]
    else:
        column = 1  # label, prob
    probs = np.array([[float(v) for v in line.split("\t")[column].split()] for line in lines], dtype=np.float64)
    if len(probs) != count:
        raise ValueError(f"{path}: {len(probs)} prediction(s) for {count} held-out row(s)")
    return probs


def out_of_fold_probs(args: argparse.Namespace, lines: list[str], header: Optional[str], labels: np.ndarray,
                      names: Optional[list[str]], work: Path) -> np.ndarray:
    """(N, C) probabilities of each row from the model fine-tuned without its fold, by subprocesses of
    `uer-ds finetune classifier` and `uer-ds infer classifier`.  lines: the data rows' text, header: the
    header row (None for --no_header)."""
    from tqdm import tqdm

    flags = check_finetune_args(args.finetune_args)
    labels_num = len(names) if names else int(labels.max()) + 1
    shared = (["--label_path", str(Path(args.label_path).resolve())] if args.label_path else []) + \
             (["--no_header"] if args.no_header else [])
    probs = np.full((len(labels), labels_num), np.nan)
    uer_ds = [sys.executable, "-m", "uer_ds"]
    for k, held in enumerate(tqdm(fold_indices(labels, args.folds, args.seed), desc="folds",
                                  disable=args.no_progress)):
        fold = work / f"fold{k}"
        fold.mkdir(parents=True, exist_ok=True)
        mask = np.zeros(len(labels), dtype=bool)
        mask[held] = True
        for name, chosen in (("train.tsv", ~mask), ("heldout.tsv", mask)):
            rows = [line for line, keep in zip(lines, chosen) if keep]
            (fold / name).write_text("".join(f"{r}\n" for r in ([header] if header is not None else []) + rows),
                                     encoding="utf-8")
        count = [] if names else ["--labels_num", str(labels_num)]  # a fold may miss a class
        _run([*uer_ds, "finetune", "classifier", *flags, *shared, *count, "--train_path", str(fold / "train.tsv"),
              "--output_model_path", str(fold / "model")], fold / "finetune.log", f"fold {k + 1}/{args.folds}: "
             "uer-ds finetune")
        _run([*uer_ds, "infer", "classifier", "--load_model_path", str(fold / "model"), "--test_path",
              str(fold / "heldout.tsv"), "--prediction_path", str(fold / "predictions.tsv"), "--output_prob",
              "--no_progress", *shared], fold / "infer.log", f"fold {k + 1}/{args.folds}: uer-ds infer")
        probs[held] = _read_probs(fold / "predictions.tsv", len(held), args.no_header)
    return probs


# ---- confident learning ----------------------------------------------------------------------------------
def label_issues(labels: np.ndarray, probs: np.ndarray, filter_by: str = "prune_by_noise_rate",
                 rank_by: str = "self_confidence") -> tuple[np.ndarray, np.ndarray]:
    """(flagged row indices, lowest label quality first; label quality scores (N,) float64) by cleanlab:
    find_label_issues(labels, probs, filter_by, return_indices_ranked_by=rank_by) and
    get_label_quality_scores(labels, probs, method=rank_by).  labels (N,) int64, probs (N, C) float64."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(labels, probs, filter_by=filter_by, return_indices_ranked_by=rank_by)
    scores = get_label_quality_scores(labels, probs, method=rank_by)
    return np.asarray(flagged, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def run(args: argparse.Namespace) -> int:
    """`uer-ds analyse mislabelled`: probabilities (given or K fine-tunings), cleanlab, the output files."""
    from uer_ds.textfile import read_lines

    check_positive(folds=args.folds)
    if args.probs_path and [a for a in args.finetune_args if a != "--"]:
        raise ValueError("fine-tuning flags after `--` are for --folds; with --probs_path nothing is fine-tuned")
    rows, labels, names = read_rows(args.train_path, args.label_path, args.no_header)
    with output_dir(args.output_dir) as out:
        started = time.perf_counter()
        if args.probs_path:
            probs = load_probs(args.probs_path, rows, len(names) if names else int(labels.max()) + 1)
        else:
            work = out / "folds"
            text = read_lines(args.train_path, "data file")
            lines = [text[row.line - 1] for row in rows]
            try:
                probs = out_of_fold_probs(args, lines, None if args.no_header else text[0], labels, names, work)
            finally:
                if not args.keep_fold_models:
                    shutil.rmtree(work, ignore_errors=True)
        flagged, scores = label_issues(labels, probs, args.filter_by, args.rank_by)
        seconds = time.perf_counter() - started
        name = (lambda i: names[i]) if names else str
        texts = ["text_a", "text_b"] if "text_b" in rows[0].values else ["text_a"]
        suggested = probs.argmax(axis=1)
        table = [[rows[i].line, name(labels[i]), name(suggested[i]), f"{scores[i]:.6f}", f"{probs[i, labels[i]]:.6f}",
                  f"{probs[i, suggested[i]]:.6f}", *(rows[i].values[t] for t in texts)] for i in flagged]
        per_label = {name(c): int((labels[flagged] == c).sum()) for c in range(probs.shape[1])}
        summary = {"train_path": str(args.train_path), "rows": len(rows), "classes": int(probs.shape[1]),
                   "flagged": len(flagged), "flagged_per_given_label": per_label, "filter_by": args.filter_by,
                   "rank_by": args.rank_by, "seconds": round(seconds, 3),
                   "probabilities": args.probs_path or {"folds": args.folds, "seed": args.seed, "file": PROBS,
                                                        "finetune_args": check_finetune_args(args.finetune_args)}}
        targets = [out / TSV, out / JSON] + ([] if args.probs_path else [out / PROBS])
        with writing(*targets) as tmps:
            write_tsv(tmps[0], ["line", "given", "suggested", "label_quality", "given_prob", "suggested_prob", *texts],
                      table)
            tmps[1].write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            if not args.probs_path:
                with open(tmps[2], "wb") as f:
                    np.save(f, probs)
    print(f"{len(flagged)} of {len(rows)} training row(s) flagged as likely mislabelled ({args.filter_by}, ranked by "
          f"{args.rank_by}) in {seconds:.1f} s; wrote {', '.join(t.name for t in targets)} to {args.output_dir}",
          flush=True)
    return 0


__all__ = ["check_finetune_args", "fold_indices", "label_issues", "load_probs", "out_of_fold_probs", "read_rows",
           "run"]
