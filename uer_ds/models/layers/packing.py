"""Unpadded (packed) batches: where a padded (B, T) batch's real tokens are, found once on the host.

The technique of NVIDIA's and MosaicBERT's fast BERTs: the embedding output (B, T, E) is packed to
its N real tokens (N, E) once per batch, every transformer layer runs on those N rows (matmuls,
LayerNorm, dropout, residual, and attention over `cu_seqlens` through the varlen kernel), and the
result is unpacked only where a head needs positions.  On short fine-tuning texts most positions are
padding (book_review at seq 128: 69 % of seq_length), which the packed layers never compute.

`Packing` is computed by the collate function on the host (`packing_of`, numpy: no device value is
ever read back) and travels in the batch's `BatchInfo`; the model receives it as its `padded`
argument (a Packing means "padded, and here is where the tokens are"), so encoders that do not use
it simply mask, as for `padded=True`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch


class Packing(NamedTuple):
    """The real tokens of a (B, T) batch: positions with seg > 0, row by row, in order.

    indices: (N,) int64, each token's position in the flattened (B * T) batch;
    cu_seqlens: (B + 1,) int32, row b's tokens are packed rows [cu_seqlens[b], cu_seqlens[b + 1]);
    max_seqlen: the most tokens in one row (a host int: it sizes the attention kernel's grid);
    shape: (B, T), the padded batch's shape.
    Host-made (`packing_of`), moved to the device with the batch; the model never derives it.
    """

    indices: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int
    shape: tuple[int, int]


class PackedHidden(NamedTuple):
    """An encoder's output on packed tokens: tokens (N, H) and the Packing that places them.
    `padded()` scatters them back to (B, T, H) with zeros at padding (a head that needs positions)."""

    tokens: torch.Tensor
    packing: Packing

    def padded(self) -> torch.Tensor:
        return unpack(self.tokens, self.packing)


def packing_of(seg: torch.Tensor) -> Optional[Packing]:
    """The Packing of a (B, T) segment tensor on the host (CPU), seg 0 = padding; None when no
    position is padding (the batch is already dense).  ValueError on a device tensor: this runs in
    the collate function, where reading values costs nothing."""
    if seg.device.type != "cpu":
        raise ValueError(f"packing_of runs in the collate function on the host; seg is on {seg.device}")
    if seg.dim() != 2:
        raise ValueError(f"packing_of takes seg of shape (B, T); got {tuple(seg.shape)}")
    real = seg.numpy() > 0
    if real.all():
        return None
    counts = real.sum(axis=1)
    cu_seqlens = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=cu_seqlens[1:])
    return Packing(indices=torch.from_numpy(np.flatnonzero(real).astype(np.int64)),
                   cu_seqlens=torch.from_numpy(cu_seqlens), max_seqlen=int(counts.max(initial=0)),
                   shape=(int(seg.shape[0]), int(seg.shape[1])))


def packed_rows(flat_index: torch.Tensor, packing: Packing, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Host: positions in the flattened (B * T) batch -> their rows among the packed tokens.

    valid: (len,) bool, which entries are real (others, padding entries of a fixed-size list, map to
    row 0).  ValueError when a real entry points at a padding position (it has no packed row)."""
    inverse = np.full(packing.shape[0] * packing.shape[1], -1, dtype=np.int64)
    inverse[packing.indices.numpy()] = np.arange(packing.indices.numel())
    rows = inverse[flat_index.numpy()]
    keep = np.ones(len(rows), dtype=bool) if valid is None else valid.numpy()
    bad = keep & (rows < 0)
    if bad.any():
        position = int(flat_index[int(np.flatnonzero(bad)[0])])
        raise ValueError(f"position {position} (row {position // packing.shape[1]}, column "
                         f"{position % packing.shape[1]}) is labelled but is padding (seg 0): labels must be on tokens")
    return torch.from_numpy(np.where(keep, rows, 0))


def pack(x: torch.Tensor, packing: Packing) -> torch.Tensor:
    """(B, T, ...) -> (N, ...): the real tokens' rows, in order (an index gather; no host read)."""
    return x.flatten(0, 1).index_select(0, packing.indices)


def unpack(x: torch.Tensor, packing: Packing) -> torch.Tensor:
    """(N, ...) -> (B, T, ...) with zeros at padding (an index scatter; no host read)."""
    b, t = packing.shape
    out = x.new_zeros((b * t,) + tuple(x.shape[1:])).index_copy(0, packing.indices, x)
    return out.view((b, t) + tuple(x.shape[1:]))
