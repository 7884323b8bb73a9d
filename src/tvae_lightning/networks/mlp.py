"""Fully connected encoder and decoder of Keller and Welling (NeurIPS 2021)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from tvae_lightning.networks.gaussian import GaussianEncoder


class MLPEncoder(GaussianEncoder):
    """Gaussian encoder ``flatten(C x H x W) -> 3D -> ReLU -> 2D -> ReLU -> 2D``.

    The last layer outputs the mean and the log-variance of a diagonal Gaussian over
    ``latent_dim = D`` units.

    Args:
        image_shape: ``(channels, height, width)`` of one frame.
        latent_dim: ``D``, the number of latent units per frame.
    """

    def __init__(
        self, image_shape: Sequence[int] = (3, 28, 28), latent_dim: int = 324
    ) -> None:
        super().__init__(latent_dim)
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(self.image_shape), 3 * latent_dim),
            nn.ReLU(),
            nn.Linear(3 * latent_dim, 2 * latent_dim),
            nn.ReLU(),
            nn.Linear(2 * latent_dim, 2 * latent_dim),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """Decoder ``D -> 2D -> ReLU -> 3D -> ReLU -> C x H x W`` returning Bernoulli logits.

    Args:
        image_shape: ``(channels, height, width)`` of one frame.
        latent_dim: ``D``, the number of latent units per frame.
    """

    def __init__(
        self, image_shape: Sequence[int] = (3, 28, 28), latent_dim: int = 324
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * latent_dim),
            nn.ReLU(),
            nn.Linear(2 * latent_dim, 3 * latent_dim),
            nn.ReLU(),
            nn.Linear(3 * latent_dim, math.prod(self.image_shape)),
            nn.Unflatten(-1, self.image_shape),
        )

    def forward(self, t: Tensor) -> Tensor:
        """Map latents ``(frames, D)`` to logits ``(frames, C, H, W)``."""
        return self.net(t)
