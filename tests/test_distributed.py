"""Two CPU processes under DDP (gloo) against one process on the same checkpoint.

``tvae-cli`` runs in a subprocess, so Lightning's launcher can start the second
process the way it does on a cluster. The validation split has 13 sequences, an
odd number, so the processes hold different numbers of them: the unpadded
evaluation sampler and the summed metric states must still give the numbers of
one process.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from tvae_lightning import TopographicVAE
from tvae_lightning.data import TransformingMNISTDataModule

from conftest import write_digit_folder

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="needs torch.distributed with the gloo backend",
)

SEED = 0
BATCH_SIZE = 4
MAX_STEPS = 2
MODEL_ARGS = {"n_caps": 2, "cap_dim": 4, "seq_len": 4, "time_window": 3}
VAL_METRICS = (
    "val/loss",
    "val/reconstruction",
    "val/kl_z",
    "val/kl_u",
    "val/equivariance_error",
)


def cli_command() -> list[str]:
    """Return the ``tvae-cli`` console script, or the module when it is not on PATH."""
    script = shutil.which("tvae-cli")
    return [script] if script else [sys.executable, "-m", "tvae_lightning.cli"]


def write_config(path: Path, data_root: Path, log_dir: Path, ckpt_dir: Path) -> Path:
    config = {
        "seed_everything": SEED,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": MAX_STEPS,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(log_dir), "name": "", "version": ""},
            },
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(ckpt_dir), "save_last": True},
                }
            ],
        },
        "model": {
            "class_path": "tvae_lightning.TopographicVAE",
            "init_args": MODEL_ARGS,
        },
        "data": {
            "class_path": "tvae_lightning.data.TransformingMNISTDataModule",
            "init_args": {
                "root": str(data_root),
                "seq_len": MODEL_ARGS["seq_len"],
                "batch_size": BATCH_SIZE,
                "download": False,
                "seed": SEED,
            },
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [*cli_command(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def read_last_metrics(log_dir: Path) -> dict[str, float]:
    """Return the last logged value of each column of the CSV logger's file."""
    values: dict[str, float] = {}
    with open(log_dir / "metrics.csv", newline="") as file:
        for row in csv.DictReader(file):
            values.update({key: float(value) for key, value in row.items() if value})
    return values


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fit for two steps and validate the last checkpoint, each on 2 processes."""
    work = tmp_path_factory.mktemp("ddp")
    data_root = write_digit_folder(work / "data")
    ckpt_dir = work / "checkpoints"
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]

    fit_config = write_config(work / "fit.yaml", data_root, work / "fit_logs", ckpt_dir)
    run_cli(["fit", "--config", str(fit_config), *ddp], cwd=work)

    val_logs = work / "validate_logs"
    val_config = write_config(work / "validate.yaml", data_root, val_logs, ckpt_dir)
    checkpoint = ckpt_dir / "last.ckpt"
    run_cli(
        ["validate", "--config", str(val_config), *ddp, "--ckpt_path", str(checkpoint)],
        cwd=work,
    )
    return {"data": data_root, "checkpoint": checkpoint, "validate_logs": val_logs}


@pytest.fixture(scope="module")
def single_process_metrics(ddp_run: dict[str, Path]) -> dict[str, float]:
    model = TopographicVAE.load_from_checkpoint(ddp_run["checkpoint"])
    datamodule = TransformingMNISTDataModule(
        root=str(ddp_run["data"]),
        seq_len=MODEL_ARGS["seq_len"],
        batch_size=BATCH_SIZE,
        download=False,
        seed=SEED,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (metrics,) = trainer.validate(model, datamodule)
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", VAL_METRICS)
def test_ddp_validation_equals_single_process(
    ddp_run: dict[str, Path], single_process_metrics: dict[str, float], name: str
):
    ddp_metrics = read_last_metrics(ddp_run["validate_logs"])
    expected = torch.tensor(single_process_metrics[name], dtype=torch.float64)
    actual = torch.tensor(ddp_metrics[name], dtype=torch.float64)
    assert torch.allclose(actual, expected, rtol=1e-6, atol=1e-6), (
        name,
        actual,
        expected,
    )


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_ddp_seeds_train_generator_per_rank(ddp_run: dict[str, Path], rank: int):
    # Each training batch draws its sequences once from the generator of its
    # process, seeded with seed + 1000 * rank when the rank is known.
    checkpoint = torch.load(ddp_run["checkpoint"], weights_only=True)
    states = checkpoint["TransformingMNISTDataModule"]["train_generators"]
    datamodule = TransformingMNISTDataModule(seq_len=MODEL_ARGS["seq_len"])
    generator = torch.Generator().manual_seed(SEED + 1000 * rank)
    for _ in range(checkpoint["global_step"]):
        datamodule.sequences.sample(BATCH_SIZE, generator)

    assert len(states) == 2
    assert torch.equal(states[rank], generator.get_state())


@pytest.mark.slow
def test_ddp_ranks_draw_different_sequences(ddp_run: dict[str, Path]):
    checkpoint = torch.load(ddp_run["checkpoint"], weights_only=True)
    states = checkpoint["TransformingMNISTDataModule"]["train_generators"]
    assert not torch.equal(states[0], states[1])
