"""CapCorr, the correlation of capsule rolls with transformation steps."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from tvae_lightning.metrics.functional.capcorr import (
    capsule_correlation_statistics,
    pearson_from_statistics,
)


class CapsuleCorrelation(Metric):
    """CapCorr per group of sequences, for example per varied factor.

    For each sequence and frame ``l >= 1``, ``y`` is the capsule roll that best
    aligns frame 0 with frame ``l`` (argmax of the circular cross-correlation,
    majority vote over capsules) and ``x = l``. The value of a group is the
    Pearson correlation over all its pairs:

    .. math::

        \\mathrm{CapCorr} = \\frac{n \\sum x y - \\sum x \\sum y}
            {\\sqrt{(n \\sum x^2 - (\\sum x)^2)(n \\sum y^2 - (\\sum y)^2)}}

    The six sums are states summed across processes, so the value does not
    depend on how the sequences are split. See
    :func:`tvae_lightning.metrics.functional.capsule_correlation`.

    ``update(capsules, groups)`` takes activations
    ``(batch, seq_len, n_caps, cap_dim)`` and the group of each sequence,
    ``(batch,)``, or ``None`` for group 0. ``compute()`` returns
    ``(num_groups,)`` correlations, NaN for a group without pairs and 0 for a
    group whose rolls or steps do not vary.

    Args:
        num_groups: number of groups, e.g. ``len(datamodule.factor_names)``.

    Example:
        >>> import torch
        >>> metric = CapsuleCorrelation(num_groups=2)
        >>> base = torch.tensor([3.0, 1.0, 0.0, 0.0, 2.0])
        >>> rolling = torch.stack([base.roll(l) for l in range(4)])
        >>> metric.update(rolling.reshape(1, 4, 1, 5), torch.tensor([1]))
        >>> metric.compute()
        tensor([nan, 1.])
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    statistics: Tensor

    def __init__(self, num_groups: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_groups < 1:
            raise ValueError(f"num_groups must be a positive integer, got {num_groups}")
        self.num_groups = num_groups
        self.add_state(
            "statistics",
            default=torch.zeros(num_groups, 6, dtype=torch.float64),
            dist_reduce_fx="sum",
        )

    def update(self, capsules: Tensor, groups: Tensor | None = None) -> None:
        if groups is None:
            groups = torch.zeros(
                capsules.shape[0], dtype=torch.long, device=capsules.device
            )
        self.statistics += capsule_correlation_statistics(
            capsules, groups.to(capsules.device), self.num_groups
        )

    def compute(self) -> Tensor:
        # torchmetrics squeezes a one-element result, so one group gives a scalar.
        return pearson_from_statistics(self.statistics).float()
