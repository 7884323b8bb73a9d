"""The benchmark scripts run as the README shows and end with their JSON line."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_digit_folder

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import common  # the scripts' shared module, in benchmarks/


def run_script(name: str, *options: str) -> tuple[dict, str]:
    """Run ``benchmarks/<name>`` and return its last line as JSON and its output."""
    finished = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *options],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1]), finished.stdout


def test_train_throughput_reports_rate_and_matmul_fraction():
    result, _ = run_script(
        "train_throughput.py", "--steps", "3", "--warmup", "1", "--batch-size", "2",
        "--seq-len", "4", "--n-caps", "3", "--matmul-size", "256", "--threads", "1",
    )

    assert result["timed_steps"] == 3
    assert (result["batch_size"], result["seq_len"], result["n_caps"]) == (2, 4, 3)
    # The Table 1 window of 13 frames is cut to the 4 frames of the sequence.
    assert result["time_window"] == 4
    assert result["sequences_per_second"] == pytest.approx(
        2000 / result["ms_per_step"], rel=0.01
    )
    assert result["gflop_per_second"] == pytest.approx(
        result["gflop_per_step"] * 1000 / result["ms_per_step"], rel=0.01
    )
    assert result["matmul_fraction"] == pytest.approx(
        result["gflop_per_second"] / result["matmul_gflop_per_second"], rel=0.01
    )
    assert result["peak_memory_mb"] > 0


def test_train_throughput_skips_short_batches(tmp_path: Path):
    # 30 digits leave 24 for training: per epoch one batch of 16 and one of 8.
    # Timing the batch of 8 as 16 sequences would double the rate.
    root = write_digit_folder(tmp_path / "data", num_train=30, num_test=8)
    result, _ = run_script(
        "train_throughput.py", "--steps", "4", "--warmup", "0", "--batch-size", "16",
        "--seq-len", "3", "--n-caps", "2", "--matmul-size", "256", "--threads", "1",
        "--data-root", str(root),
    )

    assert result["timed_steps"] == 2
    assert result["partial_steps"] == 2
    assert result["sequences_per_second"] == pytest.approx(
        16000 / result["ms_per_step"], rel=0.01
    )


def test_train_throughput_reports_lightning_precision():
    # Lightning runs 16-mixed as bf16-mixed on the CPU, and the JSON reports what ran.
    result, _ = run_script(
        "train_throughput.py", "--steps", "1", "--warmup", "0", "--batch-size", "2",
        "--seq-len", "3", "--n-caps", "2", "--matmul-size", "256", "--threads", "1",
        "--precision", "16-mixed",
    )
    assert result["precision"] == "bf16-mixed"


def test_train_throughput_rejects_bad_sizes():
    finished = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_throughput.py"), "--seq-len", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert finished.returncode == 2
    assert "--seq-len must be positive, got 0" in finished.stderr


def usage_error(capsys: pytest.CaptureFixture, check, *args) -> str:
    """Return the usage error message that ``check(parser, *args)`` exits with."""
    with pytest.raises(SystemExit) as exit_info:
        check(argparse.ArgumentParser(prog="benchmark"), *args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_load_config_names_a_missing_file(tmp_path: Path, capsys):
    message = usage_error(capsys, common.load_config, tmp_path / "missing.yaml")
    assert f"cannot read --config {tmp_path / 'missing.yaml'}" in message


def test_load_config_rejects_invalid_yaml(tmp_path: Path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    assert "is not valid YAML" in usage_error(capsys, common.load_config, path)


@pytest.mark.parametrize("text", ["", "- a list\n", "model:\n  class_path: x.Y\n"])
def test_load_config_needs_model_and_data_sections(
    tmp_path: Path, capsys, text: str
):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    message = usage_error(capsys, common.load_config, path)
    assert re.search("needs a '(model|data)' section", message)


def test_negative_threads_are_rejected(capsys):
    args = argparse.Namespace(threads=-1, device="cpu")
    message = usage_error(capsys, common.check_threads_and_device, args)
    assert "--threads must be 0 (torch's default) or more, got -1" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_rejected(capsys):
    args = argparse.Namespace(threads=0, device="cuda")
    message = usage_error(capsys, common.check_threads_and_device, args)
    assert "--device cuda needs a CUDA GPU" in message


def test_empty_data_root_stops_with_one_line(tmp_path: Path):
    data = common.instantiate(
        {"class_path": "tvae_lightning.data.TransformingMNISTDataModule"},
        root=str(tmp_path), download=False,
    )
    with pytest.raises(SystemExit, match="cannot load digits from --data-root"):
        common.setup_data(data, tmp_path)


def test_eval_throughput_compares_batched_and_loops():
    result, output = run_script(
        "eval_throughput.py", "--batches", "1", "--batch-size", "2",
        "--num-samples", "2", "--threads", "1",
    )

    assert result["speedup_vs_loop"] == pytest.approx(
        result["sequences_per_second"] / result["loop_sequences_per_second"], rel=0.01
    )
    assert result["speedup_vs_reencoding_loop"] == pytest.approx(
        result["sequences_per_second"]
        / result["reencoding_loop_sequences_per_second"],
        rel=0.01,
    )
    # Both methods see the same frames and capsules at the posterior means.
    assert result["max_equivariance_difference"] < 1e-3
    assert "speedup" in output


@pytest.mark.slow
def test_train_scaling_prints_a_table_per_quantity():
    results, output = run_script(
        "train_scaling.py", "--steps", "1", "--warmup", "1", "--threads", "1",
        "--batch-sizes", "2", "--seq-lens", "3", "4", "--n-caps", "2",
    )

    assert [row["seq_len"] for row in results["seq_len"]] == [3, 4]
    assert [row["n_caps"] for row in results["n_caps"]] == [2]
    assert results["batch_size"][0]["batch_size"] == 2
    separators = [line for line in output.splitlines() if line.startswith("| ---: |")]
    assert len(separators) == 3
