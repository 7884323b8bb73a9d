"""Helpers shared by the benchmark scripts: argument checks, configs and digits.

Python puts the folder of the running script on ``sys.path``, so the scripts
in this folder import this module as ``common``.
"""

from __future__ import annotations

import argparse
import importlib
import struct
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
import yaml

DEFAULT_CONFIG = (
    Path(__file__).resolve().parent.parent / "configs/table1/tvae_L13_K3.yaml"
)


def fail(message: str) -> NoReturn:
    """Exit with status 1 after printing ``<script>: error: message``."""
    raise SystemExit(f"{Path(sys.argv[0]).name}: error: {message}")


def new_parser(description: str) -> argparse.ArgumentParser:
    """Return a parser whose ``--help`` shows the default of every option."""
    return argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def check_positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str
) -> None:
    """Exit with a usage error unless each named option is a positive number."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            option = "--" + name.replace("_", "-")
            parser.error(f"{option} must be positive, got {value}")


def check_threads_and_device(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> None:
    """Exit with a usage error for a negative ``--threads`` or a missing GPU."""
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's default) or more, "
                     f"got {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU, and torch finds none; "
                     "use --device cpu")


def load_config(parser: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    """Read a ``tvae-cli`` YAML config with ``model`` and ``data`` sections.

    Exits with a usage error that names the file when it is missing, is not
    YAML, or lacks a section with a ``class_path``.
    """
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as error:
        parser.error(f"cannot read --config {path}: {error.strerror}")
    except yaml.YAMLError as error:
        parser.error(f"--config {path} is not valid YAML: {error}")

    for section in ("model", "data"):
        if not isinstance(config, dict) or not isinstance(config.get(section), dict):
            parser.error(f"--config {path} needs a '{section}' section with a "
                         "class_path, as in configs/table1/tvae_L13_K3.yaml")
        if "class_path" not in config[section]:
            parser.error(f"the '{section}' section of --config {path} has no "
                         "class_path")
    return config


def init_args(spec: dict[str, Any]) -> dict[str, Any]:
    """Return the ``init_args`` of a config section, empty when it has none."""
    return spec.get("init_args") or {}


def instantiate(spec: dict[str, Any], **overrides: Any) -> Any:
    """Build the object a ``class_path`` and ``init_args`` entry of a config names.

    Exits with one line naming the class when it cannot be found or built.
    """
    class_path = spec["class_path"]
    try:
        module_name, _, class_name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(**{**init_args(spec), **overrides})
    except (ImportError, AttributeError, TypeError, ValueError) as error:
        fail(f"cannot build {class_path} from the config: {error}")


def write_synthetic_mnist(root: Path, count: int) -> None:
    """Write ``count`` blob images as MNIST IDX files under ``root/MNIST/raw``."""
    generator = np.random.default_rng(0)
    ys, xs = np.mgrid[0:28, 0:28]
    centres = generator.uniform(8, 20, size=(count, 3, 2))
    widths = generator.uniform(1.5, 3.5, size=(count, 3))
    distance = (
        (ys - centres[..., 0, None, None]) ** 2
        + (xs - centres[..., 1, None, None]) ** 2
    )
    images = np.exp(-distance / widths[..., None, None] ** 2).sum(axis=1)
    images = np.clip(images / images.max(axis=(1, 2), keepdims=True), 0, 1)
    images = (images * 255).astype(np.uint8)
    labels = generator.integers(0, 10, size=count).astype(np.uint8)

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    image_bytes = struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes()
    label_bytes = struct.pack(">II", 2049, count) + labels.tobytes()
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(image_bytes)
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(label_bytes)


def write_training_digits(root: Path, config: dict[str, Any], sequences: int) -> None:
    """Write synthetic digits under ``root`` for ``sequences`` training sequences.

    The config's data module keeps ``val_fraction`` of the digits for
    validation, so the count is scaled up, with a floor of 512.
    """
    val_fraction = init_args(config["data"]).get("val_fraction", 0.2)
    write_synthetic_mnist(root, max(512, int(sequences / (1.0 - val_fraction)) + 16))


def setup_data(data: Any, root: Path) -> None:
    """Prepare and set up ``data`` for fitting, exiting with the reason on failure.

    A missing or corrupt digit folder then stops the script with one line that
    names ``--data-root``, before any model is built.
    """
    try:
        data.prepare_data()
        data.setup("fit")
    except (OSError, ValueError) as error:
        fail(f"cannot load digits from --data-root {root}: {error}")
