"""Scores of the token-, span- and ranking-level tasks, each implemented from its published rules
(the tests compare them with seqeval, hand-computed CMRC2018 cases and hand-ranked question groups).

- Entities (NER): chunks are read from tag sequences by the CoNLL-2000 `conlleval` rules, which
  seqeval's default mode follows; precision, recall and F1 are micro-averaged over exact
  (type, start, end) matches, and are 0 when their denominator is 0.
- CMRC2018 (span MRC): EM compares answers lower-cased, stripped and without punctuation; F1 is over
  characters (punctuation and whitespace removed) with the overlap taken as the longest common
  substring, as the official script does; both take the best gold answer and average over questions.
- Ranking (DBQA): per question, candidates sorted by score (ties keep input order); MRR is the mean
  reciprocal rank of the first correct candidate, MAP the mean average precision; questions without
  a correct candidate have no rank and are left out (and counted).
"""
from __future__ import annotations

import unicodedata
from typing import Iterable, Optional, Sequence

# ---- entities (NER) ------------------------------------------------------------------------------
TAG_PREFIXES = ("B", "I", "E", "S")  # begin, inside, end, single (BIO and IOBES schemes)


def split_tag(tag: str) -> tuple[str, str]:
    """'B-LOC' -> ('B', 'LOC'); 'O' -> ('O', '')."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def check_tag(tag: str) -> Optional[str]:
    """None when `tag` is 'O' or <B|I|E|S>-<type>; else the rule it breaks."""
    if tag == "O":
        return None
    prefix, dash, kind = tag.partition("-")
    if prefix not in TAG_PREFIXES or not dash or not kind:
        return "tags are 'O' or B-/I-/E-/S- followed by the entity type (e.g. B-LOC)"
    return None


def _chunk_ends(prev: str, prev_kind: str, cur: str, kind: str) -> bool:
    """Does the chunk holding the previous token end before the current one?"""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and cur in ("B", "S", "O"):
        return True
    return prev != "O" and prev_kind != kind


def _chunk_starts(prev: str, prev_kind: str, cur: str, kind: str) -> bool:
    """Does a chunk start at the current token?  (An I- or E- after O, E or S starts one, as does a
    change of type: 'I- without B-' is an entity.)"""
    if cur in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and cur in ("I", "E"):
        return True
    return cur != "O" and prev_kind != kind


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) of every chunk in one sentence's tags (last inclusive)."""
    out = []
    prev, prev_kind, start = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        cur, kind = split_tag(tag)
        if _chunk_ends(prev, prev_kind, cur, kind):
            out.append((prev_kind, start, i - 1))
        if _chunk_starts(prev, prev_kind, cur, kind):
            start = i
        prev, prev_kind = cur, kind
    return out


def _prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def entity_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Entity-level micro P/R/F1 over sentences (lists of tags), per-type scores, tag accuracy."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentence(s) but {len(pred)} predicted")
    gold_set, pred_set = set(), set()
    tags = right = 0
    for s, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {s}: {len(g)} gold tag(s) but {len(p)} predicted")
        gold_set.update((s, *e) for e in get_entities(g))
        pred_set.update((s, *e) for e in get_entities(p))
        tags += len(g)
        right += sum(a == b for a, b in zip(g, p))
    correct = gold_set & pred_set
    precision, recall, f1 = _prf(len(correct), len(pred_set), len(gold_set))
    per_type = []
    for kind in sorted({e[1] for e in gold_set | pred_set}):
        counts = [sum(1 for e in group if e[1] == kind) for group in (correct, pred_set, gold_set)]
        p, r, f = _prf(*counts)
        per_type.append({"type": kind, "precision": p, "recall": r, "f1": f, "support": counts[2]})
    return {"sentences": len(gold), "f1": f1, "precision": precision, "recall": recall,
            "tag_accuracy": right / tags if tags else 0.0, "gold_entities": len(gold_set),
            "predicted_entities": len(pred_set), "correct_entities": len(correct), "per_type": per_type}


def format_entities(metrics: dict, title: str) -> str:
    lines = [f"{title}: {metrics['sentences']} sentences  entity F1 {metrics['f1']:.4f}  precision "
             f"{metrics['precision']:.4f}  recall {metrics['recall']:.4f}  ({metrics['correct_entities']} of "
             f"{metrics['predicted_entities']} predicted / {metrics['gold_entities']} gold entities right)  "
             f"tag accuracy {metrics['tag_accuracy']:.4f}"]
    if metrics["per_type"]:
        lines.append(f"  {'type':>8}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}")
        for row in metrics["per_type"]:
            lines.append(f"  {row['type']:>8}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  {row['f1']:>6.4f}  "
                         f"{row['support']:>7}")
    return "\n".join(lines)


# ---- CMRC2018 EM / F1 ----------------------------------------------------------------------------
# The symbols the CMRC2018 scoring rules strip besides Unicode punctuation (categories P*): ASCII
# and full-width marks such as + = ^ ` ~ that Unicode files under symbols.
CMRC_SYMBOLS = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』…")


def is_cmrc_punctuation(ch: str) -> bool:
    return ch in CMRC_SYMBOLS or unicodedata.category(ch).startswith("P")


def cmrc_normalize(text: str) -> str:
    """What EM compares: lower-cased, stripped, punctuation removed (inner spaces kept)."""
    return "".join(ch for ch in text.lower().strip() if not is_cmrc_punctuation(ch))


def cmrc_chars(text: str) -> list[str]:
    """What F1 counts: the characters of the lower-cased text, punctuation and whitespace removed."""
    return [ch for ch in text.lower() if not ch.isspace() and not is_cmrc_punctuation(ch)]


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive items found in both a and b."""
    best, row = 0, [0] * (len(b) + 1)
    for x in a:
        new = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                new[j] = row[j - 1] + 1
                best = max(best, new[j])
        row = new
    return best


def cmrc_f1(golds: Iterable[str], prediction: str) -> float:
    pred = cmrc_chars(prediction)
    scores = [0.0]
    for gold in golds:
        ref = cmrc_chars(gold)
        overlap = longest_common_substring(ref, pred)
        if overlap:
            p, r = overlap / len(pred), overlap / len(ref)
            scores.append(2 * p * r / (p + r))
    return max(scores)


def cmrc_em(golds: Iterable[str], prediction: str) -> float:
    pred = cmrc_normalize(prediction)
    return float(any(cmrc_normalize(g) == pred for g in golds))


def cmrc_metrics(golds: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict:
    """EM and F1 (fractions, 0..1) averaged over questions; golds: each question's gold answers."""
    if len(golds) != len(predictions):
        raise ValueError(f"{len(golds)} question(s) with gold answers but {len(predictions)} prediction(s)")
    em = [cmrc_em(g, p) for g, p in zip(golds, predictions)]
    f1 = [cmrc_f1(g, p) for g, p in zip(golds, predictions)]
    n = len(golds)
    return {"questions": n, "f1": sum(f1) / n if n else 0.0, "em": sum(em) / n if n else 0.0,
            "average": (sum(f1) + sum(em)) / (2 * n) if n else 0.0}


# ---- ranking (DBQA) ------------------------------------------------------------------------------
def ranking_metrics(groups: Sequence[tuple[Sequence[int], Sequence[float]]]) -> dict:
    """MRR and MAP over question groups, each (labels 0/1, scores) of its candidates."""
    reciprocal, average_precision, without = [], [], 0
    for labels, scores in groups:
        order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep input order
        ranks = [rank for rank, i in enumerate(order, start=1) if labels[i]]
        if not ranks:
            without += 1
            continue
        reciprocal.append(1.0 / ranks[0])
        average_precision.append(sum(k / rank for k, rank in enumerate(ranks, start=1)) / len(ranks))
    n = len(reciprocal)
    return {"questions": len(groups), "ranked_questions": n, "questions_without_answer": without,
            "mrr": sum(reciprocal) / n if n else 0.0, "map": sum(average_precision) / n if n else 0.0,
            "top1_accuracy": sum(r == 1.0 for r in reciprocal) / n if n else 0.0}


__all__ = ["check_tag", "cmrc_chars", "cmrc_em", "cmrc_f1", "cmrc_metrics", "cmrc_normalize", "entity_metrics",
           "format_entities", "get_entities", "is_cmrc_punctuation", "longest_common_substring", "ranking_metrics",
           "split_tag"]
