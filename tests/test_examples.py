"""The plug-in examples: a convolutional TVAE subclass and a custom topography."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tvae_lightning import TopographicVAE
from tvae_lightning.cli import main
from tvae_lightning.networks import GaussianEncoder

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture
def examples_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put examples/ on sys.path, as PYTHONPATH=examples does for tvae-cli."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return EXAMPLES


def quiet_trainer(out: Path) -> list[str]:
    return [
        "--trainer.max_steps", "2", "--trainer.max_epochs", "1",
        "--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0",
        "--trainer.default_root_dir", str(out),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]


# -- conv_tvae.py ------------------------------------------------------------


def test_conv_encoder_is_gaussian_encoder(examples_path: Path):
    from conv_tvae import ConvTopographicVAE

    model = ConvTopographicVAE(n_caps=2, cap_dim=4, seq_len=4, time_window=3)
    assert isinstance(model.z_encoder, GaussianEncoder)


def test_conv_tvae_capsule_shape(examples_path: Path):
    from conv_tvae import ConvTopographicVAE

    model = ConvTopographicVAE(
        n_caps=2, cap_dim=4, seq_len=4, time_window=3, image_shape=(1, 64, 64),
        width=4,
    )
    assert model(torch.rand(2, 4, 1, 64, 64)).shape == (2, 4, 2, 4)


def test_conv_tvae_rejects_odd_image_size(examples_path: Path):
    from conv_tvae import ConvTopographicVAE

    with pytest.raises(ValueError, match="divisible by 4"):
        ConvTopographicVAE(n_caps=2, cap_dim=4, seq_len=4, time_window=3,
                           image_shape=(1, 30, 30))


def test_conv_tvae_fits_with_cli_and_reloads(
    examples_path: Path, mnist_root: Path, tmp_path: Path
):
    from conv_tvae import ConvTopographicVAE

    main([
        "fit",
        "--model", "conv_tvae.ConvTopographicVAE",
        "--model.n_caps", "3", "--model.cap_dim", "6", "--model.seq_len", "6",
        "--model.time_window", "5", "--model.width", "8",
        "--data", "tvae_lightning.data.TransformingMNISTDataModule",
        "--data.root", str(mnist_root), "--data.download", "false",
        "--data.seq_len", "6", "--data.batch_size", "4",
        *quiet_trainer(tmp_path),
    ])
    checkpoint = next((tmp_path / "lightning_logs").rglob("*.ckpt"))

    model = ConvTopographicVAE.load_from_checkpoint(checkpoint)

    assert model.hparams.width == 8


# -- custom_topography.py ----------------------------------------------------


def slow_gaussian_topography(z, u, mu, n_caps, cap_dim, offsets, sigma):
    batch, seq_len, _ = z.shape
    z = z.reshape(batch, seq_len, n_caps, cap_dim)
    u = u.reshape(batch, seq_len, n_caps, cap_dim)
    t = torch.empty_like(z)
    for b in range(batch):
        for frame in range(seq_len):
            for c in range(n_caps):
                for i in range(cap_dim):
                    energy = 0.0
                    for a in offsets:
                        weight = math.exp(-(a**2) / (2 * sigma**2))
                        value = float(u[b, (frame + a) % seq_len, c, (i + a) % cap_dim])
                        energy += weight * value**2
                    t[b, frame, c, i] = (z[b, frame, c, i] + mu) / math.sqrt(
                        energy + 1e-6
                    )
    return t.reshape(batch, seq_len, n_caps * cap_dim)


def test_custom_topography_matches_slow_loop(examples_path: Path):
    from custom_topography import GaussianShiftingTopography

    torch.manual_seed(0)
    topography = GaussianShiftingTopography(
        n_caps=2, cap_dim=5, seq_len=4, time_window=4, sigma=1.5, mu_init=2.0
    )
    z, u = torch.randn(2, 2, 4, 10)

    with torch.no_grad():
        t = topography(z, u)
    slow = slow_gaussian_topography(z, u, 2.0, 2, 5, [-1, 0, 1, 2], 1.5)

    torch.testing.assert_close(t, slow, rtol=1e-5, atol=1e-5)


def test_custom_topography_rejects_wide_window(examples_path: Path):
    from custom_topography import GaussianShiftingTopography

    with pytest.raises(ValueError, match="time_window"):
        GaussianShiftingTopography(n_caps=2, cap_dim=4, seq_len=8, time_window=5)


def test_custom_topography_yaml_fits(
    examples_path: Path, mnist_root: Path, tmp_path: Path
):
    main([
        "fit", "--config", str(EXAMPLES / "custom_topography.yaml"),
        "--data.root", str(mnist_root), "--data.download", "false",
        "--data.batch_size", "2",
        *quiet_trainer(tmp_path),
    ])
    checkpoint = next((tmp_path / "lightning_logs").rglob("*.ckpt"))
    state = torch.load(checkpoint, weights_only=False)["state_dict"]

    assert "topography.mu" in state


def test_custom_topography_builds_from_yaml(examples_path: Path):
    from custom_topography import GaussianShiftingTopography

    from tvae_lightning.cli import TVAECLI

    cli = TVAECLI(args=["--config", str(EXAMPLES / "custom_topography.yaml")],
                  run=False)

    assert isinstance(cli.model, TopographicVAE)
    assert isinstance(cli.model.topography, GaussianShiftingTopography)
