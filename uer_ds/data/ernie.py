"""ERNIE 2.0's pre-training tasks (Sun et al., 2020, arXiv 1907.12412, section "Pre-training Tasks"): the
label rules, and the instance builders of their data processors.

Each task is a data processor and a target of the same name (uer_ds/models/targets/ernie.py); each runs
alone (`uer-ds preprocess --target X`, `uer-ds pretrain --target X`) or inside a continual multi-task
schedule (uer_ds/data/schedule.py).  Knowledge masking, the schedule's MLM, is the existing `mlm`
processor with `--masking word|phrase|entity` (knowledge.py).  What preprocessing reads and writes for
each (uer_ds/data/ernie_corpora.py does the corpus side):

  processor          corpus (as --corpus_path)                  label of an instance
  capitalization     one document per line, cased text          per token: 1 = its word was capitalised
  token_document     sentences, blank line between documents    per token: 1 = its word also occurs in
                                                                the document outside this segment
  sentence_reorder   sentences, blank line between documents    the permutation class of the segments
  sentence_distance  sentences, blank line between documents    0 adjacent, 1 same document, 2 other
  discourse          sentences, blank line between documents    the discourse marker that joined the pair
  ir_relevance       query<TAB>title<TAB>label lines            0 strong, 1 weak, 2 irrelevant

Randomness: the sentence tasks draw their segments, permutations, classes and partners from generators
seeded by (seed, stream, index, epoch), so every epoch draws anew and an instance depends on nothing
else: a resumed run rebuilds the same batches.  Labels are IGNORE_INDEX (-100) where nothing is
predicted.  Rows of the label rules below are what the unit tests check on crafted documents.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from uer_ds.data.instances import Builder, ClsBuilder, truncation_counts
from uer_ds.data.masking import IGNORE_INDEX

STREAM_ERNIE = 3  # instances.py uses 1 (masks) and 2 (pairs)
MAX_REORDER_SEGMENTS = 5  # sum of k! for k = 1..5 is 153 classes; 6 would be 873

# sentence distance classes (the paper's: "0" adjacent, "1" same document not adjacent, "2" other document)
ADJACENT, SAME_DOCUMENT, OTHER_DOCUMENT = 0, 1, 2
DISTANCE_CLASSES = 3
IR_CLASSES = 3  # 0 strong relevance, 1 weak relevance, 2 irrelevant (ERNIE's IR relevance labels)


# ---- label rules (pure functions: the unit tests check these on crafted input) ------------------------
def reorder_classes(max_segments: int) -> int:
    """Classes of sentence reordering with 1..M segments: sum_{k=1..M} k! (the paper's "Sentence
    Reordering Task": a paragraph split into 1 to m segments, their order shuffled, k-class
    classification with k = sum_{n=1..m} n!).  M = 3 gives 1 + 2 + 6 = 9."""
    if not 1 <= max_segments <= MAX_REORDER_SEGMENTS:
        raise ValueError(f"sentence_reorder_segments has value {max_segments}: must be in [1, {MAX_REORDER_SEGMENTS}]")
    return sum(math.factorial(k) for k in range(1, max_segments + 1))


def permutation_class(order: Sequence[int]) -> int:
    """The class of a shown order of m segments: order[j] is the original index of the segment shown
    j-th (a permutation of 0..m-1).  Class = sum_{k<m} k! (the classes of fewer segments come first)
    + the permutation's rank in lexicographic order (its Lehmer code), so the identity of m segments
    is class sum_{k<m} k! and m = 1 is class 0.  E.g. m = 2: (0, 1) -> 1, (1, 0) -> 2; m = 3: (0, 1, 2)
    -> 3, (0, 2, 1) -> 4, (1, 0, 2) -> 5, ..., (2, 1, 0) -> 8."""
    m = len(order)
    if sorted(order) != list(range(m)) or m == 0:
        raise ValueError(f"{list(order)} is not a permutation of 0..{m - 1}")
    remaining = list(range(m))
    rank = 0
    for j, original in enumerate(order):
        i = remaining.index(original)
        rank += i * math.factorial(m - 1 - j)
        remaining.pop(i)
    return sum(math.factorial(k) for k in range(1, m)) + rank


def class_permutation(label: int) -> tuple[int, ...]:
    """The inverse of permutation_class: the shown order of class `label`."""
    if label < 0:
        raise ValueError(f"class {label} is negative")
    m = 1
    while label >= math.factorial(m):
        label -= math.factorial(m)
        m += 1
    remaining, order = list(range(m)), []
    for j in range(m):
        i, label = divmod(label, math.factorial(m - 1 - j))
        order.append(remaining.pop(i))
    return tuple(order)


def word_keys(ids: Sequence[int], continuation: frozenset) -> list[tuple[int, tuple[int, ...]]]:
    """Words of a token sequence as (position of the first token, the word's ids): a word is a token
    and the WordPiece continuation pieces ("##...", ids in `continuation`) that follow it."""
    words: list[tuple[int, list[int]]] = []
    for position, token in enumerate(ids):
        token = int(token)
        if words and token in continuation:
            words[-1][1].append(token)
        else:
            words.append((position, [token]))
    return [(position, tuple(pieces)) for position, pieces in words]


def token_document_labels(segment: Sequence[int], outside: Iterable[Sequence[int]], continuation: frozenset,
                          stop: frozenset) -> np.ndarray:
    """Token-document relation (the paper's "Token-Document Relation Prediction Task": does a token of a
    segment also appear in other segments of its document).  segment: the segment's token ids; outside:
    the token ids of the document's other sentences (each a sequence) -> (len(segment),) int64 labels.

    The unit is the word: a token and its WordPiece continuation pieces, compared as the whole id
    sequence ("play ##ing" matches "play ##ing", not "play"); the label sits on the word's first token
    (1: the word occurs outside the segment, 0: it does not), its continuation pieces get IGNORE_INDEX.
    Stop words get IGNORE_INDEX on every token: one-token words whose id is in `stop` (the special tokens,
    the punctuation and the most frequent tokens of the corpus, chosen at preprocessing), which occur
    everywhere and would make the task a frequency count."""
    seen = {key for sequence in outside for _, key in word_keys(sequence, continuation)}
    labels = np.full(len(segment), IGNORE_INDEX, np.int64)
    for position, key in word_keys(segment, continuation):
        if len(key) == 1 and key[0] in stop:
            continue
        labels[position] = int(key in seen)
    return labels


def capitalization_labels(text: str, spans: Sequence[tuple[int, int]]) -> list[int]:
    """Capitalization prediction (the paper's "Capitalization Prediction Task": is the word capitalised).
    text: the original line; spans: each token's characters [start, end) in it (the tokenizer's
    encode_with_offsets) -> one label per token: 1 if the first character of its word is an upper-case
    letter (`str.isupper`: 'Paris', 'NASA', 'Élan'), 0 if it is a lower-case letter, and -1 (no label) for
    a token inside a word (a WordPiece continuation: its span starts right after a letter or digit) and
    for words that start with no cased letter (digits, punctuation, CJK characters)."""
    labels = []
    for start, _ in spans:
        inside = start > 0 and text[start - 1].isalnum()
        first = text[start]
        cased = first.isupper() or first.islower()
        labels.append(-1 if inside or not cased else int(first.isupper()))
    return labels


def sentence_chunks(doc_idx: np.ndarray, lengths: np.ndarray, budget: int, half: bool = False,
                    min_sentences: int = 1) -> np.ndarray:
    """Consecutive sentences of each document grouped into chunks of at most `budget` tokens (a longer
    sentence is a chunk of its own, cut to the budget when read); with `half`, also at most half the
    document's sentences (rounded up), so a document of two or more sentences gives two chunks or more.
    Documents with fewer than `min_sentences` sentences give none.  -> (N, 3) int64 rows (document, first
    sentence, stop sentence)."""
    rows = []
    for d in range(len(doc_idx) - 1):
        first, end = int(doc_idx[d]), int(doc_idx[d + 1])
        n = end - first
        if n < min_sentences:
            continue
        most = -(-n // 2) if half else n
        start, tokens = first, 0
        for i in range(first, end):
            length = int(lengths[i])
            if i > start and (tokens + length > budget or i - start >= most):
                rows.append((d, start, i))
                start, tokens = i, 0
            tokens += length
        rows.append((d, start, end))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


# ---- instance builders ------------------------------------------------------------------------------
class _SentenceBuilder(Builder):
    """Shared by the sentence-level processors: sentence tokens, and a generator per (index, epoch)."""

    def __init__(self, data, meta: dict, seed: int, dynamic_masking: bool) -> None:
        self.meta_extra = meta  # before Builder.__init__, which calls _count
        super().__init__(data, meta, seed, dynamic_masking)

    def _sentences_ready(self) -> None:
        self.seq_end = np.cumsum(self.data.lengths, dtype=np.int64)

    def sentence(self, i: int) -> np.ndarray:
        end = int(self.seq_end[i])
        return self.tokens(end - int(self.data.lengths[i]), end)

    def rng(self, index: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, STREAM_ERNIE, index, epoch])

    def instance(self, index: int, epoch: int) -> dict:
        src, seg, tgt = self._make(index, self.rng(index, epoch))
        return self._pad(src, seg, tgt)

    def _make(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        raise NotImplementedError

    def _build(self, base, copy, index):  # instance() is overridden: the draws depend on the epoch too
        raise NotImplementedError


class SentenceReorderBuilder(_SentenceBuilder):
    """A chunk of consecutive sentences of one document (at most seq_length - 1 - M tokens, so [CLS] and M
    [SEP] fit) is cut into m segments, m drawn uniformly from 1..M (M = sentence_reorder_segments): at m - 1
    distinct sentence boundaries drawn uniformly, or at token positions where the chunk has fewer than m
    sentences (m is lowered to its token count if that is smaller still).  The segments are shown in a
    uniformly drawn order as [CLS] s_a [SEP] s_b [SEP] ..., segment ids alternating 1, 2, 1, ... (each
    [SEP] with its segment); the label is permutation_class(order)."""

    def _count(self) -> int:
        self._sentences_ready()
        self.M = int(self.meta_options.get("sentence_reorder_segments", 3))
        self.budget = self.T - 1 - self.M
        self.rows = sentence_chunks(self.data.doc_idx, self.data.lengths, self.budget)
        return len(self.rows)

    def _make(self, index, rng):
        d, first, stop = (int(x) for x in self.rows[index])
        pieces = [self.sentence(i) for i in range(first, stop)]
        body = np.concatenate(pieces)[: self.budget]
        m = int(rng.integers(1, self.M + 1))
        bounds = np.cumsum([len(p) for p in pieces])[:-1]
        bounds = bounds[bounds < len(body)]
        if len(bounds) >= m - 1:
            cuts = np.sort(rng.choice(bounds, size=m - 1, replace=False))
        else:
            m = min(m, len(body))
            cuts = np.sort(rng.choice(np.arange(1, len(body)), size=m - 1, replace=False))
        segments = np.split(body, cuts)
        order = rng.permutation(m)
        src, seg = [np.array([self.cls])], [np.array([1])]
        for j, original in enumerate(order):
            part = np.concatenate([segments[original], [self.sep]])
            src.append(part)
            seg.append(np.full(len(part), 1 + j % 2))
        return (np.concatenate(src).astype(np.int64), np.concatenate(seg).astype(np.int64),
                {"sentence_reorder": permutation_class([int(o) for o in order])})


class SentenceDistanceBuilder(_SentenceBuilder):
    """An anchor sentence A (one that has a next sentence and a non-adjacent one in its document) and a
    sentence B: with probability 1/3 each, the sentence right after A (class 0, adjacent), a sentence
    of A's document other than the ones before, at and after A (class 1), or a sentence of another
    document (class 2); both drawn uniformly.  [CLS] A [SEP] B [SEP], the longer cut first to fit."""

    def _count(self) -> int:
        self._sentences_ready()
        doc_idx = self.data.doc_idx
        self.doc_of = np.repeat(np.arange(len(doc_idx) - 1), np.diff(doc_idx))
        anchors = []
        for d in range(len(doc_idx) - 1):
            first, end = int(doc_idx[d]), int(doc_idx[d + 1])
            for i in range(first, end - 1):
                if end - first - len({max(i - 1, first), i, i + 1}) > 0:
                    anchors.append(i)
        self.anchors = np.asarray(anchors, dtype=np.int64)
        if len(self.anchors) and self.data.num_documents < 2:
            raise ValueError(f"{self.data.idx_path}: sentence_distance needs two documents or more (class 2 "
                             "pairs a sentence with another document's)")
        return len(self.anchors)

    def _make(self, index, rng):
        i = int(self.anchors[index])
        d = int(self.doc_of[i])
        first, end = int(self.data.doc_idx[d]), int(self.data.doc_idx[d + 1])
        label = int(rng.integers(DISTANCE_CLASSES))
        if label == ADJACENT:
            j = i + 1
        elif label == SAME_DOCUMENT:
            others = [k for k in range(first, end) if abs(k - i) > 1]
            j = others[int(rng.integers(len(others)))]
        else:
            other = d
            while other == d:
                other = int(rng.integers(self.data.num_documents))
            j = int(rng.integers(self.data.doc_idx[other], self.data.doc_idx[other + 1]))
        return pair_instance(self.sentence(i), self.sentence(j), self.cls, self.sep, self.T) + \
            ({"sentence_distance": label},)


class TokenDocumentBuilder(_SentenceBuilder):
    """Each document of two sentences or more is cut into segments (sentence_chunks with `half`: at most
    seq_length - 2 tokens and half the document's sentences); each segment is an instance [CLS] segment
    [SEP] whose labels are token_document_labels against the document's other sentences.  The stop ids
    and the WordPiece continuation ids come from OUT.json (`token_document`, written at preprocessing)."""

    def _count(self) -> int:
        self._sentences_ready()
        extra = self.meta_extra.get("token_document")
        if not extra:
            raise ValueError(f"{self.data.idx_path}: the dataset has no token_document entry in its OUT.json "
                             "(preprocess with --target token_document)")
        self.stop = frozenset(extra["stop_ids"])
        self.continuation = frozenset(extra["continuation_ids"])
        self.rows = sentence_chunks(self.data.doc_idx, self.data.lengths, self.T - 2, half=True, min_sentences=2)
        return len(self.rows)

    def instance(self, index: int, epoch: int) -> dict:  # no randomness: the same every epoch
        d, first, stop = (int(x) for x in self.rows[index])
        doc_first, doc_end = int(self.data.doc_idx[d]), int(self.data.doc_idx[d + 1])
        segment = np.concatenate([self.sentence(i) for i in range(first, stop)])[: self.T - 2]
        outside = [self.sentence(i) for i in range(doc_first, doc_end) if not first <= i < stop]
        labels = token_document_labels(segment, outside, self.continuation, self.stop)
        src = np.concatenate([[self.cls], segment, [self.sep]]).astype(np.int64)
        tgt = np.concatenate([[IGNORE_INDEX], labels, [IGNORE_INDEX]])
        return self._pad(src, np.ones(len(src), np.int64), {"token_document": tgt})


class CapitalizationBuilder(Builder):
    """Each document as [CLS] doc [SEP] in windows of seq_length (as the mlm processor without
    full_sentences); the labels are the ones preprocessing stored per token (capitalization_labels), -1
    read as IGNORE_INDEX, and IGNORE_INDEX on [CLS] and [SEP]."""

    def _count(self) -> int:
        if not self.data.has_token_labels:
            raise ValueError(f"{self.data.idx_path}: no token labels (preprocess with --target capitalization)")
        self.vlen = self.doc_len + 2
        return self.count_windows(self.vlen)

    def _build(self, base, copy, index):
        T = self.T
        d, k = self.window_of(base)
        lo, hi = k * T, min((k + 1) * T, int(self.vlen[d]))
        src, _ = self.doc_window(d, True, lo, hi)
        start, n = int(self.doc_start[d]), int(self.doc_len[d])
        body = np.asarray(self.data.token_labels(start + max(lo - 1, 0), start + min(hi - 1, n)), np.int64)
        body = np.where(body < 0, IGNORE_INDEX, body)
        labels = np.concatenate([[IGNORE_INDEX] if lo == 0 else [], body, [IGNORE_INDEX] if hi == n + 2 else []])
        return src, np.ones(len(src), np.int64), None, {"capitalization": labels.astype(np.int64)}


class _PairLabelBuilder(ClsBuilder):
    """A cls-layout dataset (text_a, text_b, label per line) whose label feeds the target `name`."""

    name = ""

    def _build(self, base, copy, index):
        src, seg, ws, tgt = super()._build(base, copy, index)
        return src, seg, ws, {self.name: tgt["cls"]}


class DiscourseBuilder(_PairLabelBuilder):
    """[CLS] A [SEP] B [SEP] of a pair that a discourse marker joined in the corpus (the marker removed);
    the label is the marker's index in the dataset's marker list (ernie_corpora.discourse_pairs)."""

    name = "discourse"


class IrRelevanceBuilder(_PairLabelBuilder):
    """[CLS] query [SEP] title [SEP]; the label 0 (strong), 1 (weak) or 2 (irrelevant), as the file says."""

    name = "ir_relevance"


def pair_instance(a: np.ndarray, b: np.ndarray, cls: int, sep: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] a [SEP] b [SEP] with segments 1 and 2, the longer of a and b cut from its end first
    (truncation_counts) so that it fits T."""
    cut_a, cut_b = truncation_counts(len(a), len(b), T - 3)
    a, b = a[: len(a) - cut_a], b[: len(b) - cut_b]
    src = np.concatenate([[cls], a, [sep], b, [sep]]).astype(np.int64)
    seg = np.concatenate([np.ones(len(a) + 2, np.int64), np.full(len(b) + 1, 2, np.int64)])
    return src, seg


ERNIE_BUILDERS = {"capitalization": CapitalizationBuilder, "token_document": TokenDocumentBuilder,
                  "sentence_reorder": SentenceReorderBuilder, "sentence_distance": SentenceDistanceBuilder,
                  "discourse": DiscourseBuilder, "ir_relevance": IrRelevanceBuilder}


def head_config(processor: str, meta: dict) -> dict:
    """The model-config values a dataset of `processor` fixes for its head (OUT.json's `head_config`)."""
    return dict(meta.get("head_config") or {}) if processor in ERNIE_BUILDERS else {}


__all__ = ["ERNIE_BUILDERS", "capitalization_labels", "class_permutation", "permutation_class", "reorder_classes",
           "sentence_chunks", "token_document_labels", "word_keys"]
