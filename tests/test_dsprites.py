"""dSprites sequences: stepping, the procedural renderer and the .npz archive."""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from types import SimpleNamespace
from urllib.error import URLError

import lightning as L
import numpy as np
import pytest
import torch

from tvae_lightning import TopographicVAE
from tvae_lightning.data import DSpritesSequenceDataModule
from tvae_lightning.data import dsprites as dsprites_module
from tvae_lightning.data.sprites import (
    DSPRITES_FILE,
    ArchiveSprites,
    ProceduralSprites,
)

TINY_SIZES = (1, 2, 2, 3, 4, 4)
"""Grid of the test archive: colour, shape, scale, orientation, x, y."""


def tiny_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return images, classes and values of a complete 2 x 2 x 3 x 4 x 4 grid.

    Image ``i`` (in grid order) shows a 4 x 4 block at a place set by x and y
    and, in its top row, the bits of ``i``, so every image differs.
    """
    classes = np.array(list(itertools.product(*(range(size) for size in TINY_SIZES))))
    values = np.stack(
        [
            np.ones(len(classes)),
            classes[:, 1] + 1.0,
            0.5 + 0.5 * classes[:, 2],
            classes[:, 3] * 2 * math.pi / 3,
            classes[:, 4] / 3,
            classes[:, 5] / 3,
        ],
        axis=1,
    )
    images = np.zeros((len(classes), 64, 64), dtype=np.uint8)
    for index, row in enumerate(classes):
        top, left = 10 + 10 * row[5], 10 + 10 * row[4]
        images[index, top : top + 4, left : left + 4] = 1
        bits = [int(bit) for bit in format(index, "08b")]
        images[index, 0, :8] = bits
    return images, classes, values


def write_tiny_archive(folder: Path, shuffle: bool = True) -> Path:
    """Write the tiny grid as an .npz archive with rows in random order."""
    images, classes, values = tiny_grid()
    order = np.random.default_rng(0).permutation(len(images)) if shuffle else None
    if order is not None:
        images, classes, values = images[order], classes[order], values[order]
    path = folder / DSPRITES_FILE
    np.savez_compressed(
        path, imgs=images, latents_classes=classes, latents_values=values
    )
    return path


def procedural_module(**kwargs) -> DSpritesSequenceDataModule:
    kwargs.setdefault("source", "procedural")
    kwargs.setdefault("num_val", 16)
    kwargs.setdefault("num_test", 16)
    module = DSpritesSequenceDataModule(**kwargs)
    module.setup("fit")
    return module


def first_batch(module: DSpritesSequenceDataModule, loader) -> dict:
    return module.on_after_batch_transfer(next(iter(loader)), 0)


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    """Return the (column, row) centroid of a 2D image, in pixel-centre units."""
    rows, columns = torch.meshgrid(
        torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij"
    )
    mass = image.sum()
    return (image * columns).sum().item() / mass, (image * rows).sum().item() / mass


def render_one(shape: int, scale: int, orientation: int, x: int, y: int):
    classes = torch.tensor([[shape, scale, orientation, x, y]])
    return ProceduralSprites().render(classes)[0, 0]


def test_batch_shapes_and_properties():
    module = procedural_module(batch_size=4)
    batch = first_batch(module, module.val_dataloader())

    assert module.seq_len == 15
    assert module.image_shape == (1, 64, 64)
    assert batch["frames"].shape == (4, 15, 1, 64, 64)
    assert batch["factors"].shape == (4, 15, 5)
    assert batch["varied"].shape == (4,)
    assert module.factor_names == ("shape", "scale", "orientation", "x", "y")


def test_only_varied_factor_steps_by_one():
    module = procedural_module(batch_size=16)
    batch = first_batch(module, module.val_dataloader())
    classes, varied = batch["classes"], batch["varied"]
    sizes = module.sprites.sizes

    steps = torch.remainder(classes[:, 1:] - classes[:, :-1], sizes)
    expected = torch.nn.functional.one_hot(varied, 5)[:, None, :].expand_as(steps)
    assert torch.equal(steps, expected)


def test_stepped_factors_come_from_configured_list():
    module = procedural_module(batch_size=16, factors=["orientation", "y"])
    batch = first_batch(module, module.val_dataloader())
    assert set(batch["varied"].tolist()) <= {2, 4}


@pytest.mark.parametrize(
    ("factor", "last"), [("x", 31), ("orientation", 39), ("scale", 5)]
)
def test_stepping_wraps_around(factor: str, last: int):
    module = procedural_module()
    column = module.factor_names.index(factor)
    starts = torch.tensor([[0, 0, 0, 0, 0]])
    starts[0, column] = last - 1
    classes = module.step_classes(starts, torch.tensor([column]))
    assert classes[0, :4, column].tolist() == [last - 1, last, 0, 1]


def test_factors_are_true_values_of_classes():
    module = procedural_module(batch_size=8)
    batch = first_batch(module, module.val_dataloader())
    classes, factors = batch["classes"], batch["factors"]

    assert torch.equal(factors[..., 0], classes[..., 0].float() + 1)
    assert torch.allclose(factors[..., 1], 0.5 + 0.1 * classes[..., 1].float())
    assert torch.allclose(factors[..., 2], classes[..., 2] * 2 * math.pi / 39)
    assert torch.allclose(factors[..., 3], classes[..., 3] / 31)
    assert torch.allclose(factors[..., 4], classes[..., 4] / 31)


def test_validation_sequences_repeat_every_epoch():
    module = procedural_module(batch_size=8)
    first = first_batch(module, module.val_dataloader())
    second = first_batch(module, module.val_dataloader())
    assert torch.equal(first["frames"], second["frames"])
    assert torch.equal(first["factors"], second["factors"])


def test_validation_sequences_equal_across_instances():
    first = first_batch(module := procedural_module(seed=3), module.val_dataloader())
    second = first_batch(module := procedural_module(seed=3), module.val_dataloader())
    assert torch.equal(first["frames"], second["frames"])


def test_test_and_validation_sequences_differ():
    module = procedural_module()
    val = first_batch(module, module.val_dataloader())
    test = first_batch(module, module.test_dataloader())
    assert not torch.equal(val["classes"], test["classes"])


def test_training_sequences_repeat_with_seed():
    first = first_batch(module := procedural_module(seed=4), module.train_dataloader())
    second = first_batch(module := procedural_module(seed=4), module.train_dataloader())
    assert torch.equal(first["classes"], second["classes"])


def test_training_sequences_differ_by_rank():
    batches = []
    for rank in (0, 1):
        module = DSpritesSequenceDataModule(source="procedural", seed=4)
        module.trainer = SimpleNamespace(global_rank=rank, world_size=2, training=False)
        module.setup("fit")
        batches.append(first_batch(module, module.train_dataloader()))
    assert not torch.equal(batches[0]["classes"], batches[1]["classes"])


def test_state_dict_restores_training_sequences():
    module = procedural_module()
    first_batch(module, module.train_dataloader())
    state = module.state_dict()
    expected = first_batch(module, module.train_dataloader())

    restored = procedural_module(seed=9)
    restored.load_state_dict(state)
    result = first_batch(restored, restored.train_dataloader())
    assert torch.equal(result["classes"], expected["classes"])


def test_renderer_centre_follows_x():
    centres = [centre_of_mass(render_one(0, 5, 0, x, 16))[0] for x in (0, 10, 20, 31)]
    span = 64 - 2 * ProceduralSprites.MARGIN
    for x, centre in zip((0, 10, 20, 31), centres):
        expected = ProceduralSprites.MARGIN + span * x / 31
        assert centre == pytest.approx(expected, abs=0.5)


def test_renderer_centre_follows_y_downwards():
    rows = [centre_of_mass(render_one(1, 3, 0, 16, y))[1] for y in (0, 15, 31)]
    span = 64 - 2 * ProceduralSprites.MARGIN
    for y, row in zip((0, 15, 31), rows):
        expected = ProceduralSprites.MARGIN + span * y / 31
        assert row == pytest.approx(expected, abs=0.5)


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_renderer_area_grows_with_scale(shape: int):
    areas = [render_one(shape, scale, 0, 16, 16).sum().item() for scale in range(6)]
    assert all(small < large for small, large in zip(areas, areas[1:]))
    assert areas[5] / areas[0] == pytest.approx(4.0, rel=0.2)


def test_renderer_square_has_expected_side():
    side = 2 * ProceduralSprites.HALF_SIZE
    assert render_one(0, 5, 0, 16, 16).sum().item() == pytest.approx(side**2, rel=0.1)


def test_renderer_shapes_differ():
    images = [render_one(shape, 5, 0, 16, 16) for shape in range(3)]
    areas = [image.sum().item() for image in images]
    assert len(set(areas)) == 3
    assert areas[1] < areas[2] < areas[0]


@pytest.mark.parametrize("orientation", [0, 5, 13, 26])
def test_renderer_ellipse_axis_follows_orientation(orientation: int):
    image = render_one(1, 5, orientation, 16, 16)
    column, row = centre_of_mass(image)
    rows, columns = torch.meshgrid(
        torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij"
    )
    dx, dy_up = columns - column, row - rows
    mu20 = (image * dx**2).sum().item()
    mu02 = (image * dy_up**2).sum().item()
    mu11 = (image * dx * dy_up).sum().item()
    axis = 0.5 * math.atan2(2 * mu11, mu20 - mu02)

    expected = orientation * 2 * math.pi / 39
    difference = (axis - expected + math.pi / 2) % math.pi - math.pi / 2
    assert abs(difference) < math.radians(4)


def test_renderer_frames_are_binary():
    module = procedural_module()
    frames = first_batch(module, module.val_dataloader())["frames"]
    assert set(frames.unique().tolist()) <= {0.0, 1.0}


def test_archive_frames_match_file_images(tmp_path: Path):
    write_tiny_archive(tmp_path)
    images, classes, _ = tiny_grid()
    by_classes = {tuple(row[1:]): image for row, image in zip(classes, images)}
    module = DSpritesSequenceDataModule(root=str(tmp_path), source="archive", seq_len=5)
    module.setup("fit")
    batch = first_batch(module, module.val_dataloader())

    assert isinstance(module.sprites, ArchiveSprites)
    for sequence, frames in zip(batch["classes"], batch["frames"]):
        for grid_index, frame in zip(sequence.tolist(), frames):
            expected = torch.from_numpy(by_classes[tuple(grid_index)]).float()
            assert torch.equal(frame[0], expected)


def test_archive_values_come_from_file(tmp_path: Path):
    write_tiny_archive(tmp_path)
    sprites = ArchiveSprites(str(tmp_path / DSPRITES_FILE))
    assert sprites.sizes.tolist() == [2, 2, 3, 4, 4]
    assert torch.allclose(sprites.values[1], torch.tensor([0.5, 1.0]))
    assert torch.allclose(sprites.values[3], torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))


def test_archive_preferred_and_logged(tmp_path: Path, caplog):
    write_tiny_archive(tmp_path)
    module = DSpritesSequenceDataModule(root=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="tvae_lightning.data"):
        module.setup("fit")
    assert isinstance(module.sprites, ArchiveSprites)
    assert "dSprites archive" in caplog.text


def test_missing_archive_falls_back_and_logs(tmp_path: Path, caplog):
    module = DSpritesSequenceDataModule(root=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="tvae_lightning.data"):
        module.setup("fit")
    assert isinstance(module.sprites, ProceduralSprites)
    assert "procedural renderer" in caplog.text


def test_failed_download_warns_and_falls_back(tmp_path: Path, caplog, monkeypatch):
    def fail_download(url: str, root: str, filename: str) -> None:
        raise URLError("no network")

    monkeypatch.setattr(dsprites_module, "download_url", fail_download)
    module = DSpritesSequenceDataModule(root=str(tmp_path), download=True)
    with caplog.at_level(logging.WARNING, logger="tvae_lightning.data"):
        module.prepare_data()
    module.setup("fit")
    assert "Download of" in caplog.text
    assert isinstance(module.sprites, ProceduralSprites)


def test_archive_source_requires_file(tmp_path: Path):
    module = DSpritesSequenceDataModule(root=str(tmp_path), source="archive")
    with pytest.raises(FileNotFoundError, match=DSPRITES_FILE):
        module.setup("fit")


def test_corrupt_archive_raises_value_error(tmp_path: Path):
    path = tmp_path / DSPRITES_FILE
    path.write_bytes(b"not an archive" * 100)
    with pytest.raises(ValueError, match=DSPRITES_FILE):
        DSpritesSequenceDataModule(root=str(tmp_path)).setup("fit")


def test_truncated_archive_raises_value_error(tmp_path: Path):
    path = write_tiny_archive(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=DSPRITES_FILE):
        DSpritesSequenceDataModule(root=str(tmp_path)).setup("fit")


def test_archive_without_values_raises_value_error(tmp_path: Path):
    images, classes, _ = tiny_grid()
    np.savez(tmp_path / DSPRITES_FILE, imgs=images, latents_classes=classes)
    with pytest.raises(ValueError, match="latents_values"):
        ArchiveSprites(str(tmp_path / DSPRITES_FILE))


def test_archive_with_incomplete_grid_raises_value_error(tmp_path: Path):
    images, classes, values = tiny_grid()
    np.savez(
        tmp_path / DSPRITES_FILE, imgs=images[1:], latents_classes=classes[1:],
        latents_values=values[1:],
    )
    with pytest.raises(ValueError, match="factor grid"):
        ArchiveSprites(str(tmp_path / DSPRITES_FILE))


def test_archive_with_grey_pixels_raises_value_error(tmp_path: Path):
    images, classes, values = tiny_grid()
    np.savez(
        tmp_path / DSPRITES_FILE, imgs=images * 255, latents_classes=classes,
        latents_values=values,
    )
    with pytest.raises(ValueError, match="0 and 1"):
        ArchiveSprites(str(tmp_path / DSPRITES_FILE))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factors": ["shape"]}, "factors"),
        ({"factors": []}, "factors"),
        ({"factors": ["x", "x"]}, "factors"),
        ({"seq_len": 0}, "seq_len"),
        ({"num_train": 0}, "num_train"),
        ({"source": "web"}, "source"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        DSpritesSequenceDataModule(**kwargs)


def test_trainer_fits_tvae_on_procedural_sequences(tmp_path: Path):
    model = TopographicVAE(
        n_caps=2, cap_dim=15, seq_len=15, time_window=15, capsule_window=1,
        image_shape=(1, 64, 64),
    )
    module = DSpritesSequenceDataModule(
        root=str(tmp_path), source="procedural", batch_size=2, num_train=4, num_val=2
    )
    trainer = L.Trainer(
        max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path), accelerator="cpu",
    )
    trainer.fit(model, datamodule=module)
    assert trainer.global_step == 2
