"""`uer-ds analyse support`: test rows with weak support in the training data, after PaddleNLP's "sparse data"
analysis (its text-classification guide: nearest training examples by the fine-tuned model's features, via
TrustAI's feature-similarity method; the test rows whose nearest training rows are least similar are the
sparse ones, to be covered by more labelled data).

Vectors: --vectors pooled (default) is what the classifier head reads, the pooled hidden state (for pooling
'first' the [CLS] state); --vectors penultimate is tanh(linear_1(pooled)), what its output layer reads (BERT's
pooler_output).  Both are taken from the fine-tuned model with forward hooks, for the training file and the
test file alike.

Neighbours: the K training rows of highest cosine similarity to each test row (exact search; ties keep the
earlier training row).  Scores per test row:
  support      mean cosine similarity of the K nearest training rows: how densely the training data covers
               the row where the classifier looks.  The default ranking (--score support): it needs no labels
               and does not depend on the model being right, which is what "weak support" asks; PaddleNLP ranks
               sparse data by this mean similarity too.
  agreement    share of the K nearest training rows whose (given) label is the row's predicted label: low
               means the neighbours the model stands on disagree with its answer (--score agreement ranks by it).

Output directory (written together, atomically):
  support.tsv   one row per test row, weakest first: line, predicted, gold (when the file has labels), support,
                agreement, neighbour_lines (the K training rows' line numbers, nearest first, space-separated),
                neighbour_similarities, text_a [text_b]
  support.json  settings, counts, the score's quantiles and the mean support of correctly and wrongly predicted
                rows (labelled test files)
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from uer_ds.deploy.analysis.common import (add_model_arguments, check_positive, line_of, load_classifier,
                                           output_dir, read_examples, run_batches, write_tsv, writing)

TSV, JSON = "support.tsv", "support.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train_path", required=True, help="the training file (labelled, the task's format)")
    parser.add_argument("--test_path", required=True, help="the rows to score (a label column is optional)")
    parser.add_argument("--k", type=int, default=5, help="nearest training rows per test row (default 5)")
    parser.add_argument("--vectors", choices=("pooled", "penultimate"), default="pooled",
                        help="pooled: what the classifier head reads (default); penultimate: what its output "
                             "layer reads")
    parser.add_argument("--score", choices=("support", "agreement"), default="support",
                        help="the ranking, weakest first: mean cosine similarity of the K nearest (default), or "
                             "the share of them labelled with the predicted label")
    add_model_arguments(parser)


def nearest(train: np.ndarray, test: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine nearest neighbours: train (N, H), test (M, H) float -> (indices (M, k) int64 into train,
    similarities (M, k) float64), nearest first; ties keep the lower training index.  A zero vector has
    similarity 0 to everything.  ValueError when k exceeds N."""
    if k > len(train):
        raise ValueError(f"--k has value {k}: more than the {len(train)} training row(s)")

    def unit(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)

    train_unit, test_unit = unit(train), unit(test)
    indices, sims = [], []
    for start in range(0, len(test_unit), chunk):
        sim = test_unit[start: start + chunk] @ train_unit.T  # (m, N)
        order = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # stable: ties keep the lower index
        indices.append(order)
        sims.append(np.take_along_axis(sim, order, axis=1))
    return np.concatenate(indices).astype(np.int64), np.concatenate(sims)


def support_scores(similarities: np.ndarray, neighbour_labels: np.ndarray, predicted: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(support, agreement), each (M,) float64: the mean of each row's K similarities (M, K), and the share of
    its K neighbours' labels (M, K) equal to its predicted label (M,)."""
    return similarities.mean(axis=1), (neighbour_labels == predicted[:, None]).mean(axis=1)


def run(args: argparse.Namespace) -> int:
    """`uer-ds analyse support`: vectors of both files, neighbours, scores, the two files, a summary line."""
    check_positive(k=args.k, batch_size=args.batch_size)
    with output_dir(args.output_dir) as out:
        classifier = load_classifier(args.load_model_path, args, head=args.head, seq_length=args.seq_length)
        train = read_examples(classifier, args.train_path, args, labelled=True)
        test = read_examples(classifier, args.test_path, args)
        if args.k > len(train):
            raise ValueError(f"--k has value {args.k}: more than the {len(train)} row(s) of --train_path "
                             f"{args.train_path}")
        started = time.perf_counter()
        progress = not args.no_progress
        pick = 1 if args.vectors == "pooled" else 2
        train_vectors = run_batches(classifier, train, args.batch_size, progress, "train vectors")[pick]
        test_out = run_batches(classifier, test, args.batch_size, progress, "test vectors")
        indices, sims = nearest(train_vectors, test_out[pick], args.k)
        train_labels = np.array([e.tgt for e in train], dtype=np.int64)
        predicted = test_out[0].argmax(axis=1)
        support, agreement = support_scores(sims, train_labels[indices], predicted)
        seconds = time.perf_counter() - started
        score = support if args.score == "support" else agreement
        order = np.lexsort((np.arange(len(test)), score))  # weakest first, file order among equals
        labelled = test[0].tgt is not None
        texts = ["text_a", "text_b"] if "text_b" in test[0].text else ["text_a"]
        header = ["line", "predicted", *(["gold"] if labelled else []), "support", "agreement", "neighbour_lines",
                  "neighbour_similarities", *texts]
        train_lines = np.array([line_of(e) for e in train])
        rows = [[line_of(test[i]), classifier.label_name(int(predicted[i])),
                 *([classifier.label_name(test[i].tgt)] if labelled else []), f"{support[i]:.6f}",
                 f"{agreement[i]:.6f}", " ".join(map(str, train_lines[indices[i]])),
                 " ".join(f"{s:.6f}" for s in sims[i]), *(test[i].text[t] for t in texts)] for i in order]
        summary = {"model": classifier.path, "head": classifier.head_name, "train_path": str(args.train_path),
                   "test_path": str(args.test_path), "k": args.k, "vectors": args.vectors, "score": args.score,
                   "train_rows": len(train), "test_rows": len(test), "seconds": round(seconds, 3),
                   "support_quantiles": dict(zip(("min", "q10", "q50", "q90", "max"),
                                                 np.quantile(support, [0, .1, .5, .9, 1]).round(6).tolist())),
                   "agreement_mean": round(float(agreement.mean()), 6)}
        if labelled:
            right = predicted == np.array([e.tgt for e in test])
            summary["support_mean_correct"] = round(float(support[right].mean()), 6) if right.any() else None
            summary["support_mean_wrong"] = round(float(support[~right].mean()), 6) if (~right).any() else None
        with writing(out / TSV, out / JSON) as (table, report):
            write_tsv(table, header, rows)
            report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(test)} test row(s) against {len(train)} training row(s) in {seconds:.1f} s; {args.score} from "
          f"{score.min():.4f} to {score.max():.4f} (weakest: line {line_of(test[order[0]])}); wrote {TSV}, {JSON} "
          f"to {args.output_dir}", flush=True)
    return 0


__all__ = ["nearest", "run", "support_scores"]
