"""``tvae-cli-results``: a Markdown table of the test metrics of finished runs.

Each run folder is a logger's log_dir, such as ``lightning_logs/version_3``.
``test`` writes ``test_metrics.json`` there (see
:meth:`tvae_lightning.models.SequenceVAE.save_test_metrics`), which names the
model, its windows and the steps trained. Folders without that file are read
from their TensorBoard event files or ``metrics.csv``, with the model taken from
``config.yaml`` or ``hparams.yaml``. In that case the steps trained are known
only when the folder also logged training.

Run ``tvae-cli-results lightning_logs`` to tabulate every run below a folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tvae_lightning.models.base import TEST_METRICS_FILE

log = logging.getLogger(__name__)

EVENT_FILE_GLOB = "events.out.tfevents.*"
MODEL_NAMES = {"TopographicVAE": "TVAE"}


@dataclass
class RunResult:
    """Test metrics of one run and what is known of its model."""

    run: str
    model: str = "unknown"
    time_window: int | None = None
    capsule_window: int | None = None
    steps: int | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


# -- finding and reading runs ------------------------------------------------


def find_run_folders(paths: Iterable[Path]) -> list[Path]:
    """Return every folder at or below ``paths`` that contains test results.

    A folder qualifies with ``test_metrics.json``, TensorBoard event files or a
    ``metrics.csv``. Folders are sorted with numbers in names compared as
    numbers, so ``version_10`` follows ``version_9``.
    """
    folders: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"run folder not found: {path}")
        candidates = [path, *(p for p in path.rglob("*") if p.is_dir())]
        for folder in candidates:
            if _has_results(folder):
                folders.add(folder)
    return sorted(folders, key=_natural_key)


def _has_results(folder: Path) -> bool:
    if (folder / TEST_METRICS_FILE).is_file() or (folder / "metrics.csv").is_file():
        return True
    return any(folder.glob(EVENT_FILE_GLOB))


def _natural_key(path: Path) -> list[Any]:
    parts = re.split(r"(\d+)", str(path))
    return [int(part) if part.isdigit() else part for part in parts]


def read_run(folder: Path) -> RunResult | None:
    """Return the test results of a run folder, or ``None`` when it has none."""
    record = folder / TEST_METRICS_FILE
    if record.is_file():
        return read_test_record(record)

    metrics, steps = read_event_files(folder)
    if not metrics and (folder / "metrics.csv").is_file():
        metrics, steps = read_metrics_csv(folder / "metrics.csv")
    if not metrics:
        return None

    result = RunResult(run=str(folder), steps=steps, metrics=metrics)
    result.model, result.time_window, result.capsule_window = read_model(folder)
    return result


def read_test_record(path: Path) -> RunResult:
    """Read a ``test_metrics.json`` written by ``SequenceVAE.save_test_metrics``."""
    record = json.loads(path.read_text())
    return RunResult(
        run=str(path.parent),
        model=record.get("model", "unknown"),
        time_window=record.get("time_window"),
        capsule_window=record.get("capsule_window"),
        steps=record.get("global_step"),
        metrics=record.get("metrics", {}),
    )


def read_event_files(folder: Path) -> tuple[dict[str, float | None], int | None]:
    """Return the last ``test/`` scalars of the folder's event files and the steps.

    The steps are the largest step of any ``train/`` scalar, or ``None`` when
    the folder logged no training: a test of a checkpoint logs at step 0.
    """
    if not any(folder.glob(EVENT_FILE_GLOB)):
        return {}, None
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    # size_guidance 0 keeps every scalar event, not a sample of them.
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()

    metrics: dict[str, float | None] = {}
    steps = None
    for tag in events.Tags()["scalars"]:
        scalars = events.Scalars(tag)
        if tag.startswith("test/") and scalars:
            metrics[tag] = _finite_or_none(scalars[-1].value)
        if tag.startswith("train/") and scalars:
            last = max(event.step for event in scalars)
            steps = last if steps is None else max(steps, last)
    return metrics, steps


def read_metrics_csv(path: Path) -> tuple[dict[str, float | None], int | None]:
    """Return the last ``test/`` values of a ``metrics.csv`` and the steps trained."""
    metrics: dict[str, float | None] = {}
    steps = None
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            has_train = any(k.startswith("train/") and v for k, v in row.items())
            if has_train and row.get("step"):
                steps = max(steps or 0, int(float(row["step"])))
            for name, value in row.items():
                if name.startswith("test/") and value:
                    metrics[name] = _finite_or_none(float(value))
    return metrics, steps


def read_model(folder: Path) -> tuple[str, int | None, int | None]:
    """Return the model class name and its L and K from the run's configuration.

    ``config.yaml`` (written by ``tvae-cli``) gives the class; ``hparams.yaml``
    gives only the init arguments. Unknown values are ``"unknown"`` or ``None``.
    """
    model, init_args = "unknown", {}
    config = _load_yaml(folder / "config.yaml")
    if isinstance(config.get("model"), dict):
        model_config = config["model"]
        model = str(model_config.get("class_path", model)).rsplit(".", 1)[-1]
        init_args = model_config.get("init_args") or {}
    if not init_args:
        init_args = _load_yaml(folder / "hparams.yaml")

    if model == "VAE" or "time_window" not in init_args:
        return model, None, None
    return model, init_args.get("time_window"), init_args.get("capsule_window")


class _HparamsLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads the tuples Lightning writes to hparams.yaml."""


_HparamsLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple",
    lambda loader, node: tuple(loader.construct_sequence(node)),
)


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        content = yaml.load(path.read_text(), Loader=_HparamsLoader)
    except yaml.YAMLError as error:
        log.warning("skipping %s, which is not valid YAML: %s", path, error)
        return {}
    return content if isinstance(content, dict) else {}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- formatting --------------------------------------------------------------


def format_table(results: Sequence[RunResult]) -> str:
    """Return a Markdown table with one row per run.

    Columns: run, model, L, K, E_eq, log p(x) per frame, one CapCorr column per
    factor that any run logged, and the steps trained. Missing values are ``-``.
    """
    capcorr = sorted(
        {name for result in results for name in result.metrics
         if name.startswith("test/capcorr_")}
    )
    header = ["run", "model", "L", "K", "E_eq", "log p(x) per frame"]
    header += [f"CapCorr {name.removeprefix('test/capcorr_')}" for name in capcorr]
    header.append("steps trained")

    lines = [_row(header), _row(["---"] * len(header))]
    for result in results:
        metrics = result.metrics
        cells = [
            result.run,
            MODEL_NAMES.get(result.model, result.model),
            _format_value(result.time_window, "d"),
            _format_value(result.capsule_window, "d"),
            _format_value(metrics.get("test/equivariance_error"), ".1f"),
            _format_value(metrics.get("test/log_likelihood"), ".2f"),
        ]
        cells += [_format_value(metrics.get(name), ".3f") for name in capcorr]
        cells.append(_format_value(result.steps, "d"))
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _format_value(value: float | int | None, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec)


# -- command line ------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvae-cli-results",
        description=(
            "Write a Markdown table of the test metrics (E_eq, log-likelihood per "
            "frame, CapCorr) of run folders such as lightning_logs/version_0. "
            "Folders are searched recursively."
        ),
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, help="run folders or folders that contain them"
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None,
        help="Markdown file to write; standard output when omitted",
    )
    return parser


def main(args: list[str] | None = None) -> None:
    """Run the command line; ``args`` replaces ``sys.argv[1:]`` when given."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # TensorBoard logs one INFO line per event file it finishes reading.
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    options = build_parser().parse_args(args)

    try:
        folders = find_run_folders(options.paths)
    except FileNotFoundError as error:
        raise SystemExit(f"tvae-cli-results: {error}") from error

    results = []
    for folder in folders:
        result = read_run(folder)
        if result is None:
            log.info("skipping %s: it contains no test/ metrics", folder)
            continue
        results.append(result)
    if not results:
        raise SystemExit(
            "tvae-cli-results: no test metrics found; run `tvae-cli test` on the "
            "runs first"
        )

    table = format_table(results)
    if options.output is None:
        sys.stdout.write(table)
    else:
        options.output.write_text(table)
        log.info("wrote %d runs to %s", len(results), options.output)


if __name__ == "__main__":
    main()
