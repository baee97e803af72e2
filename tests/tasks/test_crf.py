"""The CRF against brute force: every one of the L^T tag paths enumerated and scored by the formula
written out here (start + emissions + transitions + end), on small random inputs with ragged lengths."""
from __future__ import annotations

import itertools

import pytest
import torch

from uer_ds.tasks.crf import CRF, compress


@torch.no_grad()
def path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    """The score of one path, one term at a time (emissions: (T, L) of one sequence)."""
    total = float(crf.start[path[0]]) + float(crf.end[path[-1]])
    total += sum(float(emissions[t, tag]) for t, tag in enumerate(path))
    total += sum(float(crf.transitions[a, b]) for a, b in zip(path, path[1:]))
    return total


def random_crf(labels: int, seed: int) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(labels).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


CASES = [(3, [4, 2, 1, 3], 0), (2, [5, 5], 1), (4, [3, 1, 2], 2), (1, [3, 2], 3)]


@pytest.mark.parametrize("labels, lengths, seed", CASES)
def test_log_likelihood_and_viterbi_equal_enumeration(labels, lengths, seed):
    crf = random_crf(labels, seed)
    batch, width = len(lengths), max(lengths)
    emissions = torch.randn(batch, width, labels, dtype=torch.float64)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    tags = torch.randint(0, labels, (batch, width))
    log_z = crf.log_partition(emissions, mask)
    likelihood = crf.log_likelihood(emissions, tags, mask)
    best = crf.decode(emissions, mask)
    for b, n in enumerate(lengths):
        paths = list(itertools.product(range(labels), repeat=n))
        scores = torch.tensor([path_score(crf, emissions[b], p) for p in paths], dtype=torch.float64)
        assert log_z[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-9)
        gold = tuple(tags[b, :n].tolist())
        assert likelihood[b].item() == pytest.approx(path_score(crf, emissions[b], gold) - log_z[b].item(), abs=1e-9)
        assert tuple(best[b, :n].tolist()) == paths[int(scores.argmax())]
        assert best[b, n:].eq(0).all()  # nothing decoded past the sequence


def test_probabilities_of_all_paths_sum_to_one():
    crf = random_crf(3, 7)
    emissions = torch.randn(1, 4, 3, dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    total = 0.0
    for path in itertools.product(range(3), repeat=4):
        total += crf.log_likelihood(emissions, torch.tensor([path]), mask).exp().item()
    assert total == pytest.approx(1.0, abs=1e-12)


def test_gradient_of_log_likelihood_flows_to_every_parameter():
    crf = random_crf(3, 1)
    emissions = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss = -crf.log_likelihood(emissions, torch.tensor([[0, 1, 2], [2, 2, 0]]), mask).sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in crf.parameters())
    assert emissions.grad[1, 2].abs().sum() == 0  # a masked position has no influence
    torch.autograd.gradcheck(lambda e: crf.log_likelihood(e, torch.tensor([[0, 1, 2]]), mask[:1]),
                             (torch.randn(1, 3, 3, dtype=torch.float64, requires_grad=True),))


def test_compress_moves_masked_positions_to_the_front_in_order():
    values = torch.arange(10).view(2, 5) * 10
    mask = torch.tensor([[False, True, False, True, True], [True, False, False, False, False]])
    packed, packed_mask, index = compress(values, mask)
    assert packed[0].tolist() == [10, 30, 40] and packed[1, 0].item() == 50
    assert packed_mask.tolist() == [[True, True, True], [True, False, False]]
    assert index[0].tolist() == [1, 3, 4] and index[1, 0].item() == 0


def test_crf_rejects_bad_shapes():
    with pytest.raises(ValueError, match="at least one tag"):
        CRF(0)
    with pytest.raises(ValueError, match=r"emissions \(B, T, L\) and mask \(B, T\)"):
        CRF(2).log_partition(torch.zeros(2, 3, 2), torch.ones(2, 4, dtype=torch.bool))
