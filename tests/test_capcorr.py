"""CapCorr: capsule rolls, their correlation with steps, and the test-time logging."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch

from tvae_lightning import CapsuleCorrelation, TopographicVAE
from tvae_lightning.metrics.functional import (
    capsule_correlation,
    capsule_rolls,
    circular_cross_correlation,
)


def slow_rolls(capsules: torch.Tensor) -> list[list[int]]:
    """For each sequence and frame l >= 1, the majority roll of frame 0 onto frame l."""
    batch, seq_len, n_caps, cap_dim = capsules.shape
    rolls = []
    for b in range(batch):
        row = []
        for frame in range(1, seq_len):
            votes = Counter()
            for c in range(n_caps):
                first = capsules[b, 0, c].tolist()
                second = capsules[b, frame, c].tolist()
                scores = [
                    sum(first[i] * second[(i + k) % cap_dim] for i in range(cap_dim))
                    for k in range(cap_dim)
                ]
                votes[scores.index(max(scores))] += 1
            top = max(votes.values())
            row.append(min(k for k, count in votes.items() if count == top))
        rolls.append(row)
    return rolls


def slow_pearson(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    spread_x = math.sqrt(sum((x - mean_x) ** 2 for x in xs))
    spread_y = math.sqrt(sum((y - mean_y) ** 2 for y in ys))
    return covariance / (spread_x * spread_y)


def rolling_capsules(batch: int, seq_len: int, n_caps: int, cap_dim: int, step: int):
    """Random capsules whose frame l is frame 0 rolled by step * l units."""
    base = torch.rand(batch, 1, n_caps, cap_dim)
    frames = [base.roll(step * frame, dims=-1) for frame in range(seq_len)]
    return torch.cat(frames, dim=1)


def test_cross_correlation_matches_slow_sum():
    torch.manual_seed(0)
    first, second = torch.randn(2, 3, 5)
    result = circular_cross_correlation(first, second)
    for row in range(3):
        for k in range(5):
            expected = sum(
                float(first[row, i] * second[row, (i + k) % 5]) for i in range(5)
            )
            assert result[row, k].item() == pytest.approx(expected, abs=1e-5)


def test_cross_correlation_peaks_at_roll():
    torch.manual_seed(0)
    first = torch.randn(7)
    assert circular_cross_correlation(first, first.roll(3)).argmax().item() == 3


def test_rolls_of_rolling_capsules_equal_steps():
    torch.manual_seed(0)
    capsules = rolling_capsules(2, 6, 3, 8, step=1)
    expected = torch.arange(1, 6).expand(2, 5)
    assert torch.equal(capsule_rolls(capsules), expected)


def test_rolls_wrap_around_capsule():
    torch.manual_seed(0)
    capsules = rolling_capsules(1, 5, 2, 4, step=3)
    assert capsule_rolls(capsules).tolist() == [[3, 2, 1, 0]]


def test_rolls_follow_majority_of_capsules():
    torch.manual_seed(0)
    capsules = rolling_capsules(1, 4, 3, 6, step=1)
    capsules[:, 1:, 2] = torch.rand(3, 6)
    assert capsule_rolls(capsules).tolist() == [[1, 2, 3]]


def test_rolls_match_slow_loop():
    torch.manual_seed(1)
    capsules = torch.rand(3, 5, 4, 6) + 10.0
    assert capsule_rolls(capsules).tolist() == slow_rolls(capsules)


def test_rolls_reject_single_frame():
    with pytest.raises(ValueError, match="at least 2 frames"):
        capsule_rolls(torch.rand(1, 1, 2, 3))


def test_capcorr_of_rolling_capsules_is_one():
    torch.manual_seed(0)
    capsules = rolling_capsules(4, 6, 3, 8, step=1)
    assert capsule_correlation(capsules).item() == pytest.approx(1.0)


def test_capcorr_matches_slow_pearson_per_group():
    torch.manual_seed(2)
    capsules = torch.rand(12, 5, 3, 7)
    groups = torch.tensor([0, 1, 2] * 4)
    rolls = slow_rolls(capsules)

    result = capsule_correlation(capsules, groups, num_groups=3)

    for group in range(3):
        members = [b for b in range(12) if groups[b] == group]
        steps = [float(frame) for b in members for frame in range(1, 5)]
        values = [float(roll) for b in members for roll in rolls[b]]
        expected = slow_pearson(steps, values)
        assert result[group].item() == pytest.approx(expected, abs=1e-6)


def test_capcorr_empty_group_is_nan():
    capsules = rolling_capsules(2, 4, 2, 5, step=1)
    result = capsule_correlation(capsules, torch.tensor([0, 0]), num_groups=2)
    assert math.isnan(result[1].item())


def test_capcorr_constant_rolls_is_zero():
    still = torch.rand(2, 1, 2, 5).expand(2, 4, 2, 5)
    assert capsule_correlation(still).item() == 0.0


def test_capcorr_rejects_group_out_of_range():
    capsules = torch.rand(2, 4, 2, 5)
    with pytest.raises(ValueError, match="groups must lie in 0 .. 1"):
        capsule_correlation(capsules, torch.tensor([0, 2]), num_groups=2)


def test_metric_batches_equal_one_pass():
    torch.manual_seed(3)
    capsules = torch.rand(10, 5, 3, 7)
    groups = torch.tensor([0, 1] * 5)
    metric = CapsuleCorrelation(num_groups=2)
    metric.update(capsules[:4], groups[:4])
    metric.update(capsules[4:], groups[4:])

    expected = capsule_correlation(capsules, groups, num_groups=2).float()

    torch.testing.assert_close(metric.compute(), expected)


def test_metric_merged_states_equal_one_pass():
    # Summing the states is what the distributed reduction does.
    torch.manual_seed(4)
    capsules = torch.rand(8, 5, 3, 7)
    groups = torch.tensor([0, 1] * 4)
    first, second = CapsuleCorrelation(num_groups=2), CapsuleCorrelation(num_groups=2)
    first.update(capsules[:3], groups[:3])
    second.update(capsules[3:], groups[3:])
    first.merge_state(second)

    expected = capsule_correlation(capsules, groups, num_groups=2).float()

    torch.testing.assert_close(first.compute(), expected)


def test_metric_rejects_zero_groups():
    with pytest.raises(ValueError, match="num_groups"):
        CapsuleCorrelation(num_groups=0)


# -- logged by test ----------------------------------------------------------


class VariedData(L.LightningDataModule):
    """Random sequences, half varying factor 0 and half factor 1, none factor 2."""

    def __init__(self, with_varied: bool = True, with_names: bool = True) -> None:
        super().__init__()
        self.with_varied = with_varied
        if with_names:
            self.factor_names = ("x", "scale", "shape")

    def test_dataloader(self):
        torch.manual_seed(0)
        frames = torch.rand(8, 4, 1, 4, 4)
        items = []
        for index, sequence in enumerate(frames):
            item = {"frames": sequence}
            if self.with_varied:
                item["varied"] = torch.tensor(index % 2)
            items.append(item)
        return torch.utils.data.DataLoader(items, batch_size=4)


def run_test(data: L.LightningDataModule, tmp_path: Path) -> dict[str, float]:
    model = TopographicVAE(
        n_caps=2, cap_dim=4, seq_len=4, time_window=3, image_shape=(1, 4, 4),
        eval_num_samples=2,
    )
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return trainer.test(model, datamodule=data)[0]


def test_test_logs_capcorr_per_factor(tmp_path: Path):
    results = run_test(VariedData(), tmp_path)
    assert {"test/capcorr_x", "test/capcorr_scale"} <= set(results)


def test_test_skips_capcorr_of_factor_never_varied(tmp_path: Path):
    results = run_test(VariedData(), tmp_path)
    assert "test/capcorr_shape" not in results


def test_test_skips_capcorr_without_varied(tmp_path: Path):
    results = run_test(VariedData(with_varied=False), tmp_path)
    assert not any(name.startswith("test/capcorr") for name in results)


def test_test_skips_capcorr_without_factor_names(tmp_path: Path):
    results = run_test(VariedData(with_names=False), tmp_path)
    assert not any(name.startswith("test/capcorr") for name in results)
