"""BubbleVAE, the TVAE without temporal coherence and the VAE against slow loops."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

import tvae_lightning
from tvae_lightning import (
    VAE,
    BubbleVAE,
    InstantaneousCapsuleTopography,
    StationaryCapsuleTopography,
    TopographicVAE,
)

EPS = 1e-6


def centred(n: int) -> list[int]:
    """The n offsets centred on 0, one more forward than backward when n is even."""
    return [offset - (n - 1) // 2 for offset in range(n)]


def slow_topography(z, u, mu: float, omega, n_caps: int, cap_dim: int):
    """t[l, c, i] = (z + mu) / sqrt(sum over omega of u[l + a, c, i + k] ** 2 + eps)."""
    batch, seq_len, _ = z.shape
    z = z.reshape(batch, seq_len, n_caps, cap_dim)
    u = u.reshape(batch, seq_len, n_caps, cap_dim)
    t = torch.empty_like(z)
    for b in range(batch):
        for frame in range(seq_len):
            for c in range(n_caps):
                for i in range(cap_dim):
                    energy = 0.0
                    for a, k in omega:
                        value = u[b, (frame + a) % seq_len, c, (i + k) % cap_dim]
                        energy += float(value) ** 2
                    t[b, frame, c, i] = (z[b, frame, c, i] + mu) / (energy + EPS) ** 0.5
    return t.reshape(batch, seq_len, n_caps * cap_dim)


def test_bubble_window_has_15_offsets_for_L5_K3():
    model = BubbleVAE(time_window=5, capsule_window=3)
    assert len(model.topography.window) == 15


def test_bubble_uses_stationary_topography():
    model = BubbleVAE(time_window=5, capsule_window=3)
    assert isinstance(model.topography, StationaryCapsuleTopography)


def test_tvae_L0_window_has_3_offsets_for_K3():
    model = TopographicVAE(time_window=0, capsule_window=3)
    assert len(model.topography.window) == 3


def test_tvae_L0_uses_instantaneous_topography():
    model = TopographicVAE(time_window=0, capsule_window=3)
    assert isinstance(model.topography, InstantaneousCapsuleTopography)


def test_bubble_window_matches_definition():
    model = BubbleVAE(time_window=5, capsule_window=3)
    expected = {(a, k) for a in range(-2, 3) for k in range(-1, 2)}
    assert set(model.topography.window) == expected


def test_tvae_L0_window_matches_definition():
    model = TopographicVAE(time_window=0, capsule_window=5)
    assert set(model.topography.window) == {(0, k) for k in range(-2, 3)}


@pytest.mark.parametrize(("time_window", "capsule_window"), [(5, 3), (4, 1), (2, 5)])
def test_bubble_topography_matches_slow_loop(time_window: int, capsule_window: int):
    torch.manual_seed(0)
    n_caps, cap_dim, seq_len = 2, 5, 6
    model = BubbleVAE(
        n_caps=n_caps, cap_dim=cap_dim, seq_len=seq_len, time_window=time_window,
        capsule_window=capsule_window, mu_init=2.5, image_shape=(1, 4, 4),
    )
    z, u = torch.randn(2, 2, seq_len, n_caps * cap_dim)
    omega = [(a, k) for a in centred(time_window) for k in centred(capsule_window)]

    with torch.no_grad():
        t = model.group(z, u)
    slow = slow_topography(z, u, 2.5, omega, n_caps, cap_dim)

    torch.testing.assert_close(t, slow, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("capsule_window", [1, 3, 5])
def test_tvae_L0_topography_matches_slow_loop(capsule_window: int):
    torch.manual_seed(0)
    n_caps, cap_dim, seq_len = 3, 5, 4
    model = TopographicVAE(
        n_caps=n_caps, cap_dim=cap_dim, seq_len=seq_len, time_window=0,
        capsule_window=capsule_window, mu_init=1.0, image_shape=(1, 4, 4),
    )
    z, u = torch.randn(2, 2, seq_len, n_caps * cap_dim)
    omega = [(0, k) for k in centred(capsule_window)]

    with torch.no_grad():
        t = model.group(z, u)
    slow = slow_topography(z, u, 1.0, omega, n_caps, cap_dim)

    torch.testing.assert_close(t, slow, rtol=1e-5, atol=1e-5)


def test_tvae_L0_ignores_other_frames():
    torch.manual_seed(0)
    model = TopographicVAE(
        n_caps=2, cap_dim=4, seq_len=3, time_window=0, image_shape=(1, 4, 4)
    )
    z, u = torch.randn(2, 1, 3, 8)
    changed = u.clone()
    changed[:, 1:] = torch.randn(1, 2, 8)

    with torch.no_grad():
        first = model.group(z, u)[:, 0]
        second = model.group(z, changed)[:, 0]

    torch.testing.assert_close(first, second)


def test_vae_has_no_u_encoder():
    assert VAE().u_encoder is None


def test_vae_latent_is_z():
    model = VAE(n_caps=2, cap_dim=3, seq_len=2, image_shape=(1, 4, 4))
    z = torch.randn(2, 2, 6)
    assert torch.equal(model.group(z, None), z)


def test_vae_elbo_matches_slow_loop():
    torch.manual_seed(0)
    model = VAE(n_caps=2, cap_dim=3, seq_len=2, image_shape=(1, 2, 2))
    frames = torch.rand(2, 2, 1, 2, 2)

    with torch.no_grad():
        posterior = model.encode(frames)
        torch.manual_seed(3)
        terms = model.elbo_terms(frames, posterior)
        torch.manual_seed(3)
        noise = torch.randn_like(posterior.z_mean)

    reconstruction, kl = [], []
    for b in range(2):
        for frame in range(2):
            mean, logvar = posterior.z_mean[b, frame], posterior.z_logvar[b, frame]
            z = mean + torch.exp(0.5 * logvar) * noise[b, frame]
            with torch.no_grad():
                probs = torch.sigmoid(model.decoder(z[None]))[0].flatten().tolist()
            targets = frames[b, frame].flatten().tolist()
            reconstruction.append(-sum(
                x * math.log(p) + (1 - x) * math.log(1 - p)
                for p, x in zip(probs, targets)
            ))
            kl.append(sum(
                0.5 * (m**2 + math.exp(v) - 1 - v)
                for m, v in zip(mean.tolist(), logvar.tolist())
            ))

    torch.testing.assert_close(terms.reconstruction, torch.tensor(reconstruction),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(terms.kl_z, torch.tensor(kl), rtol=1e-4, atol=1e-4)
    assert torch.equal(terms.kl_u, torch.zeros(4))


@pytest.mark.parametrize("name", ["VAE", "BubbleVAE"])
def test_baseline_importable_from_package(name: str):
    assert name in tvae_lightning.__all__


def test_bubble_hparams_keep_topography_none():
    model = BubbleVAE(time_window=5, capsule_window=3)
    assert model.hparams.topography is None


def test_bubble_hparams_record_windows():
    model = BubbleVAE(time_window=4, capsule_window=5)
    assert (model.hparams.time_window, model.hparams.capsule_window) == (4, 5)


class SequenceData(L.LightningDataModule):
    def __init__(self, frames: torch.Tensor) -> None:
        super().__init__()
        self.frames = frames

    def train_dataloader(self):
        return torch.utils.data.DataLoader(list(self.frames), batch_size=2)


@pytest.mark.parametrize("model_class", [VAE, BubbleVAE])
def test_baseline_checkpoint_reloads(model_class, tmp_path: Path):
    kwargs = {"n_caps": 2, "cap_dim": 4, "seq_len": 3, "image_shape": (1, 4, 4)}
    if model_class is BubbleVAE:
        kwargs.update(time_window=3, capsule_window=3, mu_init=5.0)
    model = model_class(**kwargs)
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=SequenceData(torch.rand(4, 3, 1, 4, 4)))
    path = tmp_path / "reload.ckpt"
    trainer.save_checkpoint(path)

    reloaded = model_class.load_from_checkpoint(path)

    for name, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[name]), name
