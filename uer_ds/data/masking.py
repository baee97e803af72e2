"""Masked-LM masking: token, whole-word and span masking (BERT's 15 % with 80/10/10).

Of the candidate positions (not [CLS], [SEP] or padding), round(15 %) (at least one) are chosen:
  token masking       that many positions, uniformly; each one independently becomes [MASK] (80 %),
                      a random non-special token (10 %) or stays (10 %)
  whole-word masking  whole words in random order, skipping a word that would overshoot the count
                      (as UER-py and Google BERT); the 80/10/10 choice per token
  span masking        spans of geometric length (p = span_geo_prob, at most span_max_length, within
                      runs of candidates) in random order, skipping overshooting spans (as UER-py);
                      the 80/10/10 choice per span
  knowledge masking   (ERNIE; units from preprocessing, see knowledge.py) per instance either whole-word
                      masking over the units or token masking: `whole_word` chosen per call
Labels: the original id at chosen positions, IGNORE_INDEX (-100) elsewhere.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

IGNORE_INDEX = -100  # the label of "no prediction" (uer_ds.models.IGNORE_INDEX; not imported: no torch here)
MASK_RATIO = 0.15


class Masker:
    def __init__(self, mask_id: int, vocab_size: int, special_ids: list[int], span_geo_prob: Optional[float] = None,
                 span_max_length: int = 10, whole_word: bool = False, ratio: float = MASK_RATIO) -> None:
        self.mask_id, self.vocab_size, self.ratio = mask_id, vocab_size, ratio
        self.special = np.unique(np.asarray(special_ids, dtype=np.int64))
        if len(self.special) >= vocab_size:
            raise ValueError(f"the vocabulary ({vocab_size} entries) has no non-special token to substitute")
        self.whole_word = whole_word
        self.span_lengths = self.span_probs = None
        if span_geo_prob is not None:
            lengths = np.arange(1, span_max_length + 1)
            probs = span_geo_prob * (1 - span_geo_prob) ** (lengths - 1)
            self.span_lengths, self.span_probs = lengths, probs / probs.sum()

    def count(self, candidates: int) -> int:
        """Positions to mask among `candidates` (round(ratio x candidates), at least one); whole-word
        and span masking stay within it, so count(seq_length) bounds any instance's labels."""
        return max(1, int(np.floor(self.ratio * candidates + 0.5))) if candidates else 0

    def __call__(self, src: np.ndarray, candidates: np.ndarray, rng: np.random.Generator,
                 word_starts: Optional[np.ndarray] = None, whole_word: Optional[bool] = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """src (T,) int64, candidates (T,) bool, word_starts (T,) bool for whole-word masking
        -> (masked src, labels), both (T,) int64.  whole_word: this call's choice (None: the masker's)."""
        whole_word = self.whole_word if whole_word is None else whole_word
        src = src.copy()
        tgt = np.full(len(src), IGNORE_INDEX, dtype=np.int64)
        positions = np.flatnonzero(candidates)
        k = self.count(len(positions))
        if k == 0:
            return src, tgt
        if whole_word or self.span_lengths is not None:
            starts, lengths = self._units(positions, candidates, rng, word_starts, whole_word)
            picked_units = self._pick_units(lengths, k, rng)
            if len(picked_units) == 0:  # every unit is longer than the budget (one long word)
                return src, tgt
            picked = np.concatenate([np.arange(starts[u], starts[u] + lengths[u]) for u in picked_units])
            if whole_word:
                choice = rng.random(len(picked))
            else:  # one choice per span
                choice = np.repeat(rng.random(len(picked_units)), lengths[picked_units])
        else:
            picked = rng.choice(positions, size=k, replace=False)
            choice = rng.random(k)
        tgt[picked] = src[picked]
        src[picked[choice < 0.8]] = self.mask_id
        swap = picked[(choice >= 0.8) & (choice < 0.9)]
        src[swap] = self._random_tokens(len(swap), rng)
        return src, tgt

    def _units(self, positions: np.ndarray, candidates: np.ndarray, rng: np.random.Generator,
               word_starts: Optional[np.ndarray], whole_word: bool) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) of the maskable units: words, or geometric spans, inside runs of candidates."""
        run_break = np.ones(len(positions), dtype=bool)
        run_break[1:] = np.diff(positions) != 1
        if whole_word:
            if word_starts is None:
                raise ValueError("whole-word masking needs word boundaries (preprocess with --whole_word_masking)")
            brk = run_break | word_starts[positions]
            starts = positions[brk]
            ends = np.append(positions[np.flatnonzero(brk)[1:] - 1] + 1, positions[-1] + 1)
            return starts, ends - starts
        run_starts = positions[run_break]
        run_ends = np.append(positions[np.flatnonzero(run_break)[1:] - 1] + 1, positions[-1] + 1)
        out_starts, out_lengths = [], []
        for a, b in zip(run_starts, run_ends):  # spans tile each run left to right; the last is cut
            draws = rng.choice(self.span_lengths, size=b - a, p=self.span_probs)
            ends = np.minimum(a + np.cumsum(draws), b)
            ends = ends[: np.searchsorted(ends, b) + 1]
            begins = np.concatenate([[a], ends[:-1]])
            out_starts.append(begins)
            out_lengths.append(ends - begins)
        return np.concatenate(out_starts), np.concatenate(out_lengths)

    @staticmethod
    def _pick_units(lengths: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        picked, total = [], 0
        for u in rng.permutation(len(lengths)):
            if total >= k:
                break
            if total + lengths[u] > k:
                continue
            picked.append(u)
            total += int(lengths[u])
        return np.asarray(picked, dtype=np.int64)

    def _random_tokens(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = rng.integers(0, self.vocab_size, size=n)
        bad = np.isin(out, self.special)
        while bad.any():
            out[bad] = rng.integers(0, self.vocab_size, size=int(bad.sum()))
            bad = np.isin(out, self.special)
        return out
