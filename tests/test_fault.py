"""``tvae-cli fit`` killed with SIGKILL mid-training resumes from ``last``.

The run saves a checkpoint after every step, so the kill often lands while a
file is written. The atomic checkpoint writer must still leave every ``.ckpt``
file loadable.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import write_digit_folder

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"
)

START_TIMEOUT_S = 240
EXTRA_STEPS = 3


def cli_command() -> list[str]:
    script = shutil.which("tvae-cli")
    return [script] if script else [sys.executable, "-m", "tvae_lightning.cli"]


def write_config(path: Path, data_root: Path, work: Path) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 100_000,
            "limit_val_batches": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "default_root_dir": str(work),
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {
                        "dirpath": str(work / "checkpoints"),
                        "every_n_train_steps": 1,
                        "save_last": True,
                    },
                }
            ],
        },
        "model": {
            "class_path": "tvae_lightning.TopographicVAE",
            "init_args": {"n_caps": 2, "cap_dim": 4, "seq_len": 4, "time_window": 3},
        },
        "data": {
            "class_path": "tvae_lightning.data.TransformingMNISTDataModule",
            "init_args": {
                "root": str(data_root),
                "seq_len": 4,
                "batch_size": 4,
                "download": False,
            },
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def kill_after_first_checkpoint(command: list[str], folder: Path, cwd: Path) -> None:
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not (folder / "last.ckpt").exists():
            assert process.poll() is None, "fit ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within the timeout"
            time.sleep(0.05)
        assert process.poll() is None, "fit ended before it could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("fault")
    data_root = write_digit_folder(work / "data")
    config = write_config(work / "fit.yaml", data_root, work)
    folder = work / "checkpoints"
    fit = [*cli_command(), "fit", "--config", str(config)]

    kill_after_first_checkpoint(fit, folder, work)
    killed_step = torch.load(folder / "last.ckpt", weights_only=True)["global_step"]

    target = killed_step + EXTRA_STEPS
    # A new root folder, because the CLI refuses to overwrite its config.yaml.
    resume = [
        *fit,
        "--ckpt_path",
        "last",
        "--trainer.max_steps",
        str(target),
        "--trainer.default_root_dir",
        str(work / "resumed"),
    ]
    result = subprocess.run(
        resume, cwd=work, capture_output=True, text=True, timeout=300
    )
    return {"folder": folder, "result": result, "target": target}


@pytest.mark.slow
def test_fault_resume_finishes(fault_run: dict):
    result = fault_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_fault_resume_reaches_max_steps(fault_run: dict):
    last = torch.load(fault_run["folder"] / "last.ckpt", weights_only=True)
    assert last["global_step"] == fault_run["target"]


@pytest.mark.slow
def test_fault_every_checkpoint_loads(fault_run: dict):
    paths = sorted(fault_run["folder"].glob("*.ckpt"))
    assert paths
    for path in paths:
        checkpoint = torch.load(path, weights_only=True)
        assert "state_dict" in checkpoint, path.name
