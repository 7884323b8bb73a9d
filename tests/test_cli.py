"""``tvae-cli`` end to end on small IDX files that torchvision reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tvae_lightning import TopographicVAE
from tvae_lightning.cli import main

from conftest import write_digit_folder

REPO = Path(__file__).resolve().parents[1]
ROT_CONFIG = REPO / "configs" / "rot.yaml"

# Small networks keep the run to seconds; the windows still wrap in both directions.
SMALL_MODEL = [
    "--model.n_caps", "3", "--model.cap_dim", "6", "--model.seq_len", "6",
    "--model.time_window", "5", "--data.seq_len", "6",
]


def fit_args(root: Path, out: Path) -> list[str]:
    return [
        "fit", "--config", str(ROT_CONFIG),
        "--data.root", str(root), "--data.download", "false",
        "--data.batch_size", "4",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2",
        "--trainer.default_root_dir", str(out),
        "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "1",
        *SMALL_MODEL,
    ]


@pytest.fixture(scope="module")
def module_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digit_folder(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def fitted_run(module_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    main(fit_args(module_root, out))
    return out / "lightning_logs" / "version_0"


def test_fit_writes_checkpoint(fitted_run: Path):
    checkpoints = sorted(path.name for path in (fitted_run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints


def test_fit_logs_equivariance_error(fitted_run: Path):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(str(fitted_run))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("val/equivariance_error", "val/loss", "val/kl_u", "train/loss_step"):
        assert tag in tags


def test_checkpoint_reloads_same_weights(fitted_run: Path):
    path = fitted_run / "checkpoints" / "last.ckpt"
    model = TopographicVAE.load_from_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]

    assert model.seq_len == 6
    assert model.topography.time_window == 5
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_test_subcommand_loads_checkpoint(
    fitted_run: Path, module_root: Path, tmp_path: Path
):
    path = fitted_run / "checkpoints" / "last.ckpt"
    args = [
        "test", "--config", str(ROT_CONFIG),
        "--data.root", str(module_root), "--data.download", "false",
        "--trainer.default_root_dir", str(tmp_path / "test_runs"),
        "--trainer.enable_progress_bar", "false",
        "--ckpt_path", str(path), *SMALL_MODEL,
    ]
    main(args)
    logs = list((tmp_path / "test_runs").rglob("events.out.tfevents.*"))
    assert logs


def test_print_config_round_trips(tmp_path: Path):
    printed = subprocess.run(
        [sys.executable, "-m", "tvae_lightning.cli", "fit", "--config",
         str(ROT_CONFIG), "--print_config"],
        capture_output=True, text=True, check=True,
    ).stdout
    config = tmp_path / "printed.yaml"
    config.write_text(printed)

    again = subprocess.run(
        [sys.executable, "-m", "tvae_lightning.cli", "fit", "--config",
         str(config), "--print_config"],
        capture_output=True, text=True, check=True,
    ).stdout

    assert yaml.safe_load(again) == yaml.safe_load(printed)
    assert yaml.safe_load(printed)["model"]["init_args"]["time_window"] == 13


def test_rot_config_has_paper_settings():
    config = yaml.safe_load(ROT_CONFIG.read_text())
    model = config["model"]["init_args"]
    assert config["model"]["class_path"] == "tvae_lightning.TopographicVAE"
    assert (model["n_caps"], model["cap_dim"]) == (18, 18)
    assert (model["time_window"], model["capsule_window"]) == (13, 3)
    assert model["mu_init"] == 30.0
    assert (model["lr"], model["momentum"]) == (1e-4, 0.9)
    assert config["data"]["init_args"]["batch_size"] == 8


def test_misspelled_key_rejected(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  class_path: tvae_lightning.TopographicVAE\n"
                      "  init_args:\n    time_windw: 5\n")
    result = subprocess.run(
        [sys.executable, "-m", "tvae_lightning.cli", "fit", "--config",
         str(ROT_CONFIG), "--config", str(config), "--print_config"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "time_windw" in result.stderr


def test_constructor_error_is_brief(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ROT_CONFIG), "--model.capsule_window", "4"])

    message = str(exit_info.value)
    assert "capsule_window must be an odd integer" in message
    assert "Union subtypes" not in message


def test_checkpoint_of_other_class_rejected(fitted_run: Path, module_root: Path):
    path = fitted_run / "checkpoints" / "last.ckpt"
    vae_config = REPO / "configs" / "table1" / "vae.yaml"
    args = [
        "test", "--config", str(vae_config), "--data.root", str(module_root),
        "--ckpt_path", str(path),
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(args)

    message = str(exit_info.value)
    assert "was saved by tvae_lightning.TopographicVAE" in message
    assert "--model.class_path tvae_lightning.TopographicVAE" in message
