"""``tvae-cli-data preview`` writes PNG grids of sequences from training configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tvae_lightning.cli.preview import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def grid_size(rows: int, columns: int, side: int, padding: int = 2) -> tuple[int, int]:
    """Return (width, height) of a make_grid of square frames."""
    return columns * (side + padding) + padding, rows * (side + padding) + padding


def test_preview_writes_mnist_grid(mnist_root: Path, tmp_path: Path):
    out = tmp_path / "grids" / "combined.png"
    main([
        "preview", "--config", str(CONFIGS / "combined.yaml"), "--out", str(out),
        "--rows", "3", "--data.root", str(mnist_root), "--data.download", "false",
    ])
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == grid_size(rows=3, columns=18, side=28)
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.max() > 0


def test_preview_writes_dsprites_grid(tmp_path: Path):
    out = tmp_path / "dsprites.png"
    main([
        "preview", "--config", str(CONFIGS / "dsprites.yaml"), "--out", str(out),
        "--rows", "2", "--data.root", str(tmp_path), "--split", "test",
    ])
    with Image.open(out) as image:
        image.load()
        assert image.size == grid_size(rows=2, columns=15, side=64)


def test_preview_test_split_shows_held_out_motion(mnist_root: Path, tmp_path: Path):
    out = tmp_path / "generalisation.png"
    main([
        "preview", "--config", str(CONFIGS / "generalisation.yaml"), "--out", str(out),
        "--rows", "2", "--split", "test", "--data.root", str(mnist_root),
        "--data.download", "false",
    ])
    assert out.stat().st_size > 0


def test_preview_rejects_zero_rows_before_loading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    # The data root is empty, so loading the data would fail with another error.
    with pytest.raises(SystemExit):
        main([
            "preview", "--config", str(CONFIGS / "colour.yaml"),
            "--out", str(tmp_path / "x.png"), "--rows", "0",
            "--data.root", str(tmp_path), "--data.download", "false",
        ])
    assert "--rows must be a positive integer, got 0" in capsys.readouterr().err
