"""The benchmark scripts run as the README shows and end with their JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


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
        "--seq-len", "4", "--n-caps", "3", "--matmul-size", "128", "--threads", "1",
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


def test_train_throughput_rejects_bad_sizes():
    finished = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_throughput.py"), "--seq-len", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert finished.returncode == 2
    assert "--seq-len must be a positive integer" in finished.stderr


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
