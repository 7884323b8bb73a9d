"""The 2D TVAE, its single-image data module and configs/tvae_2d.yaml."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from tvae_lightning import TopographicVAE2D, TorusTopography
from tvae_lightning.callbacks import (
    ClassMap,
    EquivarianceByOffsetPlot,
    PriorSamples,
    ReconstructionImages,
    TopographicActivationMap,
)
from tvae_lightning.cli import main
from tvae_lightning.data import MNISTImageDataModule

CONFIG_2D = str(Path(__file__).resolve().parents[1] / "configs" / "tvae_2d.yaml")


def small_model() -> TopographicVAE2D:
    torch.manual_seed(0)
    return TopographicVAE2D(torus_height=4, torus_width=5, window=3, eval_num_samples=2)


def test_image_data_module_yields_single_frames(mnist_root: Path) -> None:
    data = MNISTImageDataModule(root=str(mnist_root), batch_size=8, download=False)
    data.setup("fit")

    batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)

    assert batch["frames"].shape == (8, 1, 1, 28, 28)
    assert batch["frames"].dtype == torch.float32
    assert batch["labels"].shape == (8,)
    assert batch["frames"].min() >= 0.0
    assert batch["frames"].max() <= 1.0
    assert batch["frames"].max() > 0.5


def test_image_data_module_splits_train_and_validation(mnist_root: Path) -> None:
    data = MNISTImageDataModule(
        root=str(mnist_root), val_fraction=0.25, download=False
    )
    data.setup("fit")
    data.setup("test")

    assert len(data.train_source) == 48
    assert len(data.val_source) == 16
    assert len(data.test_source) == 32
    assert data.seq_len == 1
    assert data.image_shape == (1, 28, 28)


def test_image_data_module_rejects_invalid_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        MNISTImageDataModule(batch_size=0)


def test_tvae_2d_uses_torus_topography() -> None:
    model = small_model()

    assert isinstance(model.topography, TorusTopography)
    assert model.topography.grid_shape == (4, 5)
    assert model.topography.mu.item() == 10.0
    assert (model.n_caps, model.cap_dim, model.seq_len) == (1, 20, 1)


def test_tvae_2d_t_is_torus_of_posterior_means() -> None:
    model = small_model()
    frames = torch.rand(3, 1, 1, 28, 28)

    with torch.no_grad():
        capsules = model(frames)
        posterior = model.encode(frames)
        expected = model.topography(posterior.z_mean, posterior.u_mean)

    assert capsules.shape == (3, 1, 1, 20)
    torch.testing.assert_close(capsules.reshape(3, 1, 20), expected)


def test_tvae_2d_completion_is_reconstruction() -> None:
    model = small_model()
    frames = torch.rand(2, 1, 1, 28, 28)

    with torch.no_grad():
        completed = model.complete(frames, 1)
        posterior = model.encode(frames)
        t = model.group(posterior.z_mean, posterior.u_mean)
        reconstruction = torch.sigmoid(model.decode(t))

    torch.testing.assert_close(completed, reconstruction)


def test_tvae_2d_fit_draws_torus_images(mnist_root: Path, tmp_path: Path) -> None:
    model = small_model()
    data = MNISTImageDataModule(root=str(mnist_root), batch_size=8, download=False)
    output = tmp_path / "images"
    callbacks = [
        ReconstructionImages(num_examples=6, output_dir=str(output)),
        TopographicActivationMap(num_examples=16, output_dir=str(output)),
        PriorSamples(num_samples=10, output_dir=str(output)),
        ClassMap(max_examples=16, output_dir=str(output)),
        EquivarianceByOffsetPlot(output_dir=str(output)),
    ]
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )

    trainer.fit(model, data)

    assert "val/loss" in trainer.callback_metrics
    assert "val/equivariance_error" not in trainer.callback_metrics
    expected_sizes = {
        # One row of 6 images over one row of their reconstructions.
        "reconstructions": (6 * 30 + 2, 2 * 30 + 2),
        # 10 samples in a 4 x 3 grid, padded with blank frames.
        "prior_samples": (4 * 30 + 2, 3 * 30 + 2),
        "activation_map": (600, 500),
        "class_map": (700, 550),
    }
    for name, size in expected_sizes.items():
        with Image.open(output / f"{name}_epoch0.png") as image:
            image.load()
            assert image.size == size, name
    assert not (output / "equivariance_by_offset_epoch0.png").exists()


def test_tvae_2d_config_fits(mnist_root: Path, tmp_path: Path) -> None:
    main(
        [
            "fit", "--config", CONFIG_2D,
            "--model.torus_height", "4",
            "--model.torus_width", "4",
            "--model.window", "3",
            "--data.root", str(mnist_root),
            "--data.download", "false",
            "--data.batch_size", "16",
            "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path),
        ]
    )

    images = tmp_path / "lightning_logs" / "version_0" / "images"
    names = sorted(path.name for path in images.glob("*.png"))
    assert names == [
        "activation_map_epoch0.png",
        "class_map_epoch0.png",
        "prior_samples_epoch0.png",
        "reconstructions_epoch0.png",
    ]
