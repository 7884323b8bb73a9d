"""TransformingMNISTDataModule: batches, determinism, splits and digit data sets."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tvae_lightning import TopographicVAE
from tvae_lightning.data import TRANSFORMATIONS, TransformingMNISTDataModule

from conftest import synthetic_digits, write_digit_folder


def make_module(root: Path, **kwargs) -> TransformingMNISTDataModule:
    kwargs.setdefault("download", False)
    module = TransformingMNISTDataModule(root=str(root), **kwargs)
    module.setup("fit")
    return module


def batches(module: TransformingMNISTDataModule, loader) -> list[dict]:
    return [module.on_after_batch_transfer(batch, 0) for batch in loader]


@pytest.mark.parametrize("name", sorted(TRANSFORMATIONS))
def test_batch_keys_and_shapes(mnist_root: Path, name: str):
    module = make_module(mnist_root, transformation=name, batch_size=4)
    batch = batches(module, module.val_dataloader())[0]
    factors = len(module.factor_names)

    assert batch["frames"].shape == (4, 18, 3, 28, 28)
    assert batch["factors"].shape == (4, 18, factors)
    assert batch["varied"].shape == (4,)
    assert batch["varied"].dtype == torch.long
    assert batch["labels"].shape == (4,)
    assert batch["frames"].min() >= 0.0
    assert batch["frames"].max() <= 1.0


def test_combined_batch_varies_the_named_factor(mnist_root: Path):
    module = make_module(mnist_root, transformation="combined", batch_size=13)
    for batch in batches(module, module.val_dataloader()):
        changing = (batch["factors"][:, 1:] != batch["factors"][:, :1]).any(dim=1)
        assert torch.equal(changing.sum(dim=1), torch.ones_like(batch["varied"]))
        assert torch.equal(changing.long().argmax(dim=1), batch["varied"])


def test_validation_sequences_repeat_every_epoch(mnist_root: Path):
    module = make_module(mnist_root, transformation="combined")
    first = batches(module, module.val_dataloader())
    second = batches(module, module.val_dataloader())
    for left, right in zip(first, second):
        assert torch.equal(left["frames"], right["frames"])
        assert torch.equal(left["factors"], right["factors"])


def test_validation_sequences_equal_across_instances(mnist_root: Path):
    first = make_module(mnist_root, transformation="combined", seed=7)
    second = make_module(mnist_root, transformation="combined", seed=7)
    for left, right in zip(
        batches(first, first.val_dataloader()), batches(second, second.val_dataloader())
    ):
        assert torch.equal(left["frames"], right["frames"])


def test_test_sequences_equal_across_instances(mnist_root: Path):
    loaded = []
    for _ in range(2):
        module = make_module(mnist_root, transformation="scale")
        module.setup("test")
        loaded.append(batches(module, module.test_dataloader())[0])
    assert torch.equal(loaded[0]["frames"], loaded[1]["frames"])


def test_training_sequences_repeat_with_seed(mnist_root: Path):
    first = make_module(mnist_root, transformation="combined", seed=2)
    second = make_module(mnist_root, transformation="combined", seed=2)
    left = batches(first, first.train_dataloader())[0]
    right = batches(second, second.train_dataloader())[0]
    assert torch.equal(left["frames"], right["frames"])
    assert torch.equal(left["factors"], right["factors"])


def test_training_sequences_change_with_seed(mnist_root: Path):
    first = make_module(mnist_root, transformation="combined", seed=2)
    second = make_module(mnist_root, transformation="combined", seed=3)
    left = batches(first, first.train_dataloader())[0]
    right = batches(second, second.train_dataloader())[0]
    assert not torch.equal(left["factors"], right["factors"])


def test_state_dict_restores_training_sequences(mnist_root: Path):
    module = make_module(mnist_root, transformation="combined")
    images = next(iter(module.train_dataloader()))
    module.make_sequences(images)
    state = module.state_dict()
    expected = module.make_sequences(images)

    restored = make_module(mnist_root, transformation="combined", seed=11)
    restored.load_state_dict(state)
    result = restored.make_sequences(images)
    assert torch.equal(result["factors"], expected["factors"])


def test_held_out_motion_only_in_test_batches(mnist_root: Path):
    module = make_module(
        mnist_root, transformation="combined", held_out="rotation_colour"
    )
    module.setup("test")
    held_out = module.sequences.num_motions - 1

    for batch in batches(module, module.val_dataloader()):
        changing = (batch["factors"][:, 1:] != batch["factors"][:, :1]).any(dim=1)
        assert torch.equal(changing.sum(dim=1), torch.ones_like(batch["varied"]))
    for batch in batches(module, module.test_dataloader()):
        changing = (batch["factors"][:, 1:] != batch["factors"][:, :1]).any(dim=1)
        assert changing[:, :2].all()
        assert not changing[:, 2].any()
    assert module.test_source.motions.eq(held_out).all()


def test_start_indices_and_values_reach_batches(mnist_root: Path):
    module = make_module(
        mnist_root, transformation="rotation", seq_len=4,
        values={"rotation": [0.0, 45.0, 90.0]}, start_indices=[2],
    )
    batch = batches(module, module.val_dataloader())[0]
    expected = torch.tensor([90.0, 0.0, 45.0, 90.0])
    assert torch.equal(batch["factors"][0, :, 0], expected)
    assert module.seq_len == 4


@pytest.mark.parametrize(("dataset", "folder"), [
    ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST"),
])
def test_other_digit_sets_load_through_torchvision(
    tmp_path: Path, dataset: str, folder: str
):
    root = write_digit_folder(tmp_path / "data", folder=folder, num_train=20)
    module = make_module(
        root, dataset=dataset, transformation="colour", val_fraction=0.25
    )
    module.setup("test")
    train_images, _ = synthetic_digits(20, seed=1)
    test_images, _ = synthetic_digits(32, seed=2)

    loaded = torch.cat([module.train_source.images, module.val_source.images])
    assert sorted(loaded.flatten(1).sum(1).tolist()) == sorted(
        torch.from_numpy(train_images.astype(np.int64)).flatten(1).sum(1).tolist()
    )
    assert torch.equal(module.test_source.images, torch.from_numpy(test_images))
    assert batches(module, module.val_dataloader())[0]["frames"].shape[1:] == (
        18, 3, 28, 28,
    )


def test_missing_other_digit_set_names_its_folder(mnist_root: Path):
    module = TransformingMNISTDataModule(root=str(mnist_root), dataset="kmnist",
                                         download=False)
    with pytest.raises(FileNotFoundError, match="KMNIST"):
        module.setup("fit")


def test_trainer_fits_tvae_on_combined_sequences(mnist_root: Path, tmp_path: Path):
    model = TopographicVAE(n_caps=3, cap_dim=6, seq_len=6, time_window=5,
                           capsule_window=3)
    module = TransformingMNISTDataModule(
        root=str(mnist_root), transformation="combined", seq_len=6, batch_size=4,
        download=False,
    )
    trainer = L.Trainer(
        max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(tmp_path), accelerator="cpu",
    )
    trainer.fit(model, datamodule=module)
    assert trainer.global_step == 2
