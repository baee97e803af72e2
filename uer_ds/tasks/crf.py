"""A linear-chain conditional random field over tag sequences: exact log-likelihood (forward
algorithm) and Viterbi decoding, on sequences given by a prefix mask.

score(y) = start[y_0] + sum_t emissions[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_last]
log p(y | x) = score(y) - log sum over every tag path y' of exp(score(y'))

The tests check both against an enumeration of all L^T paths.
"""
from __future__ import annotations

import torch
from torch import nn


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32 (the forward algorithm sums many terms); fp32 and fp64 stay."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class CRF(nn.Module):
    """L tags.  Parameters start at zero (made in __init__, so every engine path, ZeRO-3's included,
    gets the same values without an init hook); the emissions carry the signal at first."""

    def __init__(self, labels_num: int) -> None:
        super().__init__()
        if labels_num < 1:
            raise ValueError(f"labels_num has value {labels_num}: a CRF needs at least one tag")
        self.labels_num = labels_num
        self.start = nn.Parameter(torch.zeros(labels_num))  # (L,)
        self.end = nn.Parameter(torch.zeros(labels_num))  # (L,)
        self.transitions = nn.Parameter(torch.zeros(labels_num, labels_num))  # (L, L): [from, to]

    @staticmethod
    def _check(emissions: torch.Tensor, mask: torch.Tensor) -> None:
        if emissions.dim() != 3 or mask.shape != emissions.shape[:2]:
            raise ValueError(f"emissions (B, T, L) and mask (B, T) expected, got {tuple(emissions.shape)} and "
                             f"{tuple(mask.shape)}")

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sequence: emissions (B, T, L) fp32, mask (B, T) bool, a prefix of each row -> (B,)."""
        self._check(emissions, mask)
        alpha = self.start + emissions[:, 0]  # (B, L)
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]  # (B, L)
            alpha = torch.where(mask[:, t: t + 1], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """score(tags) per sequence: tags (B, T) (any value where mask is False) -> (B,)."""
        self._check(emissions, mask)
        tags = tags.masked_fill(~mask, 0)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        score = self.start[tags[:, 0]] + (emitted * mask).sum(1)
        moves = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        score = score + (moves * mask[:, 1:]).sum(1)
        last = mask.long().sum(1).clamp(min=1) - 1  # (B,)
        return score + self.end[tags.gather(1, last.unsqueeze(1)).squeeze(1)]

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(tags | emissions) per sequence (B,).  Every row needs mask[:, 0] True."""
        emissions = at_least_fp32(emissions)
        return self.path_score(emissions, tags, mask) - self.log_partition(emissions, mask)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi: the highest-scoring path per sequence, (B, T) long (0 where mask is False)."""
        self._check(emissions, mask)
        emissions = at_least_fp32(emissions)
        batch, length, labels = emissions.shape
        score = self.start + emissions[:, 0]  # (B, L)
        keep = torch.arange(labels, device=emissions.device).expand(batch, labels)  # "stay" back-pointers
        pointers = []
        for t in range(1, length):
            total = score.unsqueeze(2) + self.transitions  # (B, L from, L to)
            best, arg = total.max(dim=1)  # (B, L)
            step = mask[:, t: t + 1]
            score = torch.where(step, best + emissions[:, t], score)
            pointers.append(torch.where(step, arg, keep))  # masked steps pass the tag through unchanged
        tag = (score + self.end).argmax(dim=1)  # (B,): the best last tag (carried to position T-1)
        path = [tag]
        for arg in reversed(pointers):
            tag = arg.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        path.reverse()
        return torch.stack(path, dim=1).masked_fill(~mask, 0)


def compress(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each row's masked positions to the front, in order.

    values (B, T, ...) and mask (B, T) -> (packed (B, W, ...), packed mask (B, W), index (B, W)) with
    W the largest count; index[b, w] is the position packed[b, w] came from (for scattering back).
    """
    counts = mask.long().sum(1)  # (B,)
    width = max(int(counts.max()), 1) if counts.numel() else 1
    index = torch.argsort((~mask).to(torch.int32), dim=1, stable=True)[:, :width]  # masked positions first
    gather = index.view(*index.shape, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:])
    packed_mask = torch.arange(width, device=mask.device).unsqueeze(0) < counts.unsqueeze(1)
    return values.gather(1, gather), packed_mask, index


__all__ = ["CRF", "compress"]
