"""Capsule roll estimates and their correlation with the transformation steps."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_capsules(capsules: Tensor) -> None:
    if capsules.ndim != 4:
        raise ValueError(
            "capsules must have shape (batch, seq_len, n_caps, cap_dim), "
            f"got {tuple(capsules.shape)}"
        )
    if capsules.shape[1] < 2:
        raise ValueError(
            f"capsules must have at least 2 frames, got seq_len = {capsules.shape[1]}"
        )


def circular_cross_correlation(first: Tensor, second: Tensor) -> Tensor:
    """Return ``r[..., k] = sum over i of first[..., i] * second[..., (i + k) mod D]``.

    ``r[k]`` is largest when ``roll(first, k)`` lines up with ``second``, where
    ``roll(x, k)[i] = x[(i - k) mod D]`` as in ``torch.roll``. The inputs
    broadcast against each other, and the output has one more dimension of
    size D, the roll ``k``.
    """
    cap_dim = second.shape[-1]
    units = torch.arange(cap_dim, device=second.device)
    index = (units.unsqueeze(0) + units.unsqueeze(1)) % cap_dim
    shifted = second[..., index]
    return (first.unsqueeze(-2) * shifted).sum(dim=-1)


def capsule_rolls(capsules: Tensor) -> Tensor:
    """Return the roll that best maps frame 0 onto each later frame, ``(batch, S - 1)``.

    For frame ``l`` and every capsule, the roll is the argmax over ``k`` of the
    circular cross-correlation of frame 0 with frame ``l``. The capsules then
    vote and the most frequent roll wins, the smallest roll on a tie. Each
    capsule is centred first: that adds a constant to the correlation of every
    roll, so the argmax is unchanged, but keeps large positive activations from
    swamping the float32 sum.

    Args:
        capsules: activations ``(batch, seq_len, n_caps, cap_dim)``.

    Returns:
        Rolls in ``0 .. cap_dim - 1`` for frames ``1 .. seq_len - 1``.
    """
    _check_capsules(capsules)
    cap_dim = capsules.shape[-1]
    centred = capsules.float() - capsules.float().mean(dim=-1, keepdim=True)

    correlation = circular_cross_correlation(centred[:, :1], centred[:, 1:])
    best = correlation.argmax(dim=-1)

    votes = torch.nn.functional.one_hot(best, cap_dim).sum(dim=2)
    return votes.argmax(dim=-1)


def capsule_correlation_statistics(
    capsules: Tensor, groups: Tensor, num_groups: int
) -> Tensor:
    """Return the sums from which :func:`pearson_from_statistics` computes CapCorr.

    Shape ``(num_groups, 6)``: per group the count of (frame, sequence) pairs and
    the sums of ``x``, ``y``, ``x ** 2``, ``y ** 2`` and ``x * y``, with ``x`` the
    true number of steps ``l`` and ``y`` the roll from :func:`capsule_rolls`.
    Sums of several batches or processes add up to the sums of their union.

    Args:
        capsules: activations ``(batch, seq_len, n_caps, cap_dim)``.
        groups: group of each sequence (its varied factor), ``(batch,)`` integers
            in ``0 .. num_groups - 1``.
        num_groups: number of groups.
    """
    _check_groups(groups, capsules.shape[0], num_groups)
    rolls = capsule_rolls(capsules).double()
    steps = torch.arange(1, capsules.shape[1], device=rolls.device).double()
    steps = steps.expand_as(rolls)

    columns = torch.stack(
        [
            torch.ones_like(rolls),
            steps,
            rolls,
            steps**2,
            rolls**2,
            steps * rolls,
        ],
        dim=-1,
    ).sum(dim=1)

    statistics = columns.new_zeros(num_groups, columns.shape[-1])
    return statistics.index_add_(0, groups.long(), columns)


def pearson_from_statistics(statistics: Tensor) -> Tensor:
    """Return the Pearson correlation of each row of sums, ``(num_groups,)``.

    NaN where a group has no pairs. 0 where steps or rolls do not vary, for
    example when every roll is 0: the correlation is undefined there, and 0
    states that the rolls carry no information about the steps.
    """
    count, sum_x, sum_y, sum_xx, sum_yy, sum_xy = statistics.unbind(dim=-1)
    covariance = count * sum_xy - sum_x * sum_y
    variance_x = count * sum_xx - sum_x**2
    variance_y = count * sum_yy - sum_y**2
    denominator = torch.sqrt(variance_x * variance_y)

    correlation = covariance / denominator.clamp_min(torch.finfo(covariance.dtype).tiny)
    correlation = torch.where(denominator > 0, correlation, 0.0)
    return torch.where(count > 0, correlation, float("nan"))


def capsule_correlation(
    capsules: Tensor, groups: Tensor | None = None, num_groups: int = 1
) -> Tensor:
    """Return CapCorr, the correlation of capsule rolls with steps, per group.

    For each sequence and each frame ``l >= 1``, the roll that best aligns frame
    0 with frame ``l`` (see :func:`capsule_rolls`) is paired with ``l``. The
    Pearson correlation over all pairs of a group is its CapCorr, as defined by
    Keller and Welling (NeurIPS 2021) for dSprites. Frame 0 is left out because
    its roll is 0 by construction. An equivariant model, whose capsules roll one
    unit per step, scores 1.

    Args:
        capsules: activations ``(batch, seq_len, n_caps, cap_dim)``.
        groups: group of each sequence, ``(batch,)``; all in group 0 when
            ``None``.
        num_groups: number of groups.

    Returns:
        Correlations of shape ``(num_groups,)``, NaN for a group without pairs
        and 0 for a group whose rolls or steps do not vary.

    Example:
        >>> import torch
        >>> base = torch.tensor([3.0, 1.0, 0.0, 0.0, 2.0])
        >>> frames = torch.stack([base.roll(l) for l in range(4)])
        >>> capsule_correlation(frames.reshape(1, 4, 1, 5))
        tensor([1.], dtype=torch.float64)
    """
    if groups is None:
        groups = torch.zeros(capsules.shape[0], dtype=torch.long,
                             device=capsules.device)
    statistics = capsule_correlation_statistics(capsules, groups, num_groups)
    return pearson_from_statistics(statistics)


def _check_groups(groups: Tensor, batch: int, num_groups: int) -> None:
    if num_groups < 1:
        raise ValueError(f"num_groups must be a positive integer, got {num_groups}")
    if groups.shape != (batch,):
        raise ValueError(
            f"groups must have shape (batch,) = ({batch},), got {tuple(groups.shape)}"
        )
    if groups.numel() and (groups.min() < 0 or groups.max() >= num_groups):
        raise ValueError(
            f"groups must lie in 0 .. {num_groups - 1}, got values from "
            f"{int(groups.min())} to {int(groups.max())}"
        )
