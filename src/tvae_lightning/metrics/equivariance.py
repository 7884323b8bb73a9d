"""Equivariance error as a torchmetrics ``Metric``."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from tvae_lightning.metrics.functional.equivariance import equivariance_error


class EquivarianceError(Metric):
    """Mean equivariance error ``E_eq`` per sequence.

    .. math::

        E_{eq} = \\sum_{l_0 < l_1} \\sum_c
            \\lVert \\mathrm{roll}(\\hat s_{l_0, c}, l_1 - l_0) - \\hat s_{l_1, c} \\rVert_1

    averaged over all sequences seen. ``s_hat`` is each capsule scaled to unit L2
    norm; see :func:`tvae_lightning.metrics.functional.equivariance_error`. The sum
    of errors and the sequence count are summed across processes, so the value is
    the same however the sequences are split.

    ``update(capsules)`` takes activations of shape
    ``(batch, seq_len, n_caps, cap_dim)``.

    Example:
        >>> import torch
        >>> metric = EquivarianceError()
        >>> base = torch.tensor([1.0, 0.0, 0.0])
        >>> rolling = torch.stack([base.roll(l) for l in range(3)]).reshape(1, 3, 1, 3)
        >>> still = base.expand(3, 3).reshape(1, 3, 1, 3)
        >>> metric.update(torch.cat([rolling, still]))
        >>> metric.compute()
        tensor(3.)
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    sum_error: Tensor
    num_sequences: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "sum_error", default=torch.tensor(0.0, dtype=torch.float64),
            dist_reduce_fx="sum",
        )
        self.add_state(
            "num_sequences", default=torch.tensor(0, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, capsules: Tensor) -> None:
        errors = equivariance_error(capsules)
        self.sum_error += errors.sum().to(self.sum_error.dtype)
        self.num_sequences += errors.numel()

    def compute(self) -> Tensor:
        return (self.sum_error / self.num_sequences).float()
