"""2D topography: latent units on a torus, pooled over a circular box window.

The ``D = height * width`` units of a frame sit on a ``height x width`` grid in
row-major order (unit ``d`` at row ``d // width``, column ``d % width``) whose
edges wrap around. For unit ``(r, c)``

    v[r, c] = sum over |i|, |j| <= (window - 1) / 2
              of u[(r + i) mod H, (c + j) mod W] ** 2
    t[r, c] = (z[r, c] + mu) / sqrt(v[r, c] + eps)

which is the single-image TVAE of Keller and Welling, "Topographic VAEs learn
Equivariant Capsules", NeurIPS 2021 (18 x 18 torus, 5 x 5 window, mu_init 10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TorusTopography(nn.Module):
    """Divisive normalisation of z by the energy of u in a box window on a torus.

    ``forward(z, u)`` takes two tensors of shape ``(batch, seq_len, height * width)``
    and returns t of the same shape. Frames are pooled independently, so
    ``seq_len`` is 1 for single images.

    Args:
        height: rows of the torus.
        width: columns of the torus.
        window: odd side length of the square window, at most
            ``min(height, width)``.
        mu_init: initial value of the learnable scalar ``mu`` added to z.
        eps: added to the pooled energy before the square root.

    Example:
        >>> import torch
        >>> topography = TorusTopography(height=3, width=3, window=3, mu_init=0.0)
        >>> z, u = torch.ones(1, 1, 9), torch.ones(1, 1, 9)
        >>> t = topography(z, u)
        >>> round(t[0, 0, 4].item(), 4)  # (1 + 0) / sqrt(9 units of energy 1)
        0.3333
    """

    def __init__(
        self,
        height: int = 18,
        width: int = 18,
        window: int = 5,
        mu_init: float = 10.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        for name, value in (("height", height), ("width", width)):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if window < 1 or window % 2 == 0 or window > min(height, width):
            raise ValueError(
                f"window must be an odd integer between 1 and min(height, width) = "
                f"{min(height, width)}, got {window}"
            )

        self.height = height
        self.width = width
        self.window = window
        self.eps = eps
        self.mu = nn.Parameter(torch.tensor(float(mu_init)))

    @property
    def latent_dim(self) -> int:
        """Size of z, u and t per frame: ``height * width``."""
        return self.height * self.width

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(height, width)``: the layout in which to draw one frame's units."""
        return (self.height, self.width)

    def energy(self, u: Tensor) -> Tensor:
        """Return the windowed sum ``v`` of ``u ** 2``, same shape as ``u``."""
        grids = (u.float() ** 2).reshape(-1, 1, self.height, self.width)

        # Circular padding by half the window on every side, then a sum over each
        # window x window patch, gives the box sum with wrap-around at the edges.
        half = (self.window - 1) // 2
        padded = F.pad(grids, (half, half, half, half), mode="circular")
        kernel = grids.new_ones(1, 1, self.window, self.window)
        pooled = F.conv2d(padded, kernel)

        return pooled.reshape(u.shape)

    def forward(self, z: Tensor, u: Tensor) -> Tensor:
        self.check_latents(z, u)
        return (z.float() + self.mu) / torch.sqrt(self.energy(u) + self.eps)

    def check_latents(self, z: Tensor, u: Tensor | None) -> None:
        """Raise ``ValueError`` unless z and u are ``(batch, seq_len, H * W)``."""
        valid = (
            u is not None
            and z.ndim == 3
            and z.shape[-1] == self.latent_dim
            and u.shape == z.shape
        )
        if not valid:
            u_shape = None if u is None else tuple(u.shape)
            raise ValueError(
                f"z and u must both have shape (batch, seq_len, {self.latent_dim}) "
                f"for a {self.height} x {self.width} torus, got {tuple(z.shape)} and "
                f"{u_shape}"
            )

    def extra_repr(self) -> str:
        return f"height={self.height}, width={self.width}, window={self.window}"
