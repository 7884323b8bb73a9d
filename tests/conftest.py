"""Shared fixtures: small IDX files that torchvision really reads."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """Write uint8 images ``(N, H, W)`` as an uncompressed IDX3 file."""
    count, height, width = images.shape
    header = struct.pack(">IIII", IMAGE_MAGIC, count, height, width)
    path.write_bytes(header + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """Write uint8 labels ``(N,)`` as an uncompressed IDX1 file."""
    header = struct.pack(">II", LABEL_MAGIC, len(labels))
    path.write_bytes(header + labels.astype(np.uint8).tobytes())


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return blurry off-centre blobs that look enough like digits to rotate."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:28, 0:28]
    images = np.zeros((count, 28, 28), dtype=np.float64)
    for index in range(count):
        for _ in range(3):
            cy, cx = rng.uniform(8, 20, size=2)
            width = rng.uniform(1.5, 3.5)
            images[index] += np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / width**2)
    images = np.clip(images / images.max(axis=(1, 2), keepdims=True), 0, 1)
    labels = rng.integers(0, 10, size=count)
    return (images * 255).astype(np.uint8), labels


def write_digit_folder(
    root: Path, folder: str = "MNIST", num_train: int = 64, num_test: int = 32
) -> Path:
    """Write the four raw IDX files of a small digit set under ``root/folder/raw``."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = synthetic_digits(num_train, seed=1)
    test_images, test_labels = synthetic_digits(num_test, seed=2)
    write_idx_images(raw / "train-images-idx3-ubyte", train_images)
    write_idx_labels(raw / "train-labels-idx1-ubyte", train_labels)
    write_idx_images(raw / "t10k-images-idx3-ubyte", test_images)
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", test_labels)
    return root


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """A data root holding a 64 + 32 image MNIST in torchvision's layout."""
    return write_digit_folder(tmp_path / "data")
