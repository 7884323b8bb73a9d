"""Image callbacks in short real fits with TensorBoard and CSV loggers."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import write_digit_folder
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tvae_lightning import TopographicVAE
from tvae_lightning.callbacks import (
    CapsuleTraversalImages,
    ClassMap,
    EquivarianceByOffsetPlot,
    PriorSamples,
    ReconstructionImages,
    TopographicActivationMap,
)
from tvae_lightning.callbacks.class_map import preferred_classes
from tvae_lightning.callbacks.equivariance_plot import chance_pair_error
from tvae_lightning.data import TransformingMNISTDataModule

SEQ_LEN = 4
CAP_DIM = 4
N_CAPS = 3
FRAME = 28 + 2  # a frame and the 2-pixel border of torchvision's make_grid


def grid_size(rows: int, columns: int) -> tuple[int, int]:
    """PIL size ``(width, height)`` of a make_grid image with padding 2."""
    return (columns * FRAME + 2, rows * FRAME + 2)


EXPECTED_SIZES = {
    "reconstructions": grid_size(rows=2 * 3, columns=SEQ_LEN),
    "capsule_traversal": grid_size(rows=2 * 2, columns=CAP_DIM),
    "activation_map": (600, 500),
    "equivariance_by_offset": (600, 400),
    "prior_samples": grid_size(rows=5, columns=SEQ_LEN),
    "class_map": (700, 550),
}


def small_model() -> TopographicVAE:
    torch.manual_seed(0)
    return TopographicVAE(
        n_caps=N_CAPS,
        cap_dim=CAP_DIM,
        seq_len=SEQ_LEN,
        time_window=3,
        capsule_window=3,
        eval_num_samples=2,
    )


def all_callbacks() -> list[L.Callback]:
    return [
        ReconstructionImages(num_examples=3),
        CapsuleTraversalImages(num_examples=2),
        TopographicActivationMap(num_examples=8),
        EquivarianceByOffsetPlot(num_examples=8),
        PriorSamples(num_samples=5),
        ClassMap(max_examples=16),
    ]


def fit(
    root: Path,
    logger: L.pytorch.loggers.Logger | bool,
    callbacks: list[L.Callback],
    max_epochs: int = 1,
) -> tuple[L.Trainer, TopographicVAE]:
    model = small_model()
    data = TransformingMNISTDataModule(
        root=str(root), seq_len=SEQ_LEN, batch_size=4, download=False
    )
    trainer = L.Trainer(
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=2,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=root.parent,
    )
    trainer.fit(model, data)
    return trainer, model


@pytest.fixture(scope="module")
def fits(tmp_path_factory) -> dict[str, tuple[L.Trainer, Path]]:
    """Trainer and image folder of one short fit with every image callback.

    One fit logs to TensorBoard, the other to a CSV logger, which has no image
    support.
    """
    loggers = {"tensorboard": TensorBoardLogger, "csv": CSVLogger}
    results = {}
    for kind, logger_class in loggers.items():
        folder = tmp_path_factory.mktemp(kind)
        root = write_digit_folder(folder / "data")
        logger = logger_class(folder / "logs", name="run")
        trainer, _ = fit(root, logger, all_callbacks())
        results[kind] = (trainer, Path(trainer.log_dir) / "images")
    return results


@pytest.mark.parametrize("kind", ["tensorboard", "csv"])
@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_callback_writes_png_of_expected_size(fits, kind: str, name: str) -> None:
    _, folder = fits[kind]
    path = folder / f"{name}_epoch0.png"

    assert path.is_file()
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == EXPECTED_SIZES[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_callback_logs_image_to_tensorboard(fits, name: str) -> None:
    trainer, _ = fits["tensorboard"]

    events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0})
    events.Reload()

    assert f"images/{name}" in events.Tags()["images"]


def test_equivariance_plot_writes_values_per_offset(fits) -> None:
    _, folder = fits["csv"]

    lines = (folder / "equivariance_by_offset_epoch0.csv").read_text().splitlines()

    assert lines[0] == "offset,mean_pair_error"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]


def test_callbacks_draw_every_n_epochs(tmp_path: Path) -> None:
    root = write_digit_folder(tmp_path / "data")
    logger = CSVLogger(tmp_path / "logs", name="run")
    callback = ReconstructionImages(every_n_epochs=2, num_examples=2)

    trainer, _ = fit(root, logger, [callback], max_epochs=4)

    folder = Path(trainer.log_dir) / "images"
    names = sorted(path.name for path in folder.glob("*.png"))
    # Epochs 0 and 2 by the interval, epoch 3 as the last epoch.
    assert names == [
        "reconstructions_epoch0.png",
        "reconstructions_epoch2.png",
        "reconstructions_epoch3.png",
    ]


def test_callback_keeps_first_validation_examples(tmp_path: Path) -> None:
    root = write_digit_folder(tmp_path / "data")
    callback = ReconstructionImages(num_examples=6, output_dir=str(tmp_path / "out"))

    fit(root, False, [callback])

    data = TransformingMNISTDataModule(
        root=str(root), seq_len=SEQ_LEN, batch_size=4, download=False
    )
    data.setup("fit")
    batches = iter(data.val_dataloader())
    first = [data.on_after_batch_transfer(next(batches), 0) for _ in range(2)]
    expected = torch.cat([batch["frames"] for batch in first])[:6]
    assert torch.equal(callback.examples["frames"], expected)
    assert (tmp_path / "out" / "reconstructions_epoch0.png").is_file()


def test_callback_without_logger_writes_to_default_root(tmp_path: Path) -> None:
    root = write_digit_folder(tmp_path / "data")

    trainer, _ = fit(root, False, [PriorSamples(num_samples=2)])

    path = Path(trainer.default_root_dir) / "images" / "prior_samples_epoch0.png"
    assert path.is_file()


def test_callback_restores_training_mode(tmp_path: Path) -> None:
    root = write_digit_folder(tmp_path / "data")
    model = small_model()
    data = TransformingMNISTDataModule(
        root=str(root), seq_len=SEQ_LEN, batch_size=4, download=False
    )
    callback = ReconstructionImages(num_examples=2, output_dir=str(tmp_path / "out"))
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=False,
        callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(model, data)
    model.train()

    callback.draw_and_write(trainer, model)

    assert model.training


def test_class_map_draws_test_split(tmp_path: Path) -> None:
    root = write_digit_folder(tmp_path / "data")
    callback = ClassMap(max_examples=8, output_dir=str(tmp_path / "out"))
    trainer, model = fit(root, False, [callback])
    data = TransformingMNISTDataModule(
        root=str(root), seq_len=SEQ_LEN, batch_size=4, download=False
    )

    trainer.test(model, data, verbose=False)

    # After one fitted epoch, trainer.current_epoch is 1.
    names = [path.name for path in (tmp_path / "out").glob("class_map_test_*.png")]
    assert names == ["class_map_test_epoch1.png"]
    assert callback.num_seen == 8


def test_preferred_classes_picks_highest_standardised_mean() -> None:
    # Class 1 is higher everywhere; after standardising, class 0 wins unit 0.
    means = torch.tensor([[3.0, 0.0, 0.0], [5.0, 6.0, 7.0]])

    assert preferred_classes(means, normalize=False).tolist() == [1, 1, 1]
    assert preferred_classes(means, normalize=True).tolist() == [0, 1, 1]


def test_preferred_classes_skips_unseen_class() -> None:
    means = torch.tensor([[1.0, 2.0], [float("nan"), float("nan")]])

    assert preferred_classes(means, normalize=False).tolist() == [0, 0]


def test_chance_pair_error_matches_random_capsule_level() -> None:
    # 13.2k over the 153 frame pairs of 18 frames of 18 capsules of 18 units.
    assert chance_pair_error(18, 18) * 153 == pytest.approx(13.2e3, rel=0.01)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: ReconstructionImages(every_n_epochs=0), "every_n_epochs"),
        (lambda: PriorSamples(num_samples=0), "num_samples"),
        (lambda: ClassMap(max_examples=-1), "max_examples"),
        (lambda: ClassMap(num_classes=21), "num_classes"),
        (lambda: CapsuleTraversalImages(max_shift=-1), "max_shift"),
    ],
)
def test_callback_rejects_invalid_argument(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()
