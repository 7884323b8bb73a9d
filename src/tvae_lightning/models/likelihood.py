"""Importance-sampled log-likelihood of frame sequences.

The encoders serve as the proposal. Because ``t_l`` depends on ``u`` of other
frames, one sample draws the latents of a whole sequence at once and gets one
log weight:

    log w_n = log p(x_1..S | t_n) + log p(z_n) + log p(u_n)
              - log q(z_n | x) - log q(u_n | x)
    log p(x_1..S) ~= logsumexp over n of log w_n - log N

(Keller and Welling, "Topographic VAEs learn Equivariant Capsules", NeurIPS
2021). ``log p(x | t)`` is the Bernoulli log-likelihood with intensities in
[0, 1] as targets, that is minus the binary cross-entropy.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from tvae_lightning.models.losses import (
    bernoulli_log_prob,
    gaussian_log_prob,
    standard_normal_log_prob,
)

if TYPE_CHECKING:
    from tvae_lightning.models.base import Posterior, SequenceVAE


def draw_latents(
    posterior: Posterior, num_samples: int
) -> tuple[Tensor, Tensor | None]:
    """Draw ``num_samples`` latents from the posterior, in float32.

    Returns z and u (``None`` without a u encoder), each of shape
    ``(num_samples, batch, seq_len, D)``.
    """

    def draw(mean: Tensor, logvar: Tensor) -> Tensor:
        mean, std = mean.float(), torch.exp(0.5 * logvar.float())
        noise = torch.randn(num_samples, *mean.shape, device=mean.device)
        return mean + std * noise

    z = draw(posterior.z_mean, posterior.z_logvar)
    u = None
    if posterior.u_mean is not None:
        u = draw(posterior.u_mean, posterior.u_logvar)
    return z, u


def log_importance_weights(
    model: SequenceVAE,
    frames: Tensor,
    posterior: Posterior,
    z: Tensor,
    u: Tensor | None,
) -> Tensor:
    """Return ``log w`` of each sample and sequence, shape ``(num_samples, batch)``.

    Args:
        model: supplies ``group`` and ``decode``.
        frames: targets ``(batch, seq_len, C, H, W)`` in [0, 1].
        posterior: the proposal ``q`` that ``z`` and ``u`` were drawn from.
        z: samples ``(num_samples, batch, seq_len, D)``.
        u: samples of the same shape, or ``None`` for a model without u.
    """
    num_samples, batch, seq_len = z.shape[:3]

    # All samples go through the topography and the decoder as one batch.
    flat_u = None if u is None else u.flatten(0, 1)
    logits = model.decode(model.group(z.flatten(0, 1), flat_u))

    # The frames broadcast over the samples instead of being copied N times.
    logits = logits.view(num_samples, batch, seq_len, -1)
    log_px = bernoulli_log_prob(logits, frames.flatten(2)).sum(dim=-1)

    log_prior = standard_normal_log_prob(z).sum(dim=-1)
    log_proposal = gaussian_log_prob(
        z, posterior.z_mean.float(), posterior.z_logvar.float()
    ).sum(dim=-1)
    if u is not None:
        log_prior = log_prior + standard_normal_log_prob(u).sum(dim=-1)
        log_proposal = log_proposal + gaussian_log_prob(
            u, posterior.u_mean.float(), posterior.u_logvar.float()
        ).sum(dim=-1)

    return log_px + log_prior - log_proposal


def estimate_log_likelihood(
    model: SequenceVAE,
    frames: Tensor,
    num_samples: int,
    chunk_size: int | None = None,
    posterior: Posterior | None = None,
) -> Tensor:
    """Return the importance-sampled ``log p(x_1..S) / S`` of each sequence.

    Args:
        model: the model whose marginal likelihood is estimated.
        frames: sequences ``(batch, seq_len, C, H, W)`` in [0, 1].
        num_samples: N, samples of the latents of each sequence.
        chunk_size: samples decoded in one pass; all N at once when ``None``.
            Each pass decodes ``chunk_size * batch * seq_len`` frames.
        posterior: ``model.encode(frames)`` when the caller has it already;
            encoded here when ``None``.

    Returns:
        Nats per frame, shape ``(batch,)``.
    """
    if posterior is None:
        posterior = model.encode(frames)
    chunk_size = num_samples if chunk_size is None else chunk_size

    chunks = []
    for start in range(0, num_samples, chunk_size):
        count = min(chunk_size, num_samples - start)
        z, u = draw_latents(posterior, count)
        chunks.append(log_importance_weights(model, frames, posterior, z, u))
    log_weights = torch.cat(chunks)

    log_marginal = torch.logsumexp(log_weights, dim=0) - math.log(num_samples)
    return log_marginal / frames.shape[1]
