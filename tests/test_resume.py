"""Exact resume: k steps, a restart from ``last``, then n steps, equals n steps.

Also covers the samplers that make the data stream resumable and the atomic
checkpoint writer.
"""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from tvae_lightning import TopographicVAE
from tvae_lightning.checkpointing import AtomicCheckpointIO, use_atomic_checkpoint_io
from tvae_lightning.cli.main import TVAECLI
from tvae_lightning.data import TransformingMNISTDataModule
from tvae_lightning.data.sampling import (
    ResumableDistributedSampler,
    UnpaddedDistributedSampler,
)

from conftest import write_digit_folder

# 64 training digits minus 13 for validation leave 51: 7 batches of 8 per epoch.
TOTAL_STEPS = 10


def build_trainer(run_dir: Path, max_steps: int, save_every: int) -> L.Trainer:
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        every_n_train_steps=save_every,
        save_last=True,
        save_top_k=-1,
    )
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        deterministic=True,
        logger=CSVLogger(run_dir, name="", version=""),
        callbacks=[checkpoint],
        val_check_interval=3,
        limit_val_batches=2,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def fit(
    data_root: Path,
    run_dir: Path,
    max_steps: int,
    save_every: int,
    ckpt_path: str | None = None,
) -> TopographicVAE:
    L.seed_everything(0)
    model = TopographicVAE(
        n_caps=2, cap_dim=4, seq_len=4, time_window=3, capsule_window=3, lr=1e-3
    )
    datamodule = TransformingMNISTDataModule(
        root=str(data_root), seq_len=4, batch_size=8, download=False, seed=0
    )
    trainer = build_trainer(run_dir, max_steps, save_every)
    trainer.fit(model, datamodule, ckpt_path=ckpt_path)
    return model


def train_losses(run_dir: Path) -> dict[int, float]:
    """Return ``train/loss_step`` by step index from the CSV logger's file."""
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {
        int(row["step"]): float(row["train/loss_step"])
        for row in rows
        if row.get("train/loss_step")
    }


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digit_folder(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def uninterrupted(
    data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TopographicVAE, dict[int, float]]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    model = fit(data_root, run_dir, TOTAL_STEPS, save_every=TOTAL_STEPS)
    return model, train_losses(run_dir)


# Step 5 stops in the middle of the first epoch, step 7 at its end.
@pytest.fixture(scope="module", params=[5, 7], ids=["mid_epoch", "epoch_end"])
def resumed(
    request: pytest.FixtureRequest,
    data_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TopographicVAE, dict[int, float]]:
    stop_step = request.param
    run_dir = tmp_path_factory.mktemp(f"resumed_{stop_step}")
    fit(data_root, run_dir, stop_step, save_every=stop_step)
    model = fit(data_root, run_dir, TOTAL_STEPS, TOTAL_STEPS, ckpt_path="last")
    return model, train_losses(run_dir)


def test_resume_reaches_same_parameters(uninterrupted, resumed):
    expected, _ = uninterrupted
    actual, _ = resumed
    for (name, value), other in zip(
        expected.named_parameters(), actual.parameters(), strict=True
    ):
        assert torch.equal(value, other), name


def test_resume_logs_same_final_loss(uninterrupted, resumed):
    _, expected = uninterrupted
    _, actual = resumed
    last_step = TOTAL_STEPS - 1
    assert actual[last_step] == expected[last_step]


# -- samplers ------------------------------------------------------------------


def test_sampler_order_depends_on_epoch():
    sampler = ResumableDistributedSampler(range(20), seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_sampler_order_is_reproducible():
    first = ResumableDistributedSampler(range(20), seed=3)
    second = ResumableDistributedSampler(range(20), seed=3)
    assert list(first) == list(second)


def test_sampler_ranks_cover_epoch_once_when_divisible():
    shards = [
        list(ResumableDistributedSampler(range(20), 4, rank)) for rank in range(4)
    ]
    assert sorted(index for shard in shards for index in shard) == list(range(20))


def test_sampler_pads_ranks_to_equal_length():
    lengths = [
        len(list(ResumableDistributedSampler(range(21), 4, rank))) for rank in range(4)
    ]
    assert lengths == [6, 6, 6, 6]


def test_sampler_skips_consumed_indices():
    sampler = ResumableDistributedSampler(range(20), seed=3)
    full = list(sampler)
    sampler.advance(8)
    assert list(sampler) == full[8:]


def test_sampler_keeps_position_on_same_epoch():
    sampler = ResumableDistributedSampler(range(20), seed=3)
    sampler.advance(8)
    sampler.set_epoch(0)
    assert sampler.position == 8


def test_sampler_resets_position_on_new_epoch():
    sampler = ResumableDistributedSampler(range(20), seed=3)
    sampler.advance(8)
    sampler.set_epoch(1)
    assert sampler.position == 0


def test_sampler_state_round_trip():
    saved = ResumableDistributedSampler(range(20), seed=3)
    saved.set_epoch(2)
    saved.advance(6)
    restored = ResumableDistributedSampler(range(20), seed=3)
    restored.load_state_dict(saved.state_dict())
    assert list(restored) == list(saved)


def test_sampler_finished_epoch_resumes_at_next():
    saved = ResumableDistributedSampler(range(20), seed=3)
    saved.advance(20)
    restored = ResumableDistributedSampler(range(20), seed=3)
    restored.load_state_dict(saved.state_dict())
    assert (restored.epoch, restored.position) == (1, 0)


def test_sampler_other_world_size_restarts_epoch():
    saved = ResumableDistributedSampler(range(20), 2, 0)
    saved.advance(4)
    restored = ResumableDistributedSampler(range(20), 4, 0)
    restored.load_state_dict(saved.state_dict())
    assert restored.position == 0


def test_sampler_rejects_rank_out_of_range():
    with pytest.raises(ValueError, match=r"rank must be in \[0, num_replicas\)"):
        ResumableDistributedSampler(range(20), num_replicas=2, rank=2)


@pytest.mark.parametrize("size", [13, 14])
def test_unpadded_sampler_covers_each_index_once(size: int):
    shards = [
        list(UnpaddedDistributedSampler(range(size), 2, rank)) for rank in range(2)
    ]
    assert sorted(shards[0] + shards[1]) == list(range(size))


def test_unpadded_sampler_length_matches_iteration():
    sampler = UnpaddedDistributedSampler(range(13), 2, 1)
    assert len(sampler) == len(list(sampler))


# -- atomic checkpoint writes --------------------------------------------------


class Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError("stand-in for a crash while saving")


def test_atomic_io_writes_loadable_file(tmp_path: Path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 3


def test_atomic_io_failed_save_keeps_previous_file(tmp_path: Path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(3)}, path)
    with pytest.raises(pickle.PicklingError):
        io.save_checkpoint({"step": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["step"] == 3


def test_atomic_io_failed_save_leaves_no_temporary(tmp_path: Path):
    io = AtomicCheckpointIO()
    with pytest.raises(pickle.PicklingError):
        io.save_checkpoint({"step": Unpicklable()}, tmp_path / "last.ckpt")
    assert os.listdir(tmp_path) == []


def test_use_atomic_io_replaces_default():
    trainer = L.Trainer(accelerator="cpu", logger=False)
    use_atomic_checkpoint_io(trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_use_atomic_io_keeps_user_plugin():
    class CustomIO(TorchCheckpointIO):
        pass

    trainer = L.Trainer(accelerator="cpu", logger=False, plugins=[CustomIO()])
    use_atomic_checkpoint_io(trainer)
    assert type(trainer.strategy.checkpoint_io) is CustomIO


def test_cli_trainer_uses_atomic_io(data_root: Path, tmp_path: Path):
    cli = TVAECLI(
        args=[
            "--model.class_path",
            "tvae_lightning.TopographicVAE",
            "--model.n_caps",
            "2",
            "--model.cap_dim",
            "4",
            "--model.seq_len",
            "4",
            "--model.time_window",
            "3",
            "--data.class_path",
            "tvae_lightning.data.TransformingMNISTDataModule",
            "--data.root",
            str(data_root),
            "--data.seq_len",
            "4",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        run=False,
    )
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
