"""Single MNIST-like digits as one-frame sequences, for the 2D TVAE."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from tvae_lightning.data.digits import (
    DigitSource,
    check_digit_arguments,
    download_digits,
    load_digits,
    split_train_val,
)
from tvae_lightning.data.resumable import ResumableDataModule


class MNISTImageDataModule(ResumableDataModule):
    """Single digit images, each a sequence of one frame.

    Each batch is a dict with ``frames`` ``(batch, 1, 1, 28, 28)`` in [0, 1] and
    ``labels`` ``(batch,)``, so the sequence models' shapes apply with
    ``seq_len`` 1. The images travel to the training device as uint8 and are
    scaled there, in :meth:`on_after_batch_transfer`.

    The validation split is a fixed random share of the training split, drawn
    from ``seed``. Test and prediction use the test split. The loaders split the
    images over processes without padding and resume mid-epoch, as
    :class:`~tvae_lightning.data.resumable.ResumableDataModule` describes.

    Args:
        root: folder that contains ``MNIST/raw`` (or the folder of another
            ``dataset``); downloads go there.
        dataset: ``"mnist"``, ``"fashion_mnist"`` or ``"kmnist"``.
        batch_size: images per batch.
        val_fraction: share of the training split held out for validation.
        num_workers: data loader worker processes.
        download: download the data set when its files are missing.
        seed: seed of the validation split and of the training order.
    """

    def __init__(
        self,
        root: str = "data",
        dataset: str = "mnist",
        batch_size: int = 128,
        val_fraction: float = 0.2,
        num_workers: int = 0,
        download: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_digit_arguments(dataset, batch_size, val_fraction)
        self.save_hyperparameters()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(channels, height, width)`` of one frame."""
        return (1, 28, 28)

    @property
    def seq_len(self) -> int:
        """Frames per sequence: always 1."""
        return 1

    def prepare_data(self) -> None:
        if self.hparams.download:
            download_digits(self.hparams.root, self.hparams.dataset)

    def setup(self, stage: str) -> None:
        root, name = self.hparams.root, self.hparams.dataset

        if stage in ("fit", "validate") and self.val_source is None:
            images, labels = load_digits(root, name, train=True)
            self._split_train_val(images, labels)

        if stage in ("test", "predict") and self.test_source is None:
            images, labels = load_digits(root, name, train=False)
            self.test_source = DigitSource(images, labels)

    def _split_train_val(self, images: Tensor, labels: Tensor) -> None:
        train_index, val_index = split_train_val(
            len(images), self.hparams.val_fraction, self.hparams.seed
        )

        self.train_source = DigitSource(images[train_index], labels[train_index])
        self.val_source = DigitSource(images[val_index], labels[val_index])

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict) or "images" not in batch:
            return batch

        self._advance_train_sampler(len(batch["images"]))
        images = batch["images"].float().div_(255.0)
        frames = images[:, None, None]
        return {"frames": frames, "labels": batch["labels"], "indices": batch["indices"]}
