"""The data module's error when MNIST is missing and cannot be downloaded."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
from torchvision import datasets

from tvae_lightning.data import TransformingMNISTDataModule

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every torchvision download fail as it does without a network."""

    def fail(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets.mnist, "download_and_extract_archive", fail)


def offline_error(root: Path) -> str:
    datamodule = TransformingMNISTDataModule(root=str(root), download=True)
    with pytest.raises(FileNotFoundError) as error:
        datamodule.prepare_data()
    return str(error.value)


def test_offline_error_names_folder(offline, tmp_path: Path):
    message = offline_error(tmp_path / "empty")
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message


@pytest.mark.parametrize("name", RAW_FILES)
def test_offline_error_names_each_file(offline, tmp_path: Path, name: str):
    assert name in offline_error(tmp_path / "empty")


def test_offline_error_names_root_option(offline, tmp_path: Path):
    assert "--data.root" in offline_error(tmp_path / "empty")


def test_offline_error_says_download_failed(offline, tmp_path: Path):
    assert "download failed" in offline_error(tmp_path / "empty")


def test_present_files_skip_download(offline, mnist_root: Path):
    datamodule = TransformingMNISTDataModule(root=str(mnist_root), download=True)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.train_source) + len(datamodule.val_source) == 64


def test_missing_files_without_download(tmp_path: Path):
    datamodule = TransformingMNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match="download=False"):
        datamodule.setup("fit")
