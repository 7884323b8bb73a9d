"""Every YAML config under configs/ parses and fits for two steps.

The default run parses every config and fits the first config of each model
class, taking configs/table1 and configs/table2 first. The others fit under
``-m slow``. Digit data sets come from small IDX
files that torchvision reads, dSprites from the procedural renderer.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tvae_lightning import TopographicVAE
from tvae_lightning.cli import TVAECLI, main
from tvae_lightning.topography import StationaryCapsuleTopography

from conftest import write_digit_folder

REPO = Path(__file__).resolve().parents[1]
CONFIG_ROOT = REPO / "configs"
TABLE_FOLDERS = ("table1", "table2")


def load_config(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def class_path(config: dict[str, Any], section: str) -> str:
    return config[section]["class_path"]


def import_class(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def ordered_configs() -> list[Path]:
    """All configs, with configs/table1 and configs/table2 first."""
    configs = sorted(CONFIG_ROOT.rglob("*.yaml"))
    tables = [p for p in configs if p.parent.name in TABLE_FOLDERS]
    return tables + [p for p in configs if p not in tables]


def fit_params() -> list[Any]:
    """One param per config, marked slow unless it is the first of its model class."""
    seen: set[str] = set()
    params = []
    for path in ordered_configs():
        model = class_path(load_config(path), "model")
        marks = [] if model not in seen else [pytest.mark.slow]
        seen.add(model)
        params.append(pytest.param(path, marks=marks, id=str(path.relative_to(REPO))))
    return params


CONFIGS = ordered_configs()
CONFIG_IDS = [str(path.relative_to(REPO)) for path in CONFIGS]


def data_overrides(config: dict[str, Any], tmp_path: Path) -> list[str]:
    """Arguments that point the config's data module at small local data."""
    data_class = import_class(class_path(config, "data"))
    parameters = inspect.signature(data_class.__init__).parameters
    init_args = config["data"].get("init_args", {})
    args = ["--data.batch_size", "2"]

    if "source" in parameters:
        args += ["--data.root", str(tmp_path / "sprites")]
        args += ["--data.source", "procedural"]
        for name, count in (("num_train", "4"), ("num_val", "2"), ("num_test", "2")):
            if name in parameters:
                args += [f"--data.{name}", count]
    elif "root" in parameters:
        dataset = init_args.get("dataset", "mnist")
        folder = data_class_folder(dataset)
        root = write_digit_folder(tmp_path / "digits", folder=folder)
        args += ["--data.root", str(root)]
    if "download" in parameters:
        args += ["--data.download", "false"]
    return args


def data_class_folder(dataset: str) -> str:
    from tvae_lightning.data.digits import digit_dataset_class

    return digit_dataset_class(dataset).__name__


def trainer_overrides(tmp_path: Path) -> list[str]:
    # jsonargparse reads "1" for Lightning's int-or-float limits as 1.0, which
    # means all batches, so the smallest whole count that works is 2.
    return [
        "--trainer.max_steps", "2", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]


class ParseOnlyCLI(TVAECLI):
    """Parses and type-checks a config against the classes' signatures only."""

    def instantiate_classes(self) -> None:
        pass


@pytest.mark.parametrize("path", CONFIGS, ids=CONFIG_IDS)
def test_config_parses(path: Path):
    config = load_config(path)
    cli = ParseOnlyCLI(args=["--config", str(path)], run=False)
    assert cli.config.model.class_path == class_path(config, "model")


@pytest.mark.parametrize("path", fit_params())
def test_config_fits_two_steps(path: Path, tmp_path: Path):
    config = load_config(path)
    args = ["fit", "--config", str(path)]
    args += data_overrides(config, tmp_path) + trainer_overrides(tmp_path)

    main(args)

    checkpoints = list((tmp_path / "runs").rglob("*.ckpt"))
    assert checkpoints, f"no checkpoint written by {path.name}"


# -- configs/table1 and configs/table2 -----------------------------------------

TABLE_CONFIGS = [p for p in CONFIGS if p.parent.name in TABLE_FOLDERS]
TABLE_IDS = [str(p.relative_to(REPO)) for p in TABLE_CONFIGS]
ROW_NAME = re.compile(r"^# Table [12], (TVAE L=\d+ K=\d+|BubbleVAE L=\d+ K=\d+|VAE):")


def test_table_configs_cover_both_tables():
    names = sorted(str(p.relative_to(CONFIG_ROOT)) for p in TABLE_CONFIGS)
    expected = sorted(
        [f"table1/{name}.yaml" for name in
         ("tvae_L18_K3", "tvae_L13_K3", "tvae_L5_K3", "bubblevae_L5_K3",
          "tvae_L0_K3", "vae")]
        + [f"table2/{name}.yaml" for name in
           ("tvae_L15_K1", "tvae_L10_K1", "tvae_L5_K1", "tvae_L0_K3",
            "bubblevae_L5_K5", "vae")]
    )
    assert names == expected


@pytest.mark.parametrize("path", TABLE_CONFIGS, ids=TABLE_IDS)
def test_table_config_names_row_first(path: Path):
    first_line = path.read_text().splitlines()[0]
    assert ROW_NAME.match(first_line), first_line


@pytest.mark.parametrize("path", TABLE_CONFIGS, ids=TABLE_IDS)
def test_table_config_windows_match_file_name(path: Path):
    init_args = load_config(path)["model"]["init_args"]
    match = re.search(r"_L(\d+)_K(\d+)", path.name)
    if match is None:
        assert "time_window" not in init_args
    else:
        window = (init_args["time_window"], init_args["capsule_window"])
        assert window == (int(match.group(1)), int(match.group(2)))


@pytest.mark.parametrize("path", TABLE_CONFIGS, ids=TABLE_IDS)
def test_table_config_uses_paper_optimiser(path: Path):
    config = load_config(path)
    init_args = config["model"]["init_args"]
    settings = (
        init_args["lr"], init_args["momentum"],
        config["data"]["init_args"]["batch_size"], config["trainer"]["max_epochs"],
    )
    assert settings == (1e-4, 0.9, 8, 100)


@pytest.mark.parametrize("path", TABLE_CONFIGS, ids=TABLE_IDS)
def test_table_config_sizes_match_data(path: Path):
    config = load_config(path)
    init_args = config["model"]["init_args"]
    if path.parent.name == "table1":
        expected = (18, 18, 18, [3, 28, 28], "combined")
        varied = config["data"]["init_args"]["transformation"]
    else:
        expected = (15, 15, 15, [1, 64, 64], ["x", "y", "orientation", "scale"])
        varied = config["data"]["init_args"]["factors"]
    sizes = (
        init_args["n_caps"], init_args["cap_dim"], init_args["seq_len"],
        init_args["image_shape"], varied,
    )
    assert sizes == expected


# Sizes of Omega, the (time offset, unit offset) pairs each unit pools.
WINDOW_SIZES = {
    "table1/tvae_L18_K3.yaml": 52,
    "table1/tvae_L13_K3.yaml": 37,
    "table1/tvae_L5_K3.yaml": 13,
    "table1/bubblevae_L5_K3.yaml": 15,
    "table1/tvae_L0_K3.yaml": 3,
    "table2/tvae_L15_K1.yaml": 15,
    "table2/tvae_L10_K1.yaml": 10,
    "table2/tvae_L5_K1.yaml": 5,
    "table2/tvae_L0_K3.yaml": 3,
    "table2/bubblevae_L5_K5.yaml": 25,
}


@pytest.mark.parametrize("name", sorted(WINDOW_SIZES))
def test_table_config_window_size(name: str):
    config = load_config(CONFIG_ROOT / name)
    init_args = config["model"]["init_args"]
    arguments = [
        init_args[key]
        for key in ("n_caps", "cap_dim", "seq_len", "time_window", "capsule_window",
                    "mu_init")
    ]
    if class_path(config, "model") == "tvae_lightning.BubbleVAE":
        topography = StationaryCapsuleTopography(*arguments)
    else:
        topography = TopographicVAE.build_topography(*arguments)

    assert len(topography.window) == WINDOW_SIZES[name]
