"""Sequences of transforming MNIST-like digits, generated on the training device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from tvae_lightning.data.digits import (
    DigitSource,
    check_digit_arguments,
    download_digits,
    load_digits,
    split_train_val,
)
from tvae_lightning.data.resumable import ResumableDataModule
from tvae_lightning.data.sequences import TransformationSequences


class TransformingMNISTDataModule(ResumableDataModule):
    """Sequences of one digit under a transformation that advances each frame.

    The data loaders yield digits (and, for validation and test, the fixed
    sequence parameters) only. Frames are drawn in
    :meth:`on_after_batch_transfer`, after the batch reaches the training device,
    in one batched operation. Each batch is a dict with ``frames``
    ``(batch, seq_len, 3, 28, 28)`` in [0, 1], ``factors``
    ``(batch, seq_len, n_factors)`` (the value of every factor in every frame,
    columns named by :attr:`factor_names`), ``varied`` ``(batch,)`` (index into
    :attr:`factor_names` of the factor each sequence varies, rotation for
    ``rotation_colour``) and ``labels`` ``(batch,)``.

    Transformations, by name: ``rotation`` (degrees), ``colour`` (hue rotation of
    the red digit, degrees), ``scale`` (zoom about the centre), ``perspective``
    (3D tilt of the image plane about its vertical axis, degrees),
    ``rotation_colour`` (both advance each frame) and ``combined`` (each sequence
    varies one of rotation, colour and scale and holds the other two at one
    random value each).

    Training sequences are drawn from a generator seeded with ``seed`` plus 1000
    times the process rank, whose state is saved in checkpoints. Validation and
    test sequences are fixed by ``seed``: the same every epoch, every run and
    whatever the number of processes.

    Args:
        root: folder that contains ``MNIST/raw`` (or the folder of another
            ``dataset``); downloads go there.
        dataset: ``"mnist"``, ``"fashion_mnist"`` or ``"kmnist"``.
        transformation: name of the sequence transformation, e.g. ``"rotation"``.
        seq_len: frames per sequence.
        values: value list per factor (``rotation``, ``colour``, ``scale``,
            ``perspective``) replacing the defaults: 0, 20, ..., 340 degrees for
            the angles and the 18 zoom factors 0.60 to 1.26 for scale.
        start_indices: indices into the value lists at which the varied factors
            may start; any index when ``None``.
        held_out: a motion (factor names joined by ``_``, e.g.
            ``"rotation_colour"``) left out of training and validation sequences
            and used alone by test sequences.
        batch_size: sequences per batch.
        val_fraction: share of the training split held out for validation.
        num_workers: data loader worker processes.
        download: download the data set when its files are missing.
        seed: seed of the validation split and of all sequence start indices.
    """

    def __init__(
        self,
        root: str = "data",
        dataset: str = "mnist",
        transformation: str = "rotation",
        seq_len: int = 18,
        values: Mapping[str, Sequence[float]] | None = None,
        start_indices: Sequence[int] | None = None,
        held_out: str | None = None,
        batch_size: int = 8,
        val_fraction: float = 0.2,
        num_workers: int = 0,
        download: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_digit_arguments(dataset, batch_size, val_fraction)
        self.save_hyperparameters()
        self.sequences = TransformationSequences(
            transformation, seq_len, values, start_indices, held_out
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(channels, height, width)`` of one frame."""
        return (3, 28, 28)

    @property
    def seq_len(self) -> int:
        return self.hparams.seq_len

    @property
    def factor_names(self) -> tuple[str, ...]:
        """Names of the columns of ``batch["factors"]``."""
        return self.sequences.factor_names

    def prepare_data(self) -> None:
        if self.hparams.download:
            download_digits(self.hparams.root, self.hparams.dataset)

    def setup(self, stage: str) -> None:
        self._seed_train_generator()
        root, name = self.hparams.root, self.hparams.dataset

        if stage in ("fit", "validate") and self.val_source is None:
            images, labels = load_digits(root, name, train=True)
            self._split_train_val(images, labels)

        if stage in ("test", "predict") and self.test_source is None:
            images, labels = load_digits(root, name, train=False)
            motions, starts = self._fixed_sequences(len(images), "test")
            self.test_source = DigitSource(images, labels, motions, starts)

    def _split_train_val(self, images: Tensor, labels: Tensor) -> None:
        train_index, val_index = split_train_val(
            len(images), self.hparams.val_fraction, self.hparams.seed
        )

        self.train_source = DigitSource(images[train_index], labels[train_index])
        motions, starts = self._fixed_sequences(len(val_index), "val")
        self.val_source = DigitSource(
            images[val_index], labels[val_index], motions, starts
        )

    def _fixed_sequences(self, count: int, split: str) -> tuple[Tensor, Tensor]:
        offset = {"val": 1, "test": 2}[split]
        generator = torch.Generator().manual_seed(self.hparams.seed + offset)
        return self.sequences.sample(count, generator, split)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict) or "images" not in batch:
            return batch

        self._advance_train_sampler(len(batch["images"]))
        sequences = self.make_sequences(batch)
        sequences["indices"] = batch["indices"]
        return sequences

    def make_sequences(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Turn a batch of digits into frame sequences on the batch's device."""
        images = batch["images"]
        if "starts" in batch:
            motions, starts = batch["motions"], batch["starts"]
        else:
            motions, starts = self.sequences.sample(len(images), self.train_generator)
            motions = motions.to(images.device)
            starts = starts.to(images.device)

        digits = images.unsqueeze(1).float().div_(255.0)
        factors = self.sequences.factors(motions, starts)
        return {
            "frames": self.sequences.render(digits, factors),
            "factors": factors,
            "varied": self.sequences.varied(motions),
            "labels": batch["labels"],
        }
