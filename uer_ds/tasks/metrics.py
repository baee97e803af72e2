"""Classification and regression metrics from gold labels and scores (logits or probabilities).

Conventions follow scikit-learn and SciPy (the tests compare with them): the confusion matrix has gold
labels in rows and predictions in columns (UER-py prints the transpose); precision, recall and F1 of a
class with no predicted (or no gold) example are 0; macro-F1 averages over all `labels_num` classes;
Matthews correlation is Gorodkin's multi-class form (R_K, 2004), which is the usual phi coefficient for
two classes (GLUE's CoLA metric), 0 where undefined; Pearson and Spearman correlations are GLUE's STS-B
metrics (Spearman: Pearson of the ranks, ties given their average rank), 0 where a side is constant.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def confusion_matrix(gold: np.ndarray, pred: np.ndarray, labels_num: int) -> np.ndarray:
    """(labels_num, labels_num) counts: [gold, predicted]."""
    matrix = np.zeros((labels_num, labels_num), dtype=np.int64)
    np.add.at(matrix, (np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return matrix


def top_k_accuracy(gold: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of examples whose gold label is among the k highest scores (ties: lower label first)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((top == np.asarray(gold)[:, None]).any(axis=1).mean()) if len(gold) else 0.0


def per_class(matrix: np.ndarray) -> list[dict]:
    true_pos = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    out = []
    for c in range(matrix.shape[0]):
        p = true_pos[c] / predicted[c] if predicted[c] else 0.0
        r = true_pos[c] / support[c] if support[c] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out.append({"label": c, "precision": p, "recall": r, "f1": f1, "support": int(support[c])})
    return out


def matthews_corrcoef(matrix: np.ndarray) -> float:
    """Matthews correlation from a confusion matrix (rows gold, columns predicted), in [-1, 1]; 0 when a
    margin is constant (sklearn's convention).  Gorodkin, "Comparing two K-category assignments by a
    K-category correlation coefficient", Comput. Biol. Chem. 28 (2004)."""
    m = np.asarray(matrix, dtype=np.float64)
    n, correct = m.sum(), np.trace(m)
    t, p = m.sum(axis=1), m.sum(axis=0)  # gold and predicted counts per class
    cov = correct * n - t @ p
    denominator = np.sqrt((n * n - p @ p) * (n * n - t @ t))
    return float(cov / denominator) if denominator else 0.0


def classification_metrics(gold: np.ndarray, scores: np.ndarray, top_k: Optional[int] = None) -> dict:
    """accuracy, macro_f1, per-class precision/recall/F1, top-k accuracy and the confusion matrix.

    gold: (N,) class ids; scores: (N, labels_num), larger = more likely.
    """
    gold = np.asarray(gold, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    labels_num = scores.shape[1]
    pred = scores.argmax(axis=1)
    matrix = confusion_matrix(gold, pred, labels_num)
    classes = per_class(matrix)
    out = {"examples": int(len(gold)), "accuracy": float((pred == gold).mean()) if len(gold) else 0.0,
           "macro_f1": float(np.mean([c["f1"] for c in classes])),
           "macro_precision": float(np.mean([c["precision"] for c in classes])),
           "macro_recall": float(np.mean([c["recall"] for c in classes])),
           "mcc": matthews_corrcoef(matrix)}
    if top_k is not None and 1 < top_k < labels_num:  # k >= labels_num: always 1
        out[f"top{top_k}_accuracy"] = top_k_accuracy(gold, scores, top_k)
    out["per_class"] = classes
    out["confusion"] = matrix.tolist()
    return out


def format_classification(metrics: dict, title: str) -> str:
    """A readable report: headline numbers, per-class table, confusion matrix (rows gold)."""
    top = [k for k in metrics if k.startswith("top") and k.endswith("_accuracy")]
    lines = [f"{title}: {metrics['examples']} examples  accuracy {metrics['accuracy']:.4f}  "
             f"macro-F1 {metrics['macro_f1']:.4f}" + "".join(f"  {k} {metrics[k]:.4f}" for k in top),
             f"  {'label':>5}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}"]
    for c in metrics["per_class"]:
        lines.append(f"  {c['label']:>5}  {c['precision']:>9.4f}  {c['recall']:>6.4f}  {c['f1']:>6.4f}  "
                     f"{c['support']:>7}")
    matrix = metrics["confusion"]
    width = max(5, max(len(str(v)) for row in matrix for v in row))
    lines.append("  confusion (rows gold, columns predicted):")
    lines.append("  " + " " * 7 + "".join(f"{j:>{width + 1}}" for j in range(len(matrix))))
    for i, row in enumerate(matrix):
        lines.append(f"  {i:>5}  " + "".join(f"{v:>{width + 1}}" for v in row))
    return "\n".join(lines)


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (scipy.stats.rankdata's default)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        if count > 1:
            ranks[order[start: start + count]] = start + (count + 1) / 2
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two (N,) arrays; 0 when either is constant or N < 2."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx @ dx) * (dy @ dy))
    return float(dx @ dy / denominator) if denominator else 0.0


def regression_metrics(gold: np.ndarray, pred: np.ndarray) -> dict:
    """pearson, spearman, mse, mae and the gold/predicted means of (N,) real-valued labels and predictions."""
    gold, pred = np.asarray(gold, dtype=np.float64), np.asarray(pred, dtype=np.float64).reshape(-1)
    error = pred - gold
    return {"examples": int(len(gold)), "pearson": pearson(gold, pred),
            "spearman": pearson(_ranks(gold), _ranks(pred)) if len(gold) else 0.0,
            "mse": float((error ** 2).mean()) if len(gold) else 0.0,
            "mae": float(np.abs(error).mean()) if len(gold) else 0.0,
            "gold_mean": float(gold.mean()) if len(gold) else 0.0,
            "predicted_mean": float(pred.mean()) if len(gold) else 0.0}


def format_regression(metrics: dict, title: str) -> str:
    return (f"{title}: {metrics['examples']} examples  pearson {metrics['pearson']:.4f}  spearman "
            f"{metrics['spearman']:.4f}  mse {metrics['mse']:.4f}  mae {metrics['mae']:.4f}")


__all__ = ["classification_metrics", "confusion_matrix", "format_classification", "format_regression",
           "matthews_corrcoef", "pearson", "per_class", "regression_metrics", "top_k_accuracy"]
