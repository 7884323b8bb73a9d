"""``tvae-cli-results``: test records, fallbacks to logger files, the Markdown table."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from tvae_lightning import VAE, TopographicVAE
from tvae_lightning.cli.results import (
    RunResult,
    format_table,
    main,
    read_model,
    read_run,
)
from tvae_lightning.models.base import TEST_METRICS_FILE

FIT_STEPS = 3


class RandomSequences(L.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.frames = torch.rand(8, 4, 1, 4, 4, generator=generator)

    def _loader(self):
        items = [{"frames": frames} for frames in self.frames]
        return torch.utils.data.DataLoader(items, batch_size=4)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()

    def test_dataloader(self):
        return self._loader()


def small_tvae() -> TopographicVAE:
    return TopographicVAE(
        n_caps=2, cap_dim=4, seq_len=4, time_window=3, capsule_window=3,
        image_shape=(1, 4, 4), eval_num_samples=2,
    )


def quiet(**kwargs) -> L.Trainer:
    return L.Trainer(enable_progress_bar=False, enable_model_summary=False, **kwargs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lightning_logs with a short fit (version_0) and a test of its checkpoint."""
    root = tmp_path_factory.mktemp("runs")
    trainer = quiet(max_steps=FIT_STEPS, limit_val_batches=1, default_root_dir=root)
    trainer.fit(small_tvae(), datamodule=RandomSequences())
    checkpoint = trainer.checkpoint_callback.best_model_path

    tester = quiet(default_root_dir=root)
    tester.test(small_tvae(), datamodule=RandomSequences(), ckpt_path=checkpoint)
    return root / "lightning_logs"


def test_test_writes_record_in_log_dir(runs: Path):
    assert (runs / "version_1" / TEST_METRICS_FILE).is_file()


def test_record_counts_steps_of_checkpoint(runs: Path):
    record = json.loads((runs / "version_1" / TEST_METRICS_FILE).read_text())
    assert record["global_step"] == FIT_STEPS


def test_record_names_model_and_windows(runs: Path):
    record = json.loads((runs / "version_1" / TEST_METRICS_FILE).read_text())
    assert (record["model"], record["time_window"], record["capsule_window"]) == (
        "TopographicVAE", 3, 3,
    )


def test_record_holds_test_metrics(runs: Path):
    record = json.loads((runs / "version_1" / TEST_METRICS_FILE).read_text())
    assert {"test/equivariance_error", "test/log_likelihood"} <= set(record["metrics"])


def test_results_table_row_of_tested_run(runs: Path, tmp_path: Path):
    output = tmp_path / "results.md"
    main([str(runs), "--output", str(output)])

    rows = output.read_text().splitlines()
    assert len(rows) == 3
    cells = [cell.strip() for cell in rows[2].strip("|").split("|")]
    assert cells[1:4] == ["TVAE", "3", "3"]
    assert cells[-1] == str(FIT_STEPS)


def test_results_skip_untested_run(runs: Path, tmp_path: Path):
    output = tmp_path / "results.md"
    main([str(runs), "--output", str(output)])
    assert "version_0" not in output.read_text()


def test_results_read_event_files_without_record(runs: Path, tmp_path: Path):
    folder = tmp_path / "copy"
    shutil.copytree(runs / "version_1", folder)
    (folder / TEST_METRICS_FILE).unlink()

    result = read_run(folder)

    record = json.loads((runs / "version_1" / TEST_METRICS_FILE).read_text())
    expected = record["metrics"]["test/log_likelihood"]
    assert result.metrics["test/log_likelihood"] == pytest.approx(expected)


def test_results_event_fallback_reads_windows_from_hparams(
    runs: Path, tmp_path: Path
):
    folder = tmp_path / "copy"
    shutil.copytree(runs / "version_1", folder)
    (folder / TEST_METRICS_FILE).unlink()

    result = read_run(folder)

    assert (result.time_window, result.capsule_window) == (3, 3)


def test_results_read_metrics_csv(tmp_path: Path):
    logger = CSVLogger(tmp_path, name="csv")
    trainer = quiet(logger=logger, default_root_dir=tmp_path)
    trainer.test(small_tvae(), datamodule=RandomSequences())
    folder = Path(logger.log_dir)
    (folder / TEST_METRICS_FILE).unlink()

    result = read_run(folder)

    assert "test/equivariance_error" in result.metrics


def test_results_tensorboard_record_written(tmp_path: Path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = quiet(logger=logger, default_root_dir=tmp_path)
    trainer.test(small_tvae(), datamodule=RandomSequences())
    assert (Path(logger.log_dir) / TEST_METRICS_FILE).is_file()


def test_results_no_record_without_logger(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = quiet(logger=False, default_root_dir=tmp_path)
    trainer.test(small_tvae(), datamodule=RandomSequences())
    assert not list(tmp_path.rglob(TEST_METRICS_FILE))


def test_read_model_from_cli_config(tmp_path: Path):
    config = {
        "model": {
            "class_path": "tvae_lightning.BubbleVAE",
            "init_args": {"time_window": 5, "capsule_window": 3},
        }
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert read_model(tmp_path) == ("BubbleVAE", 5, 3)


def test_read_model_vae_has_no_windows(tmp_path: Path):
    config = {"model": {"class_path": "tvae_lightning.VAE", "init_args": {}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert read_model(tmp_path) == ("VAE", None, None)


def test_vae_record_has_no_windows(tmp_path: Path):
    model = VAE(n_caps=2, cap_dim=4, seq_len=4, image_shape=(1, 4, 4),
                eval_num_samples=2)
    logger = TensorBoardLogger(tmp_path, name="tb")
    quiet(logger=logger, default_root_dir=tmp_path).test(
        model, datamodule=RandomSequences()
    )
    record = json.loads((Path(logger.log_dir) / TEST_METRICS_FILE).read_text())
    assert (record["time_window"], record["capsule_window"]) == (None, None)


def test_format_table_dashes_for_missing_values():
    table = format_table([RunResult(run="r", model="VAE", metrics={})])
    assert table.splitlines()[2] == "| r | VAE | - | - | - | - | - |"


def test_format_table_capcorr_columns():
    result = RunResult(
        run="r", model="TopographicVAE", time_window=15, capsule_window=1, steps=10,
        metrics={
            "test/equivariance_error": 1234.56, "test/log_likelihood": -98.765,
            "test/capcorr_x": 0.9876, "test/capcorr_scale": None,
        },
    )
    lines = format_table([result]).splitlines()
    assert lines[0].endswith("| CapCorr scale | CapCorr x | steps trained |")
    assert lines[2] == "| r | TVAE | 15 | 1 | 1234.6 | -98.77 | - | 0.988 | 10 |"


def test_results_missing_folder_exits(tmp_path: Path):
    with pytest.raises(SystemExit, match="not found"):
        main([str(tmp_path / "absent")])


def test_results_without_metrics_exits(tmp_path: Path):
    with pytest.raises(SystemExit, match="no test metrics"):
        main([str(tmp_path)])


def test_results_console_script_installed():
    scripts = {
        entry.name: entry.value for entry in entry_points(group="console_scripts")
    }
    assert scripts.get("tvae-cli-results") == "tvae_lightning.cli.results:main"
