"""``tvae-cli predict`` end to end: completions and their errors on disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import write_digit_folder
from PIL import Image

from tvae_lightning.cli import main

ROT_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "rot.yaml")
SEQ_LEN = 4
BATCH_SIZE = 4
SMALL_MODEL = [
    "--model.n_caps", "3",
    "--model.cap_dim", "4",
    "--model.seq_len", str(SEQ_LEN),
    "--model.time_window", "3",
    "--data.seq_len", str(SEQ_LEN),
    "--data.batch_size", str(BATCH_SIZE),
    "--data.download", "false",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Data root, run folder and ``last.ckpt`` of a 2-step fit of configs/rot.yaml."""
    folder = tmp_path_factory.mktemp("predict")
    root = write_digit_folder(folder / "data")
    main(
        [
            "fit", "--config", ROT_CONFIG, *SMALL_MODEL,
            "--data.root", str(root),
            "--trainer.max_steps", "2",
            "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(folder),
        ]
    )
    checkpoint = folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    return root, folder, checkpoint


def predict(root: Path, folder: Path, checkpoint: Path, *extra: str) -> None:
    main(
        [
            "predict", "--config", ROT_CONFIG, *SMALL_MODEL,
            "--data.root", str(root),
            "--ckpt_path", str(checkpoint),
            "--trainer.limit_predict_batches", "2",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(folder),
            "--return_predictions", "false",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def completions(trained) -> Path:
    """Output folder of the CompletionWriter that configs/rot.yaml lists."""
    root, folder, checkpoint = trained
    predict(root, folder, checkpoint)
    return folder / "lightning_logs" / "version_1" / "completions"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_fit_writes_checkpoint(trained) -> None:
    _, _, checkpoint = trained

    assert checkpoint.is_file()


def test_predict_writes_png_per_batch(completions: Path) -> None:
    names = sorted(path.name for path in completions.glob("*.png"))

    assert names == ["completion_batch00000.png", "completion_batch00001.png"]
    with Image.open(completions / names[0]) as image:
        image.load()
        # 4 sequences of true over completed frames: 8 rows of 4 frames.
        assert image.size == (SEQ_LEN * 30 + 2, 2 * BATCH_SIZE * 30 + 2)


def test_predict_writes_row_per_sequence_and_frame(completions: Path) -> None:
    rows = read_rows(completions / "frame_errors.csv")

    assert len(rows) == 2 * BATCH_SIZE * SEQ_LEN
    assert list(rows[0]) == [
        "sequence", "frame", "offset", "observed", "mse", "bce", "repeat_mse"
    ]
    assert sorted({int(row["sequence"]) for row in rows}) == list(range(8))
    assert [row["offset"] for row in rows[:SEQ_LEN]] == ["0", "1", "2", "3"]
    assert [row["observed"] for row in rows[:SEQ_LEN]] == ["1", "0", "0", "0"]


def test_predict_summary_averages_frame_rows(completions: Path) -> None:
    rows = read_rows(completions / "frame_errors.csv")
    summary = json.loads((completions / "completion_errors.json").read_text())

    assert summary["num_observed"] == 1
    assert summary["num_sequences"] == 2 * BATCH_SIZE
    for entry in summary["frames"]:
        frame_rows = [row for row in rows if int(row["frame"]) == entry["frame"]]
        mean_mse = sum(float(row["mse"]) for row in frame_rows) / len(frame_rows)
        assert entry["mse"] == pytest.approx(mean_mse, rel=1e-6)


def test_predict_repeat_baseline_is_zero_at_observed_frame(completions: Path) -> None:
    summary = json.loads((completions / "completion_errors.json").read_text())

    assert summary["frames"][0]["repeat_mse"] == 0.0
    assert summary["frames"][1]["repeat_mse"] > 0.0


def test_predict_writes_errors_by_offset(completions: Path) -> None:
    rows = read_rows(completions / "completion_errors_by_offset.csv")

    assert [row["offset"] for row in rows] == ["0", "1", "2", "3"]


def test_predict_appended_writer_takes_options(trained, tmp_path: Path) -> None:
    root, folder, checkpoint = trained
    output = tmp_path / "out"

    predict(
        root, folder, checkpoint,
        "--trainer.callbacks+=tvae_lightning.callbacks.CompletionWriter",
        "--trainer.callbacks.output_dir", str(output),
        "--trainer.callbacks.num_observed", "2",
        "--trainer.callbacks.average", "true",
    )

    summary = json.loads((output / "completion_errors.json").read_text())
    assert summary["num_observed"] == 2
    assert summary["average"] is True
    assert (output / "completion_batch00001.png").is_file()
