"""Loading digit-like image sets through torchvision."""

from __future__ import annotations

import logging
import math
import os
import struct
from urllib.error import URLError

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets

log = logging.getLogger(__name__)

DIGIT_DATASETS: dict[str, type[datasets.MNIST]] = {
    "mnist": datasets.MNIST,
    "fashion_mnist": datasets.FashionMNIST,
    "kmnist": datasets.KMNIST,
}

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Magic numbers of uint8 IDX files: 0x0803 for 3-D images, 0x0801 for labels.
IDX_MAGIC = {"images": 2051, "labels": 2049}


def digit_dataset_class(name: str) -> type[datasets.MNIST]:
    """Return the torchvision class of the digit data set called ``name``."""
    if name not in DIGIT_DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; valid names are {sorted(DIGIT_DATASETS)}"
        )
    return DIGIT_DATASETS[name]


def check_digit_arguments(dataset: str, batch_size: int, val_fraction: float) -> None:
    """Raise ``ValueError`` for an unknown data set or an invalid loader setting."""
    digit_dataset_class(dataset)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")


def split_train_val(count: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Return the training and validation indices of a seeded random split."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(count, generator=generator)
    num_val = int(round(count * val_fraction))
    return order[num_val:], order[:num_val]


def raw_folder(root: str, name: str) -> str:
    """Return the folder where torchvision looks for the raw IDX files."""
    return os.path.join(root, digit_dataset_class(name).__name__, "raw")


def missing_data_message(root: str, name: str, reason: str) -> str:
    folder = raw_folder(root, name)
    return (
        f"{name} files not found in {folder!r} and {reason}. Expected the files "
        f"{', '.join(RAW_FILES)} there (uncompressed IDX, as torchvision stores "
        f"them). Copy them into that folder, or pass --data.root with the folder "
        f"that contains {digit_dataset_class(name).__name__}/raw."
    )


def download_digits(root: str, name: str) -> None:
    """Download the data set into ``root`` unless its files are already there.

    Raises:
        FileNotFoundError: the files are missing and the download failed, naming
            the folder, the expected files and the ``--data.root`` option.
    """
    cls = digit_dataset_class(name)
    try:
        cls(root, train=True, download=True)
        cls(root, train=False, download=True)
    except (RuntimeError, URLError, OSError) as error:
        reason = f"the download failed ({type(error).__name__}: {error})"
        raise FileNotFoundError(missing_data_message(root, name, reason)) from error


def load_digits(root: str, name: str, train: bool) -> tuple[Tensor, Tensor]:
    """Load images ``(N, H, W)`` as uint8 and labels ``(N,)`` from ``root``.

    Raises:
        FileNotFoundError: the files are not in ``root``.
        ValueError: a file exists but is not a valid IDX file.
    """
    cls = digit_dataset_class(name)
    try:
        dataset = cls(root, train=train, download=False)
    except RuntimeError as error:
        if "not found" in str(error).lower():
            reason = "download=False was given"
            message = missing_data_message(root, name, reason)
            raise FileNotFoundError(message) from error
        raise _invalid_idx_error(root, name, train, error) from error
    except (AssertionError, ValueError, IndexError) as error:
        # torchvision checks the IDX magic number and sizes with assert.
        raise _invalid_idx_error(root, name, train, error) from error
    except OSError as error:
        folder = raw_folder(root, name)
        raise type(error)(
            f"cannot read the {name} files in {folder!r} ({type(error).__name__}: "
            f"{error}). Make the folder and its files readable, or pass "
            f"--data.root with a readable copy."
        ) from error

    split = "train" if train else "test"
    log.info("Loaded %d %s %s images from %s", len(dataset), name, split, root)
    return dataset.data, dataset.targets


def _invalid_idx_error(
    root: str, name: str, train: bool, error: Exception
) -> ValueError:
    folder = raw_folder(root, name)
    prefix = "train" if train else "t10k"
    files = {
        "images": f"{prefix}-images-idx3-ubyte",
        "labels": f"{prefix}-labels-idx1-ubyte",
    }
    problems = [idx_problem(folder, filename, kind) for kind, filename in files.items()]
    reason = "; ".join(problem for problem in problems if problem)
    if not reason:
        # torchvision's assert messages can be empty.
        reason = f"{type(error).__name__}: {error or 'no detail'}"
    return ValueError(
        f"invalid or truncated IDX file in {folder!r}: {reason}. Replace the "
        f"files with intact copies of {', '.join(RAW_FILES)}."
    )


def idx_problem(folder: str, filename: str, kind: str) -> str | None:
    """Return what is wrong with the uint8 IDX file of ``kind``, or ``None``.

    Checks the magic number (``IDX_MAGIC[kind]``) and that the file size equals
    the header plus one byte per value, as the header's sizes imply.
    """
    path = os.path.join(folder, filename)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        return f"{filename} cannot be read ({type(error).__name__}: {error})"

    if len(data) < 4:
        return f"{filename} has {len(data)} bytes, fewer than the 4-byte magic number"
    (magic,) = struct.unpack(">I", data[:4])
    if magic != IDX_MAGIC[kind]:
        return f"{filename} has magic number {magic}, expected {IDX_MAGIC[kind]}"

    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        return f"{filename} has {len(data)} bytes, fewer than its {header}-byte header"
    sizes = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(sizes)
    if len(data) != expected:
        shape = " x ".join(map(str, sizes))
        return (
            f"{filename} has {len(data)} bytes, expected {expected} (a "
            f"{header}-byte header and {shape} uint8 values)"
        )
    return None


class DigitSource(Dataset):
    """Digit images and labels, indexed a batch at a time.

    ``__getitems__`` returns one dict per batch. ``indices`` contains the sample
    indices, which key the evaluation noise of each sequence. The other entries
    are ``images`` (uint8, ``(batch, H, W)``), ``labels`` and, for fixed
    sequences, ``motions`` ``(batch,)`` and ``starts`` ``(batch, n_factors)``:
    the motion and the start index of every factor of each sequence. Use
    :func:`~tvae_lightning.data.resumable.collate_stacked` as the data loader's
    ``collate_fn``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        motions: Tensor | None = None,
        starts: Tensor | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.motions = motions
        self.starts = starts

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {
            "images": self.images[index],
            "labels": self.labels[index],
            "indices": index,
        }
        if self.motions is not None and self.starts is not None:
            batch["motions"] = self.motions[index]
            batch["starts"] = self.starts[index]
        return batch

