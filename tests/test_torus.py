"""TorusTopography against an explicit loop over the torus."""

from __future__ import annotations

import math

import pytest
import torch

from tvae_lightning import TorusTopography
from tvae_lightning.topography import TorusTopography as ExportedTorusTopography


def slow_torus_t(
    z: torch.Tensor,
    u: torch.Tensor,
    height: int,
    width: int,
    window: int,
    mu: float,
    eps: float = 1e-6,
) -> torch.Tensor:
    """t of every unit by looping over frames, torus positions and window offsets."""
    t = torch.empty_like(z, dtype=torch.float64)
    half = (window - 1) // 2
    for b in range(z.shape[0]):
        for frame in range(z.shape[1]):
            for row in range(height):
                for column in range(width):
                    energy = 0.0
                    for i in range(-half, half + 1):
                        for j in range(-half, half + 1):
                            source = ((row + i) % height) * width + (column + j) % width
                            energy += float(u[b, frame, source]) ** 2
                    unit = row * width + column
                    value = float(z[b, frame, unit]) + mu
                    t[b, frame, unit] = value / math.sqrt(energy + eps)
    return t


@pytest.mark.parametrize(
    ("height", "width", "window"),
    [(4, 6, 3), (5, 5, 5), (3, 7, 1), (6, 4, 3)],
)
def test_torus_matches_slow_loop(height: int, width: int, window: int) -> None:
    generator = torch.Generator().manual_seed(height * 10 + width)
    z = torch.randn(2, 1, height * width, generator=generator)
    u = torch.randn(2, 1, height * width, generator=generator)
    topography = TorusTopography(height, width, window, mu_init=1.5)

    expected = slow_torus_t(z, u, height, width, window, mu=1.5)
    actual = topography(z, u).detach().double()

    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_torus_pools_frames_independently() -> None:
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(1, 3, 16, generator=generator)
    u = torch.randn(1, 3, 16, generator=generator)
    topography = TorusTopography(4, 4, 3, mu_init=2.0)

    expected = slow_torus_t(z, u, 4, 4, 3, mu=2.0)

    torch.testing.assert_close(
        topography(z, u).detach().double(), expected, rtol=1e-5, atol=1e-5
    )


def test_torus_window_wraps_at_edges() -> None:
    # One active u unit at the corner (0, 0): its 3 x 3 window on a 5 x 5 torus
    # covers rows and columns 4, 0 and 1.
    topography = TorusTopography(5, 5, 3, mu_init=0.0)
    u = torch.zeros(1, 1, 25)
    u[0, 0, 0] = 2.0

    energy = topography.energy(u).reshape(5, 5)

    expected = torch.zeros(5, 5)
    for row in (4, 0, 1):
        for column in (4, 0, 1):
            expected[row, column] = 4.0
    torch.testing.assert_close(energy, expected)


def test_torus_mu_is_learnable_and_initialised() -> None:
    topography = TorusTopography(4, 4, 3, mu_init=10.0)
    z = torch.randn(2, 1, 16)
    u = torch.randn(2, 1, 16)

    topography(z, u).sum().backward()

    assert topography.mu.item() == 10.0
    assert topography.mu.grad is not None
    assert topography.mu.grad.abs().item() > 0


def test_torus_exported_from_topography_package() -> None:
    assert ExportedTorusTopography is TorusTopography


def test_torus_grid_shape_and_latent_dim() -> None:
    topography = TorusTopography(18, 12, 5)

    assert topography.grid_shape == (18, 12)
    assert topography.latent_dim == 216


@pytest.mark.parametrize("window", [0, 2, 4, 7])
def test_torus_rejects_invalid_window(window: int) -> None:
    with pytest.raises(ValueError, match="window must be an odd integer"):
        TorusTopography(6, 5, window)


def test_torus_rejects_nonpositive_height() -> None:
    with pytest.raises(ValueError, match="height must be a positive integer"):
        TorusTopography(0, 5, 1)


def test_torus_rejects_wrong_latent_size() -> None:
    topography = TorusTopography(4, 4, 3)
    z = torch.zeros(2, 1, 15)

    with pytest.raises(ValueError, match=r"\(batch, seq_len, 16\)"):
        topography(z, z)


def test_torus_rejects_missing_u() -> None:
    topography = TorusTopography(4, 4, 3)

    with pytest.raises(ValueError, match="got \\(2, 1, 16\\) and None"):
        topography(torch.zeros(2, 1, 16), None)
