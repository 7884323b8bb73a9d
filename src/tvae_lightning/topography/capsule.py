"""Capsule topographies: how u is pooled into the divisive normaliser of t.

For capsule ``c`` and unit ``i`` of frame ``l`` the topographic latent is

    v[l, c, i] = sum over (a, k) in window of u[(l + a) mod S, c, (i + k) mod D] ** 2
    t[l, c, i] = (z[l, c, i] + mu) / sqrt(v[l, c, i] + eps)

with ``S = seq_len`` and ``D = cap_dim`` (Keller and Welling, "Topographic VAEs
learn Equivariant Capsules", NeurIPS 2021). Indices wrap in time and within a
capsule.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tvae_lightning.topography.windows import (
    instantaneous_window,
    shifting_window,
    stationary_window,
)


def pooling_matrix(
    window: Sequence[tuple[int, int]], seq_len: int, cap_dim: int
) -> Tensor:
    """Build the ``(S * D, S * D)`` matrix ``W`` with ``v = u ** 2 @ W`` per capsule.

    Row ``(l + a) mod S, (i + k) mod D`` of column ``(l, i)`` counts how often that
    input unit falls in the window of output unit ``(l, i)``. A dense matrix is
    cheap here (324 x 324 for 18 frames of 18 units) and turns the circular
    window sum into one matrix product.
    """
    size = seq_len * cap_dim
    matrix = torch.zeros(size, size)
    frames = torch.arange(seq_len).repeat_interleave(cap_dim)
    units = torch.arange(cap_dim).repeat(seq_len)
    outputs = torch.arange(size)

    for time_offset, unit_offset in window:
        inputs = ((frames + time_offset) % seq_len) * cap_dim + (
            (units + unit_offset) % cap_dim
        )
        matrix.index_put_((inputs, outputs), torch.ones(size), accumulate=True)

    return matrix


class CapsuleTopography(nn.Module):
    """Divisive normalisation of z by the windowed energy of u, per capsule.

    Subclasses choose the window through :meth:`build_window`. ``forward(z, u)``
    takes two tensors of shape ``(batch, seq_len, n_caps * cap_dim)`` and returns
    t of the same shape.

    Args:
        n_caps: number of capsules.
        cap_dim: units per capsule.
        seq_len: frames per sequence.
        time_window: number of time offsets L.
        capsule_window: number of unit offsets K (odd).
        mu_init: initial value of the learnable scalar ``mu`` added to z.
        eps: added to the pooled energy before the square root.
    """

    def __init__(
        self,
        n_caps: int,
        cap_dim: int,
        seq_len: int,
        time_window: int,
        capsule_window: int,
        mu_init: float = 30.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        _check_positive("n_caps", n_caps)
        _check_positive("cap_dim", cap_dim)
        _check_positive("seq_len", seq_len)
        self.n_caps = n_caps
        self.cap_dim = cap_dim
        self.seq_len = seq_len
        self.time_window = time_window
        self.capsule_window = capsule_window
        self.eps = eps
        self.check_windows()

        self.window = self.build_window()
        self.mu = nn.Parameter(torch.tensor(float(mu_init)))
        matrix = pooling_matrix(self.window, seq_len, cap_dim)
        self.register_buffer("pooling", matrix, persistent=False)

    def check_windows(self) -> None:
        """Raise ``ValueError`` when a window does not fit the sequence or capsule."""
        _check_time_window(self.time_window, self.seq_len, "seq_len")
        _check_capsule_window(self.capsule_window, self.cap_dim)

    def build_window(self) -> list[tuple[int, int]]:
        """Return the (time offset, unit offset) pairs pooled into each unit."""
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        """Size of z, u and t per frame: ``n_caps * cap_dim``."""
        return self.n_caps * self.cap_dim

    def energy(self, u: Tensor) -> Tensor:
        """Return the windowed sum ``v`` of ``u ** 2``, same shape as ``u``."""
        batch = u.shape[0]
        capsules = u.reshape(batch, self.seq_len, self.n_caps, self.cap_dim)
        capsules = capsules.transpose(1, 2).reshape(batch * self.n_caps, -1)

        # Autocast is off so that the product runs in float32 under mixed
        # precision too: sums of dozens of squares lose digits in bfloat16.
        with torch.autocast(device_type=u.device.type, enabled=False):
            pooled = (capsules.float() ** 2) @ self.pooling

        pooled = pooled.reshape(batch, self.n_caps, self.seq_len, self.cap_dim)
        return pooled.transpose(1, 2).reshape(u.shape)

    def forward(self, z: Tensor, u: Tensor) -> Tensor:
        expected = (self.seq_len, self.latent_dim)
        if z.shape[1:] != expected or u.shape != z.shape:
            raise ValueError(
                f"z and u must both have shape (batch, {expected[0]}, {expected[1]}), "
                f"got {tuple(z.shape)} and {tuple(u.shape)}"
            )

        return (z.float() + self.mu) / torch.sqrt(self.energy(u) + self.eps)

    def extra_repr(self) -> str:
        return (
            f"n_caps={self.n_caps}, cap_dim={self.cap_dim}, seq_len={self.seq_len}, "
            f"time_window={self.time_window}, capsule_window={self.capsule_window}, "
            f"window_size={len(self.window)}"
        )


class ShiftingCapsuleTopography(CapsuleTopography):
    """TVAE topography whose window shifts one unit per frame.

    Unit ``i`` at frame ``l`` pools unit ``i + a`` at frame ``l + a`` (plus or
    minus ``(capsule_window - 1) // 2``), so a transformation that advances one
    step per frame is encouraged to appear as a roll of every capsule by one unit.
    ``time_window=13, capsule_window=3`` pools 37 units.
    """

    def check_windows(self) -> None:
        # Unit offsets range over the time window too, so it must fit the capsule.
        super().check_windows()
        _check_time_window(self.time_window, self.cap_dim, "cap_dim")

    def build_window(self) -> list[tuple[int, int]]:
        return shifting_window(self.time_window, self.capsule_window)


class StationaryCapsuleTopography(CapsuleTopography):
    """BubbleVAE topography: the same ``capsule_window`` units over ``time_window`` frames."""

    def build_window(self) -> list[tuple[int, int]]:
        return stationary_window(self.time_window, self.capsule_window)


class InstantaneousCapsuleTopography(CapsuleTopography):
    """TVAE topography without temporal coherence (the paper's "L = 0").

    Each unit pools ``capsule_window`` neighbours within its own frame.
    ``time_window`` is accepted for a uniform signature and must be 0.
    """

    def __init__(
        self,
        n_caps: int,
        cap_dim: int,
        seq_len: int,
        time_window: int = 0,
        capsule_window: int = 3,
        mu_init: float = 30.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(
            n_caps, cap_dim, seq_len, time_window, capsule_window, mu_init, eps
        )

    def check_windows(self) -> None:
        if self.time_window != 0:
            raise ValueError(
                f"time_window must be 0 for a topography without temporal "
                f"coherence, got {self.time_window}"
            )
        _check_capsule_window(self.capsule_window, self.cap_dim)

    def build_window(self) -> list[tuple[int, int]]:
        return instantaneous_window(self.capsule_window)


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def _check_time_window(time_window: int, limit: int, limit_name: str) -> None:
    if not 1 <= time_window <= limit:
        raise ValueError(
            f"time_window must be between 1 and {limit_name} = {limit}, "
            f"got {time_window}"
        )


def _check_capsule_window(capsule_window: int, cap_dim: int) -> None:
    if capsule_window < 1 or capsule_window % 2 == 0 or capsule_window > cap_dim:
        raise ValueError(
            f"capsule_window must be an odd integer between 1 and cap_dim = "
            f"{cap_dim}, got {capsule_window}"
        )
