"""Terms of the negative evidence lower bound."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Return the binary cross-entropy summed over all but the first dimension.

    Targets are intensities in [0, 1], not binarised; the logits form is
    numerically stable for large ``abs(logits)``.
    """
    nll = F.binary_cross_entropy_with_logits(
        logits.float(), targets.float(), reduction="none"
    )
    return nll.flatten(1).sum(dim=1)


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """Return ``KL(N(mean, exp(logvar)) || N(0, I))`` summed over the last dimension."""
    mean, logvar = mean.float(), logvar.float()
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_log_prob(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Return ``log N(x; mean, exp(logvar))`` summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar)).sum(-1)


def standard_normal_log_prob(x: Tensor) -> Tensor:
    """Return ``log N(x; 0, I)`` summed over the last dimension."""
    return -0.5 * (LOG_2PI + x.pow(2)).sum(dim=-1)
