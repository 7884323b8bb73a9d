"""Equivariance error of capsule activations over a transformation sequence."""

from __future__ import annotations

import torch
from torch import Tensor


def _check_capsules(capsules: Tensor) -> None:
    if capsules.ndim != 4:
        raise ValueError(
            "capsules must have shape (batch, seq_len, n_caps, cap_dim), "
            f"got {tuple(capsules.shape)}"
        )


def pairwise_equivariance_error(capsules: Tensor) -> Tensor:
    """Return the error of every frame pair ``l0 < l1``, shape ``(batch, pairs)``.

    Each capsule is scaled to unit L2 norm; the error of a pair is
    ``sum over c of || roll(s[l0, c], l1 - l0) - s[l1, c] ||_1``. Pairs are ordered
    as ``torch.triu_indices(seq_len, seq_len, offset=1)``.
    """
    _check_capsules(capsules)
    seq_len, cap_dim = capsules.shape[1], capsules.shape[3]
    unit = torch.nn.functional.normalize(capsules.float(), p=2.0, dim=-1)

    first, second = torch.triu_indices(seq_len, seq_len, offset=1, device=unit.device)
    shifts = second - first

    # roll(x, s)[d] = x[(d - s) mod D], gathered for all pairs at once.
    units = torch.arange(cap_dim, device=unit.device)
    source = (units.unsqueeze(0) - shifts.unsqueeze(1)) % cap_dim
    early = unit[:, first]
    index = source[None, :, None, :].expand_as(early)
    rolled = torch.gather(early, dim=-1, index=index)

    return (rolled - unit[:, second]).abs().sum(dim=(-2, -1))


def equivariance_error(capsules: Tensor) -> Tensor:
    """Return the equivariance error ``E_eq`` of each sequence, shape ``(batch,)``.

    .. math::

        E_{eq} = \\sum_{l_0 < l_1} \\sum_c
            \\lVert \\mathrm{roll}(\\hat s_{l_0, c}, l_1 - l_0) - \\hat s_{l_1, c} \\rVert_1

    where ``s_hat`` is each capsule scaled to unit L2 norm and ``roll`` moves units
    along the capsule (Keller and Welling, NeurIPS 2021). A perfectly equivariant
    representation, whose capsules roll one unit per frame, scores 0. Independent
    random unit capsules score about 13.2k for 18 frames of 18 capsules of 18 units.

    Args:
        capsules: activations of shape ``(batch, seq_len, n_caps, cap_dim)``.

    Example:
        >>> import torch
        >>> base = torch.tensor([1.0, 2.0, 0.0, 0.0])
        >>> frames = torch.stack([base.roll(l) for l in range(3)])
        >>> capsules = frames.reshape(1, 3, 1, 4)
        >>> equivariance_error(capsules)
        tensor([0.])
    """
    return pairwise_equivariance_error(capsules).sum(dim=-1)


def equivariance_error_by_offset(capsules: Tensor) -> Tensor:
    """Return the mean pair error for each frame offset 1 .. seq_len - 1.

    Shape ``(batch, seq_len - 1)``: entry ``j`` averages the pairs ``l1 - l0 = j + 1``.
    """
    seq_len = capsules.shape[1]
    pairs = pairwise_equivariance_error(capsules)
    first, second = torch.triu_indices(seq_len, seq_len, offset=1, device=pairs.device)
    offsets = second - first - 1

    totals = pairs.new_zeros(pairs.shape[0], seq_len - 1)
    totals.index_add_(1, offsets, pairs)
    counts = torch.bincount(offsets, minlength=seq_len - 1).to(pairs.dtype)
    return totals / counts
