"""The sentence-pair index of the bert (NSP) and albert (SOP) processors.

As Google BERT's create_instances_from_document (and UER-py's BertDataset / AlbertDataset): each
document's sentences are gathered into chunks up to a target length (max_num_tokens, or with
probability short_seq_prob a random length in [2, max_num_tokens]); a random cut splits a chunk
into A and B.  NSP: with probability 1/2 (always for a one-sentence chunk) B is replaced by text
from a random other document (drawn when the instance is built) and the sentences after the cut
go back to the next chunk; label 1 = random next.  SOP: with probability 1/2 A and B are swapped;
label 1 = swapped.  One pass per dup_factor copy, each with its own random choices.

Rows: (first_seq, a_end, chunk_end, target_len, label, doc).  A = sequences [first_seq, a_end),
B = [a_end, chunk_end) (NSP random next: chunk_end == a_end, B comes from elsewhere).

The random choices use splitmix64 seeded per (seed, copy, document), so the index is the same in
C (fast: _native.pair_index) and in Python (pair_index_py, the reference the tests compare with).
"""
from __future__ import annotations

import numpy as np

from uer_ds.data import native

_MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, state: int) -> None:
        self.state = state & _MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)

    def randint(self, a: int, b: int) -> int:
        """Inclusive, like random.randint."""
        return a + self.next() % (b - a + 1)

    @classmethod
    def seeded(cls, seed: int, a: int, b: int) -> "SplitMix64":
        g = cls(seed)
        g = cls(g.next() ^ a)
        g = cls(g.next() ^ b)
        return cls(g.next())


def pair_index_py(doc_idx: np.ndarray, lengths: np.ndarray, max_num_tokens: int, short_seq_prob: float,
                  dup_factor: int, seed: int, sop: bool) -> np.ndarray:
    rows = []
    for copy in range(dup_factor):
        for d in range(len(doc_idx) - 1):
            rng = SplitMix64.seeded(seed, copy, d)
            first, end = int(doc_idx[d]), int(doc_idx[d + 1])
            target = max_num_tokens
            if rng.random() < short_seq_prob:
                target = rng.randint(2, max_num_tokens)
            chunk_start, current, i = first, 0, first
            while i < end:
                current += int(lengths[i])
                if i == end - 1 or current >= target:
                    count = i + 1 - chunk_start
                    a_count = rng.randint(1, count - 1) if count >= 2 else 1
                    chunk_end = i + 1
                    if sop:
                        label = int(rng.random() < 0.5)
                    else:
                        label = int(count == 1 or rng.random() < 0.5)
                        if label:
                            chunk_end = chunk_start + a_count
                            i = chunk_end - 1
                    rows.append((chunk_start, chunk_start + a_count, chunk_end, target, label, d))
                    chunk_start, current = i + 1, 0
                i += 1
    return np.array(rows, dtype=np.int64).reshape(-1, 6)


def pair_index(doc_idx: np.ndarray, lengths: np.ndarray, max_num_tokens: int, short_seq_prob: float,
               dup_factor: int, seed: int, sop: bool) -> np.ndarray:
    """(M, 6) int64 rows, as documented above; C when the extension is built."""
    if not native.available():
        return pair_index_py(doc_idx, lengths, max_num_tokens, short_seq_prob, dup_factor, seed, sop)
    raw = native._native.pair_index(np.ascontiguousarray(doc_idx, dtype=np.int64),
                                    np.ascontiguousarray(lengths, dtype=np.int32),
                                    max_num_tokens, short_seq_prob, dup_factor, seed, sop)
    return np.frombuffer(raw, dtype=np.int64).reshape(-1, 6)
