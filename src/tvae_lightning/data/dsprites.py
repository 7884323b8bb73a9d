"""Sequences of dSprites frames that step one factor per frame."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any
from urllib.error import URLError

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.utils import download_url

from tvae_lightning.data.resumable import ResumableDataModule
from tvae_lightning.data.sprites import (
    DSPRITES_FILE,
    DSPRITES_URL,
    IMAGE_SIZE,
    SPRITE_FACTORS,
    SpriteSource,
    open_sprites,
)

log = logging.getLogger(__name__)

STEPPED_FACTORS = ("x", "y", "orientation", "scale")
"""Factors a sequence may step; shape never changes within a sequence."""

SOURCES = ("auto", "archive", "procedural")


class SequenceSource(Dataset):
    """Sequence numbers and, for fixed sequences, their parameters, a batch at a time.

    ``__getitems__`` returns a dict with ``indices`` ``(batch,)`` (the sequence
    numbers, which key the evaluation noise of each sequence) and, when
    ``starts`` is given, ``starts`` ``(batch, 5)`` (start class of every factor)
    and ``varied`` ``(batch,)`` (index of the stepped factor).
    """

    def __init__(
        self, count: int, starts: Tensor | None = None, varied: Tensor | None = None
    ) -> None:
        self.count = count
        self.starts = starts
        self.varied = varied

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {"indices": index}
        if self.starts is not None and self.varied is not None:
            batch["starts"] = self.starts[index]
            batch["varied"] = self.varied[index]
        return batch


class DSpritesSequenceDataModule(ResumableDataModule):
    """Sequences of a dSprites sprite whose chosen factor steps once per frame.

    A sequence starts from a random configuration (shape, scale, orientation,
    x, y) and steps one factor, picked uniformly out of ``factors``, by one grid
    index per frame, wrapping around at the end of the grid: x goes from 1 back
    to 0, orientation from 2 pi back to 0. The orientation grid of the archive
    includes both 0 and 2 pi, which show the same sprite, so an orientation
    sequence shows one frame twice where it wraps. Frames come from the official
    archive ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` in ``root`` when
    it is there, else from a procedural renderer of the same factor grid. The
    module logs which one it uses.

    The data loaders yield sequence parameters only. Frames are drawn in
    :meth:`on_after_batch_transfer`, after the batch reaches the training
    device. Each batch is a dict with ``frames`` ``(batch, seq_len, 1, 64, 64)``
    in {0, 1}, ``factors`` ``(batch, seq_len, 5)`` (the true value of shape,
    scale, orientation, x and y in every frame), ``classes`` (their grid
    indices), ``varied`` ``(batch,)`` (index into :attr:`factor_names` of the
    stepped factor) and ``indices`` ``(batch,)`` (sequence numbers in the split).

    Training sequences are drawn from a generator seeded with ``seed`` plus 1000
    times the process rank, and checkpoints save the state of every process's
    generator. The training loader shuffles the sequence numbers every epoch and
    resumes mid-epoch. Validation and test sequences are fixed by ``seed``: the
    same every epoch, every run and whatever the number of processes. Under DDP
    each process evaluates its share of them, without padding.

    NOTE: configurations are drawn independently for each split, so a
    validation or test sequence may also occur in training.

    Args:
        root: folder that contains the archive; downloads go there.
        factors: names out of ``x``, ``y``, ``orientation`` and ``scale`` that
            sequences may step.
        seq_len: frames per sequence.
        batch_size: sequences per batch.
        num_train: training sequences per epoch, drawn afresh each epoch.
        num_val: validation sequences.
        num_test: test sequences.
        download: download the archive into ``root`` when it is missing; when the
            download fails the module logs a warning and renders the frames.
        source: ``"auto"`` (archive if present, else renderer), ``"archive"``
            (raise ``FileNotFoundError`` without the archive) or
            ``"procedural"`` (always render).
        num_workers: data loader worker processes.
        seed: seed of all sequences.
    """

    def __init__(
        self,
        root: str = "data",
        factors: Sequence[str] = STEPPED_FACTORS,
        seq_len: int = 15,
        batch_size: int = 8,
        num_train: int = 10000,
        num_val: int = 1000,
        num_test: int = 1000,
        download: bool = False,
        source: str = "auto",
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.stepped = _check_factors(factors)
        for name, value in (
            ("seq_len", seq_len),
            ("batch_size", batch_size),
            ("num_train", num_train),
            ("num_val", num_val),
            ("num_test", num_test),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        self.save_hyperparameters()

        self.sprites: SpriteSource | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(channels, height, width)`` of one frame."""
        return (1, IMAGE_SIZE, IMAGE_SIZE)

    @property
    def seq_len(self) -> int:
        return self.hparams.seq_len

    @property
    def factor_names(self) -> tuple[str, ...]:
        """Names of the columns of ``batch["factors"]``."""
        return SPRITE_FACTORS

    def prepare_data(self) -> None:
        path = os.path.join(self.hparams.root, DSPRITES_FILE)
        if not self.hparams.download or os.path.isfile(path):
            return
        try:
            download_url(DSPRITES_URL, self.hparams.root, DSPRITES_FILE)
        except (URLError, OSError, RuntimeError) as error:
            log.warning(
                "Download of %s into %s failed (%s: %s); frames will come from "
                "the procedural renderer. Copy the file into that folder to use "
                "the original images.",
                DSPRITES_URL, self.hparams.root, type(error).__name__, error,
            )

    def setup(self, stage: str) -> None:
        self._seed_train_generator()
        if self.sprites is None:
            self.sprites = open_sprites(self.hparams.root, self.hparams.source)

    def sample(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw start classes ``(count, 5)`` and stepped factors ``(count,)``."""
        sizes = self._sprites().sizes
        starts = (torch.rand(count, len(sizes), generator=generator) * sizes).long()
        choice = torch.randint(len(self.stepped), (count,), generator=generator)
        return starts, torch.tensor(self.stepped, dtype=torch.long)[choice]

    def _sprites(self) -> SpriteSource:
        if self.sprites is None:
            raise RuntimeError("call setup() before drawing sequences")
        return self.sprites

    def _fixed_source(self, count: int, offset: int) -> SequenceSource:
        generator = torch.Generator().manual_seed(self.hparams.seed + offset)
        starts, varied = self.sample(count, generator)
        return SequenceSource(count, starts, varied)

    def train_dataloader(self) -> DataLoader:
        return self._loader(SequenceSource(self.hparams.num_train), train=True)

    def val_dataloader(self) -> DataLoader:
        source = self._fixed_source(self.hparams.num_val, offset=1)
        return self._loader(source, train=False)

    def test_dataloader(self) -> DataLoader:
        source = self._fixed_source(self.hparams.num_test, offset=2)
        return self._loader(source, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict) or "indices" not in batch:
            return batch

        self._advance_train_sampler(len(batch["indices"]))
        return self.make_sequences(batch)

    def make_sequences(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Turn a batch of sequence parameters into frames on the batch's device."""
        device = batch["indices"].device
        if "starts" in batch:
            starts, varied = batch["starts"], batch["varied"]
        else:
            starts, varied = self.sample(len(batch["indices"]), self.train_generator)
            starts, varied = starts.to(device), varied.to(device)

        classes = self.step_classes(starts, varied)
        frames = self._sprites().render(classes.flatten(0, 1))
        return {
            "frames": frames.reshape(*classes.shape[:2], *self.image_shape),
            "factors": self.factor_values(classes),
            "classes": classes,
            "varied": varied,
            "indices": batch["indices"],
        }

    def step_classes(self, starts: Tensor, varied: Tensor) -> Tensor:
        """Return the class of every factor in every frame, ``(batch, seq_len, 5)``."""
        sizes = self._sprites().sizes.to(starts.device)
        frames = torch.arange(self.seq_len, device=starts.device)
        stepped = torch.nn.functional.one_hot(varied, len(sizes))
        steps = frames[None, :, None] * stepped[:, None, :]
        return torch.remainder(starts[:, None, :] + steps, sizes)

    def factor_values(self, classes: Tensor) -> Tensor:
        """Return the factor values ``(batch, seq_len, 5)`` of ``classes``."""
        values = self._sprites().values
        columns = [
            column_values.to(classes.device)[classes[..., column]]
            for column, column_values in enumerate(values)
        ]
        return torch.stack(columns, dim=-1)


def _check_factors(factors: Sequence[str]) -> list[int]:
    """Return the column indices of the stepped ``factors``."""
    names = [factors] if isinstance(factors, str) else list(factors)
    invalid = [name for name in names if name not in STEPPED_FACTORS]
    if not names or invalid or len(set(names)) != len(names):
        raise ValueError(
            f"factors must be distinct names out of {list(STEPPED_FACTORS)}, got "
            f"{names}"
        )
    return [SPRITE_FACTORS.index(name) for name in names]
