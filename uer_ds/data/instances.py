"""Training instances built from the mmap dataset at training time, one builder per data processor.

An instance is {"src": (T,), "seg": (T,), "tgt": {target: labels}} (numpy int64, T = seq_length,
padded with the pad id; seg 0 = padding, 1 = first segment, 2 = second).  Labels per target:
  mlm   (T,)   the original id at masked positions, -100 elsewhere
  sp    ()     0 = B follows A / in order, 1 = B is random (NSP) / swapped (SOP)
  lm    (T,)   the next token, -100 on padding
  bilm  (T, 2) (next token, previous token); [SEP] after a document's last token, [CLS] before its
               first; -100 on padding
  cls   ()     the line's label
  s2s   (T, 2) (decoder input, label): [CLS] target and target [SEP], -100 on padding

Layouts (as UER-py unless said):
  mlm   each document as [CLS] doc [SEP], cut into windows of T (with full_sentences the documents
        are concatenated first); dup_factor copies
  lm    [CLS] doc [SEP] (or the concatenation, full_sentences) in windows of T + 1 tokens that
        overlap by one, so every token is predicted exactly once (UER-py's windows did not overlap)
  bilm  the document's tokens in windows of T
  bert / albert   [CLS] A [SEP] B [SEP] from the pair index (pairs.py); dup_factor copies
  cls   [CLS] a [SEP] (b [SEP]), longest-first truncated to T
  cls_mlm  the cls layout, its tokens masked as mlm's (UER-py's cls_mlm)
  s2s   [CLS] source [SEP] cut to T; the target cut to T - 1 tokens

Randomness: every instance draws from generators seeded by (seed, stream, index[, epoch]), so an
instance depends only on them: resuming reproduces batches.  Static masking (the default) gives
each of the dup_factor copies its own fixed masks; dynamic masking draws new masks every epoch.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from uer_ds.data.masking import IGNORE_INDEX, Masker
from uer_ds.data.mmap_dataset import MMapDataset
from uer_ds.data.pairs import pair_index

STREAM_MASK, STREAM_PAIR = 1, 2


class Builder:
    """Shared state: the data, seq_length, special ids, the masker (for masking processors)."""

    masks = False
    subwords = None  # a SubwordTable: add tgt["sub"], the tokens' character ids (subword features)

    def __init__(self, data: MMapDataset, meta: dict, seed: int, dynamic_masking: bool) -> None:
        self.data, self.T, self.seed, self.dynamic = data, int(meta["seq_length"]), seed, dynamic_masking
        ids = meta["special_ids"]
        self.pad, self.cls, self.sep = ids["pad"], ids["cls"], ids["sep"]
        options = meta["options"]
        self.dup = int(options.get("dup_factor", 1)) if self.masks else 1
        # knowledge masking (ERNIE): the word starts are unit starts; an instance is masked by units with
        # probability knowledge_masking_prob, else by tokens
        self.knowledge_prob = float(options.get("knowledge_masking_prob", 0.5)) \
            if options.get("masking", "none") != "none" and self.masks else None
        self.whole_word = (bool(options.get("whole_word_masking")) or self.knowledge_prob is not None) and self.masks
        if self.whole_word and not data.has_word_starts:
            raise ValueError(f"{data.idx_path}: whole-word or knowledge masking is set but the index has no word "
                             "boundaries")
        self.masker = None
        if self.masks:
            span = options.get("span_geo_prob") if options.get("span_masking") else None
            self.masker = Masker(ids["mask"], int(meta["vocab_size"]), [v for v in ids.values()], span_geo_prob=span,
                                 span_max_length=int(options.get("span_max_length", 10)), whole_word=self.whole_word)
        self.meta_options = options
        doc_idx = data.doc_idx
        # token position and length of every document (its sequences are contiguous)
        self.doc_start = np.zeros(data.num_documents, np.int64)
        self.doc_len = np.zeros(data.num_documents, np.int64)
        if data.num_documents:
            ends = np.cumsum(data.lengths, dtype=np.int64)
            starts = ends - data.lengths
            nonempty = doc_idx[1:] > doc_idx[:-1]
            self.doc_start[nonempty] = starts[doc_idx[:-1][nonempty]]
            self.doc_len[nonempty] = ends[doc_idx[1:][nonempty] - 1] - self.doc_start[nonempty]
        self.base = self._count()

    # ---- to override --------------------------------------------------------------------------
    def _count(self) -> int:
        raise NotImplementedError

    def _build(self, base: int, copy: int, index: int) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray], dict]:
        """-> (src, seg, word starts or None, tgt) unpadded."""
        raise NotImplementedError

    # ---- shared -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.base * self.dup

    def instance(self, index: int, epoch: int) -> dict:
        copy, base = divmod(index, self.base)
        src, seg, ws, tgt = self._build(base, copy, index)
        if self.masker is not None:
            rng = np.random.default_rng([self.seed, STREAM_MASK, index, epoch if self.dynamic else 0])
            candidates = (seg > 0) & (src != self.cls) & (src != self.sep) & (src != self.pad)
            units = None if self.knowledge_prob is None else bool(rng.random() < self.knowledge_prob)
            src, tgt["mlm"] = self.masker(src, candidates, rng, ws, whole_word=units)
        if self.subwords is not None:
            tgt["sub"] = self.subwords.rows(src)  # after masking: a masked word has [MASK]'s characters
        return self._pad(src, seg, tgt)

    def _pad(self, src: np.ndarray, seg: np.ndarray, tgt: dict) -> dict:
        n, T = len(src), self.T
        out_src = np.full(T, self.pad, np.int64)
        out_src[:n] = src
        out_seg = np.zeros(T, np.int64)
        out_seg[:n] = seg
        out_tgt = {}
        for name, value in tgt.items():
            value = np.asarray(value, dtype=np.int64)
            if value.ndim == 0:
                out_tgt[name] = value
            else:
                padded = np.full((T,) + value.shape[1:], IGNORE_INDEX, np.int64)
                padded[:len(value)] = value  # as long as src, except s2s's decoder steps
                out_tgt[name] = padded
        return {"src": out_src, "seg": out_seg, "tgt": out_tgt}

    def tokens(self, a: int, b: int) -> np.ndarray:
        return np.asarray(self.data.tokens[a:b], dtype=np.int64)

    def word_starts(self, a: int, b: int) -> Optional[np.ndarray]:
        return self.data.word_starts(a, b) if self.whole_word else None

    def stream_window(self, cum: np.ndarray, lengths_with_specials: np.ndarray, specials: bool, a: int, b: int):
        """Tokens [a, b) of the concatenated documents, each wrapped as [CLS] doc [SEP] when
        `specials` (cum: the cumulative sum of lengths_with_specials); -> (tokens, word starts or None)."""
        d = int(np.searchsorted(cum, a, side="right"))
        parts, ws_parts, pos = [], [], a
        while pos < b and d < len(cum):
            begin = int(cum[d] - lengths_with_specials[d])
            lo, hi = pos - begin, min(b, int(cum[d])) - begin
            t, w = self.doc_window(d, specials, lo, hi)
            parts.append(t)
            ws_parts.append(w)
            pos, d = begin + hi, d + 1
        ws = np.concatenate(ws_parts) if self.whole_word else None
        return np.concatenate(parts), ws

    def count_windows(self, lengths: np.ndarray) -> int:
        """Instances = each document's `lengths[d]` positions cut into windows of seq_length (the last one
        shorter); returns how many, and keeps their running total for `window_of`."""
        counts = -(-lengths // self.T)
        self.cum = np.cumsum(counts)
        return int(self.cum[-1]) if len(counts) else 0

    def window_of(self, base: int) -> tuple[int, int]:
        """(document, window within it) of instance `base`, as `count_windows` laid them out."""
        d = int(np.searchsorted(self.cum, base, side="right"))
        return d, base - (int(self.cum[d - 1]) if d else 0)

    def doc_window(self, d: int, specials: bool, lo: int, hi: int):
        """Positions [lo, hi) of document d, as [CLS] doc [SEP] when `specials`."""
        start, n = int(self.doc_start[d]), int(self.doc_len[d])
        shift = 1 if specials else 0
        body_lo, body_hi = max(lo - shift, 0), min(hi - shift, n)
        body = self.tokens(start + body_lo, start + body_hi) if body_hi > body_lo else np.zeros(0, np.int64)
        ws = None
        if self.whole_word:
            ws = self.word_starts(start + body_lo, start + body_hi) if body_hi > body_lo else np.zeros(0, bool)
        if specials and lo == 0:
            body = np.concatenate([[self.cls], body])
            ws = None if ws is None else np.concatenate([[True], ws])
        if specials and hi == n + 2:
            body = np.concatenate([body, [self.sep]])
            ws = None if ws is None else np.concatenate([ws, [True]])
        return body.astype(np.int64), ws


class MlmBuilder(Builder):
    masks = True

    def _count(self) -> int:
        self.full = bool(self.meta_options.get("full_sentences"))
        self.vlen = self.doc_len + 2  # [CLS] doc [SEP]
        if self.full:
            self.vcum = np.cumsum(self.vlen)
            return int(-(-int(self.vlen.sum()) // self.T))
        return self.count_windows(self.vlen)

    def _build(self, base, copy, index):
        T = self.T
        if self.full:
            src, ws = self.stream_window(self.vcum, self.vlen, True, base * T, (base + 1) * T)
        else:
            d, k = self.window_of(base)
            src, ws = self.doc_window(d, True, k * T, min((k + 1) * T, int(self.vlen[d])))
        return src, np.ones(len(src), np.int64), ws, {}


class LmBuilder(Builder):
    def _count(self) -> int:
        self.full = bool(self.meta_options.get("full_sentences"))
        self.vlen = self.doc_len + 2
        if self.full:
            self.vcum = np.cumsum(self.vlen)
            return int(-(-(int(self.vlen.sum()) - 1) // self.T))
        return self.count_windows(self.vlen - 1)

    def _build(self, base, copy, index):
        T = self.T
        if self.full:
            total = int(self.vlen.sum())
            window, _ = self.stream_window(self.vcum, self.vlen, True, base * T, min(base * T + T + 1, total))
        else:
            d, k = self.window_of(base)
            window, _ = self.doc_window(d, True, k * T, min(k * T + T + 1, int(self.vlen[d])))
        src = window[:-1]
        return src, np.ones(len(src), np.int64), None, {"lm": window[1:]}


class BilmBuilder(Builder):
    def _count(self) -> int:
        return self.count_windows(self.doc_len)

    def _build(self, base, copy, index):
        T = self.T
        d, k = self.window_of(base)
        n = int(self.doc_len[d])
        lo, hi = k * T, min((k + 1) * T, n)
        src, _ = self.doc_window(d, False, lo, hi)
        nxt, _ = self.doc_window(d, False, lo + 1, min(hi + 1, n))
        prev, _ = self.doc_window(d, False, max(lo - 1, 0), hi - 1)
        forward = np.concatenate([nxt, [self.sep]]) if hi == n else nxt
        backward = np.concatenate([[self.cls], prev]) if lo == 0 else prev
        return src, np.ones(len(src), np.int64), None, {"bilm": np.stack([forward, backward], axis=1)}


class ClsBuilder(Builder):
    def _count(self) -> int:
        if self.data.labels is None:
            raise ValueError(f"{self.data.idx_path}: a cls dataset needs labels (preprocess with --target cls)")
        return self.data.num_documents

    def _build(self, base, copy, index):
        first, stop = int(self.data.doc_idx[base]), int(self.data.doc_idx[base + 1])
        a = np.asarray(self.data[first], np.int64)
        b = np.asarray(self.data[first + 1], np.int64) if stop - first > 1 else None
        if b is None:
            a = a[: self.T - 2]
            src = np.concatenate([[self.cls], a, [self.sep]])
            seg = np.ones(len(src), np.int64)
        else:
            la, lb = truncation_counts(len(a), len(b), self.T - 3)
            a, b = a[: len(a) - la], b[: len(b) - lb]
            src = np.concatenate([[self.cls], a, [self.sep], b, [self.sep]])
            seg = np.concatenate([np.ones(len(a) + 2, np.int64), np.full(len(b) + 1, 2, np.int64)])
        return src, seg, None, {"cls": int(self.data.labels[base])}


class ClsMlmBuilder(ClsBuilder):
    """UER-py's cls_mlm: the cls instance ([CLS] a [SEP] (b [SEP]) and the line's label) with its tokens
    masked for the mlm target too (static or dynamic masking, dup_factor copies, as mlm)."""

    masks = True


class S2sBuilder(Builder):
    """A source<TAB>target line: src = [CLS] source [SEP]; the decoder reads [CLS] target and predicts
    target [SEP] (teacher forcing, one position ahead)."""

    def _count(self) -> int:
        return self.data.num_documents

    def _build(self, base, copy, index):
        first = int(self.data.doc_idx[base])
        source = np.asarray(self.data[first], np.int64)[: self.T - 2]
        target = np.asarray(self.data[first + 1], np.int64)[: self.T - 1]
        src = np.concatenate([[self.cls], source, [self.sep]])
        steps = np.stack([np.concatenate([[self.cls], target]), np.concatenate([target, [self.sep]])], axis=1)
        return src, np.ones(len(src), np.int64), None, {"s2s": steps}  # steps: as long as the target, not src


def truncation_counts(la: int, lb: int, budget: int) -> tuple[int, int]:
    """Tokens to cut from a and b so that la + lb <= budget, one at a time from the longer (b on a
    tie), as BERT's truncate_seq_pair."""
    excess = la + lb - budget
    if excess <= 0:
        return 0, 0
    cut_a = cut_b = 0
    if la > lb:
        cut_a = min(excess, la - lb)
    else:
        cut_b = min(excess, lb - la)
    rest = excess - cut_a - cut_b
    return cut_a + rest // 2, cut_b + rest - rest // 2


class PairBuilder(Builder):
    """bert (NSP) and albert (SOP)."""

    masks = True
    sop = False

    def _count(self) -> int:
        opts = self.meta_options
        self.rows = pair_index(self.data.doc_idx, self.data.lengths, self.T - 3, float(opts.get("short_seq_prob", 0.1)),
                               self.dup, self.seed, self.sop)
        self.dup_pairs, self.dup = self.dup, 1  # the index already holds every copy
        self.seq_end = np.cumsum(self.data.lengths, dtype=np.int64)
        return len(self.rows)

    def _seq_tokens(self, first: int, stop: int):
        if stop <= first:
            return np.zeros(0, np.int64), (np.zeros(0, bool) if self.whole_word else None)
        a = int(self.seq_end[first] - self.data.lengths[first])
        b = int(self.seq_end[stop - 1])
        return self.tokens(a, b), self.word_starts(a, b)

    def _build(self, base, copy, index):
        first, a_end, chunk_end, target, label, doc = (int(x) for x in self.rows[base])
        rng = np.random.default_rng([self.seed, STREAM_PAIR, index])
        a, wa = self._seq_tokens(first, a_end)
        if not self.sop and label:
            b, wb = self._random_next(rng, doc, target - len(a))
        else:
            b, wb = self._seq_tokens(a_end, chunk_end)
            if self.sop and label:
                a, b, wa, wb = b, a, wb, wa
        cut_a, cut_b = truncation_counts(len(a), len(b), self.T - 3)
        front_a, front_b = rng.binomial(cut_a, 0.5), rng.binomial(cut_b, 0.5)
        a, b = a[front_a:len(a) - (cut_a - front_a)], b[front_b:len(b) - (cut_b - front_b)]
        src = np.concatenate([[self.cls], a, [self.sep], b, [self.sep]]).astype(np.int64)
        seg = np.concatenate([np.ones(len(a) + 2, np.int64), np.full(len(b) + 1, 2, np.int64)])
        ws = None
        if self.whole_word:
            wa = wa[front_a:len(wa) - (cut_a - front_a)]
            wb = wb[front_b:len(wb) - (cut_b - front_b)]
            ws = np.concatenate([[True], wa, [True], wb, [True]])
        return src, seg, ws, {"sp": label}

    def _random_next(self, rng: np.random.Generator, doc: int, want: int):
        """Sentences of a random other document, from a random start, until `want` tokens."""
        D = self.data.num_documents
        other = doc
        for _ in range(10):
            other = int(rng.integers(D))
            if other != doc:
                break
        first, stop = int(self.data.doc_idx[other]), int(self.data.doc_idx[other + 1])
        start = int(rng.integers(first, stop))
        ends = self.seq_end[start:stop] - (self.seq_end[start] - self.data.lengths[start])
        last = min(int(np.searchsorted(ends, max(want, 1))), stop - start - 1)
        return self._seq_tokens(start, start + last + 1)


class SopBuilder(PairBuilder):
    sop = True


# the one builder registry; ERNIE 2.0's builders (uer_ds/data/ernie.py, which imports this module) join it
# when uer_ds.data.dataset is imported
BUILDERS = {"mlm": MlmBuilder, "lm": LmBuilder, "bilm": BilmBuilder, "cls": ClsBuilder, "cls_mlm": ClsMlmBuilder,
            "bert": PairBuilder,
            "albert": SopBuilder, "s2s": S2sBuilder}
