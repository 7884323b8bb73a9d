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


def bernoulli_log_prob(logits: Tensor, targets: Tensor) -> Tensor:
    """Return ``log p(targets | logits)`` summed over the last dimension.

    ``targets`` broadcast against ``logits``, so many samples of logits can be
    scored against one copy of the frames. Each pixel contributes
    ``targets * logits - softplus(logits)``, which is minus the binary
    cross-entropy. The terms are added per pixel before the sum, so a huge logit
    cannot swamp the others. Inputs are upcast to float32.
    """
    logits, targets = logits.float(), targets.float()
    nll = F.softplus(logits)
    nll.addcmul_(logits, targets, value=-1.0)
    return -nll.sum(dim=-1)


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
