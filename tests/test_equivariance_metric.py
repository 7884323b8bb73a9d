"""Equivariance error against a naive double loop over frame pairs."""

from __future__ import annotations

import pytest
import torch

from torchmetrics.utilities.data import dim_zero_sum

from tvae_lightning.metrics import EquivarianceError
from tvae_lightning.metrics.functional import (
    equivariance_error,
    equivariance_error_by_offset,
)


def naive_equivariance_error(capsules: torch.Tensor) -> torch.Tensor:
    batch, seq_len, n_caps, _ = capsules.shape
    errors = torch.zeros(batch, dtype=torch.float64)
    for b in range(batch):
        for l0 in range(seq_len):
            for l1 in range(l0 + 1, seq_len):
                for c in range(n_caps):
                    early = capsules[b, l0, c].double()
                    late = capsules[b, l1, c].double()
                    early = early / early.norm()
                    late = late / late.norm()
                    rolled = torch.roll(early, shifts=l1 - l0)
                    errors[b] += (rolled - late).abs().sum()
    return errors


@pytest.mark.parametrize(
    ("seq_len", "n_caps", "cap_dim"), [(6, 3, 6), (5, 2, 9), (9, 4, 4), (2, 1, 3)]
)
def test_matches_naive_loop(seq_len, n_caps, cap_dim):
    torch.manual_seed(seq_len * cap_dim)
    capsules = torch.randn(3, seq_len, n_caps, cap_dim)

    expected = naive_equivariance_error(capsules)

    torch.testing.assert_close(
        equivariance_error(capsules).double(), expected, rtol=1e-5, atol=1e-4
    )


def test_rolling_capsules_score_zero():
    base = torch.randn(2, 7)
    frames = torch.stack([base.roll(l, dims=-1) for l in range(5)])
    capsules = frames.unsqueeze(0)
    assert equivariance_error(capsules).item() == pytest.approx(0.0, abs=1e-5)


def test_random_capsules_near_chance_level():
    torch.manual_seed(0)
    capsules = torch.randn(64, 18, 18, 18)
    mean = equivariance_error(capsules).mean().item()
    assert 12_500 < mean < 14_000


def test_metric_mean_over_updates():
    torch.manual_seed(4)
    first = torch.randn(3, 6, 2, 5)
    second = torch.randn(5, 6, 2, 5)
    metric = EquivarianceError()
    metric.update(first)
    metric.update(second)

    expected = naive_equivariance_error(torch.cat([first, second])).mean()

    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-5)


def test_metric_states_sum_across_processes():
    metric = EquivarianceError()
    assert metric._defaults.keys() == {"sum_error", "num_sequences"}
    assert metric._reductions["sum_error"] is dim_zero_sum
    assert metric._reductions["num_sequences"] is dim_zero_sum


def test_metric_reset_clears_states():
    metric = EquivarianceError()
    metric.update(torch.randn(2, 4, 2, 4))
    metric.reset()
    metric.update(torch.zeros(1, 2, 1, 3) + torch.tensor([1.0, 0.0, 0.0]))
    assert metric.num_sequences.item() == 1


def test_by_offset_matches_naive_pairs():
    torch.manual_seed(5)
    capsules = torch.randn(2, 5, 3, 4)
    unit = torch.nn.functional.normalize(capsules, dim=-1)
    expected = torch.zeros(2, 4)
    for offset in range(1, 5):
        pairs = [(l0, l0 + offset) for l0 in range(5 - offset)]
        for l0, l1 in pairs:
            rolled = unit[:, l0].roll(offset, dims=-1)
            expected[:, offset - 1] += (rolled - unit[:, l1]).abs().sum(dim=(-2, -1))
        expected[:, offset - 1] /= len(pairs)

    torch.testing.assert_close(equivariance_error_by_offset(capsules), expected)


def test_wrong_rank_raises():
    with pytest.raises(ValueError, match="n_caps, cap_dim"):
        equivariance_error(torch.zeros(2, 3, 4))
