"""The capsule topographies against a slow, literal reading of their definition."""

from __future__ import annotations

import itertools

import pytest
import torch

from tvae_lightning import (
    InstantaneousCapsuleTopography,
    ShiftingCapsuleTopography,
    StationaryCapsuleTopography,
)
from tvae_lightning.topography import centred_offsets, shifting_window

EPS = 1e-6


def offsets(n: int) -> list[int]:
    """O(n): n offsets centred on 0, one more on the positive side when n is even."""
    low = -((n - 1) // 2)
    return [low + i for i in range(n)]


def shifting_omega(time_window: int, capsule_window: int) -> set[tuple[int, int]]:
    half = (capsule_window - 1) / 2
    return {
        (a, k)
        for a in offsets(time_window)
        for k in offsets(time_window)
        if abs(a - k) <= half
    }


def slow_topography(z, u, omega, n_caps, cap_dim, mu):
    """t[l, c, i] by explicit loops over frames, capsules, units and Omega."""
    batch, seq_len, _ = z.shape
    z = z.reshape(batch, seq_len, n_caps, cap_dim).double()
    u = u.reshape(batch, seq_len, n_caps, cap_dim).double()
    t = torch.empty_like(z)
    for b, l, c, i in itertools.product(
        range(batch), range(seq_len), range(n_caps), range(cap_dim)
    ):
        v = 0.0
        for a, k in omega:
            v += u[b, (l + a) % seq_len, c, (i + k) % cap_dim] ** 2
        t[b, l, c, i] = (z[b, l, c, i] + mu) / torch.sqrt(v + EPS)
    return t.reshape(batch, seq_len, n_caps * cap_dim)


@pytest.mark.parametrize(
    ("time_window", "capsule_window", "size"),
    [(13, 3, 37), (18, 3, 52), (5, 3, 13), (10, 1, 10), (4, 3, 10), (1, 1, 1)],
)
def test_shifting_window_size(time_window, capsule_window, size):
    assert len(shifting_window(time_window, capsule_window)) == size


def test_centred_offsets_even_leans_forward():
    assert centred_offsets(18) == list(range(-8, 10))


def test_centred_offsets_odd_symmetric():
    assert centred_offsets(5) == [-2, -1, 0, 1, 2]


@pytest.mark.parametrize(
    ("seq_len", "cap_dim", "time_window", "capsule_window"),
    [(6, 6, 5, 3), (6, 7, 4, 3), (5, 8, 5, 1), (4, 6, 4, 3), (7, 7, 6, 5)],
)
def test_shifting_matches_slow_definition(seq_len, cap_dim, time_window, capsule_window):
    torch.manual_seed(0)
    n_caps = 2
    topography = ShiftingCapsuleTopography(
        n_caps, cap_dim, seq_len, time_window, capsule_window, mu_init=1.5
    )
    z = torch.randn(2, seq_len, n_caps * cap_dim)
    u = torch.randn(2, seq_len, n_caps * cap_dim)

    expected = slow_topography(
        z, u, shifting_omega(time_window, capsule_window), n_caps, cap_dim, 1.5
    )

    torch.testing.assert_close(topography(z, u).double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("time_window", "size"), [(13, 37), (18, 52), (5, 13)])
def test_shifting_paper_windows_match_slow(time_window, size):
    torch.manual_seed(1)
    topography = ShiftingCapsuleTopography(1, 18, 18, time_window, 3)
    omega = shifting_omega(time_window, 3)
    z = torch.randn(1, 18, 18)
    u = torch.randn(1, 18, 18)

    expected = slow_topography(z, u, omega, 1, 18, 30.0)

    assert len(omega) == size
    torch.testing.assert_close(topography(z, u).double(), expected, rtol=1e-5, atol=1e-6)


def test_stationary_matches_slow_definition():
    torch.manual_seed(2)
    topography = StationaryCapsuleTopography(3, 6, 5, 4, 3, mu_init=2.0)
    omega = {(a, k) for a in offsets(4) for k in offsets(3)}
    z = torch.randn(2, 5, 18)
    u = torch.randn(2, 5, 18)

    expected = slow_topography(z, u, omega, 3, 6, 2.0)

    torch.testing.assert_close(topography(z, u).double(), expected, rtol=1e-5, atol=1e-6)


def test_instantaneous_matches_slow_definition():
    torch.manual_seed(3)
    topography = InstantaneousCapsuleTopography(2, 6, 4, 0, 3, mu_init=0.5)
    omega = {(0, k) for k in offsets(3)}
    z = torch.randn(2, 4, 12)
    u = torch.randn(2, 4, 12)

    expected = slow_topography(z, u, omega, 2, 6, 0.5)

    torch.testing.assert_close(topography(z, u).double(), expected, rtol=1e-5, atol=1e-6)


def test_mu_is_learnable_scalar():
    topography = ShiftingCapsuleTopography(18, 18, 18, 13, 3, mu_init=30.0)
    assert isinstance(topography.mu, torch.nn.Parameter)
    assert topography.mu.shape == ()
    assert topography.mu.item() == 30.0


def test_mu_receives_gradient():
    topography = ShiftingCapsuleTopography(2, 4, 4, 3, 1)
    z = torch.randn(1, 4, 8)
    u = torch.randn(1, 4, 8)
    topography(z, u).sum().backward()
    assert topography.mu.grad is not None
    assert topography.mu.grad.abs().item() > 0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"time_window": 19}, "time_window"),
        ({"time_window": 0}, "time_window"),
        ({"capsule_window": 2}, "capsule_window"),
        ({"capsule_window": 19}, "capsule_window"),
        ({"n_caps": 0}, "n_caps"),
    ],
)
def test_invalid_windows_raise(kwargs, argument):
    arguments = dict(
        n_caps=18, cap_dim=18, seq_len=18, time_window=13, capsule_window=3
    )
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        ShiftingCapsuleTopography(**arguments)


def test_shifting_window_wider_than_capsule_raises():
    with pytest.raises(ValueError, match="cap_dim = 10"):
        ShiftingCapsuleTopography(2, 10, 18, 13, 3)


def test_wrong_input_shape_raises():
    topography = ShiftingCapsuleTopography(2, 4, 4, 3, 1)
    with pytest.raises(ValueError, match=r"\(batch, 4, 8\)"):
        topography(torch.zeros(1, 5, 8), torch.zeros(1, 5, 8))
