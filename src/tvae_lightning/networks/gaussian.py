"""Base class of encoders that output a diagonal Gaussian."""

from __future__ import annotations

from torch import Tensor, nn

LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


class GaussianEncoder(nn.Module):
    """Encoder returning the mean and log-variance of ``q(latent | frame)``.

    Subclasses implement :meth:`forward_features`, mapping frames
    ``(frames, C, H, W)`` to ``(frames, 2 * latent_dim)``: the mean in the first
    half, the log-variance in the second. The log-variance is clamped to
    ``[LOGVAR_MIN, LOGVAR_MAX] = [-30, 20]``, a standard deviation between about
    3e-7 and 2e4, so that ``exp`` neither underflows to a zero variance nor
    overflows.

    Args:
        latent_dim: number of latent units per frame.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(mean, logvar)``, each of shape ``(frames, latent_dim)``."""
        features = self.forward_features(x)
        mean, logvar = features.chunk(2, dim=-1)
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
