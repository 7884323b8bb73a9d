"""A topography written from scratch and passed to TopographicVAE through YAML.

Train it with ``custom_topography.yaml`` next to this file:

    PYTHONPATH=examples tvae-cli fit --config examples/custom_topography.yaml \
        --data.root DIR

Any ``nn.Module`` whose ``forward(z, u)`` maps two tensors of shape
``(batch, seq_len, n_caps * cap_dim)`` to ``t`` of the same shape can replace the
built-in windows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tvae_lightning.topography import centred_offsets


class GaussianShiftingTopography(nn.Module):
    """Shifting window whose offsets are weighted by a Gaussian in time.

    Like the TVAE's shifting window with a band of one unit, unit ``i`` at frame
    ``l`` pools unit ``i + a`` at frame ``l + a`` for ``a`` in the centred window
    of ``time_window`` offsets. Offset ``a`` is weighted by
    ``exp(-a ** 2 / (2 * sigma ** 2))``, so nearby frames count more:

        v[l, c, i] = sum over a of w_a * u[(l + a) mod S, c, (i + a) mod cap_dim] ** 2
        t[l, c, i] = (z[l, c, i] + mu) / sqrt(v[l, c, i] + eps)

    Args:
        n_caps: number of capsules.
        cap_dim: units per capsule.
        seq_len: frames per sequence.
        time_window: number of time offsets, at most ``seq_len`` and ``cap_dim``.
        sigma: width of the Gaussian weight, in frames.
        mu_init: initial value of the learnable scalar ``mu``.
        eps: added to the pooled energy before the square root.
    """

    def __init__(
        self,
        n_caps: int,
        cap_dim: int,
        seq_len: int,
        time_window: int = 9,
        sigma: float = 3.0,
        mu_init: float = 30.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if not 1 <= time_window <= min(seq_len, cap_dim):
            raise ValueError(
                f"time_window must be between 1 and min(seq_len, cap_dim) = "
                f"{min(seq_len, cap_dim)}, got {time_window}"
            )
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")

        self.n_caps = n_caps
        self.cap_dim = cap_dim
        self.seq_len = seq_len
        # Named like the built-in topographies so that result tables show L.
        self.time_window = time_window
        self.sigma = sigma
        self.eps = eps
        self.offsets = centred_offsets(time_window)
        weights = [math.exp(-(a**2) / (2 * sigma**2)) for a in self.offsets]
        self.register_buffer("weights", torch.tensor(weights), persistent=False)
        self.mu = nn.Parameter(torch.tensor(float(mu_init)))

    def forward(self, z: Tensor, u: Tensor) -> Tensor:
        batch = z.shape[0]
        squared = u.float().reshape(batch, self.seq_len, self.n_caps, self.cap_dim) ** 2

        # roll by -a along frames and units reads u[l + a, c, i + a].
        energy = torch.zeros_like(squared)
        for weight, offset in zip(self.weights, self.offsets):
            energy += weight * squared.roll(shifts=(-offset, -offset), dims=(1, 3))

        energy = energy.reshape(z.shape)
        return (z.float() + self.mu) / torch.sqrt(energy + self.eps)
