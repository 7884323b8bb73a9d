"""``tvae-cli-data``: look at the sequences a data config produces.

``tvae-cli-data preview --config configs/combined.yaml --out grid.png`` reads the
``data:`` section of a training config (``class_path`` and ``init_args``, as
``tvae-cli`` reads it), draws sequences from one split and saves them as a PNG
grid with one sequence per row and one frame per column. The other sections
of the config are accepted and ignored, so any ``tvae-cli`` config works.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from torch import Tensor
from torchvision.utils import make_grid, save_image

log = logging.getLogger(__name__)

IGNORED_SECTIONS = ("trainer", "model", "optimizer", "lr_scheduler")
"""Sections of a ``tvae-cli`` config that the preview reads but does not use."""


def build_parser() -> ArgumentParser:
    """Return the parser of ``tvae-cli-data`` with its ``preview`` subcommand."""
    preview = ArgumentParser(description="Save a PNG grid of sample sequences.")
    preview.add_argument("--config", action=ActionConfigFile, help="training config")
    preview.add_subclass_arguments(L.LightningDataModule, "data", required=True)
    preview.add_argument("--out", type=Path, required=True, help="PNG file to write")
    preview.add_argument("--rows", type=int, default=8, help="sequences to show")
    preview.add_argument(
        "--split",
        type=Literal["train", "val", "test"],
        default="val",
        help="split whose sequences are drawn; val and test are fixed by the seed",
    )
    preview.add_argument(
        "--device", type=str, default="cpu", help="device that draws the frames"
    )
    # Plain types, so that the class_path entries in these sections are read
    # as data and never instantiated.
    unused = "read from the training config and not used"
    preview.add_argument("--seed_everything", type=bool | int | None, help=unused)
    preview.add_argument("--ckpt_path", type=str | None, help=unused)
    for section in IGNORED_SECTIONS:
        preview.add_argument(f"--{section}", type=dict | None, help=unused)

    parser = ArgumentParser(prog="tvae-cli-data", description=__doc__.split("\n")[0])
    subcommands = parser.add_subcommands()
    subcommands.add_subcommand("preview", preview, help="save a grid of sequences")
    return parser


def draw_sequences(
    datamodule: L.LightningDataModule, rows: int, split: str, device: str
) -> Tensor:
    """Return the frames ``(rows, seq_len, C, H, W)`` of the first ``rows`` sequences.

    Fewer rows come back when the split contains fewer sequences.
    """
    if rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows}")
    datamodule.prepare_data()
    datamodule.setup("test" if split == "test" else "fit")
    loader = getattr(datamodule, f"{split}_dataloader")()

    collected: list[Tensor] = []
    count = 0
    for batch in loader:
        batch = datamodule.transfer_batch_to_device(batch, torch.device(device), 0)
        batch = datamodule.on_after_batch_transfer(batch, 0)
        frames = batch["frames"] if isinstance(batch, dict) else batch
        collected.append(frames[: rows - count].cpu())
        count += len(collected[-1])
        if count >= rows:
            break
    return torch.cat(collected)


def save_sequence_grid(frames: Tensor, path: Path, padding: int = 2) -> None:
    """Save ``frames (rows, seq_len, C, H, W)`` as a PNG grid, a sequence per row."""
    seq_len = frames.shape[1]
    grid = make_grid(
        frames.flatten(0, 1), nrow=seq_len, padding=padding, pad_value=0.5
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)


def preview(config: Namespace) -> Path:
    """Draw the sequences that ``config`` describes and save their grid."""
    datamodule = config.data
    frames = draw_sequences(datamodule, config.rows, config.split, config.device)
    save_sequence_grid(frames, config.out)
    log.info(
        "Saved %d %s sequences of %d frames from %s to %s",
        len(frames), config.split, frames.shape[1], type(datamodule).__name__,
        config.out,
    )
    return config.out


def main(args: list[str] | None = None) -> None:
    """Run the command line; ``args`` replaces ``sys.argv[1:]`` when given."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    parser = build_parser()
    config = parser.parse_args(args)
    # Checked before the data module is built, which may load a whole data set.
    if config.subcommand == "preview" and config.preview.rows < 1:
        parser.error(f"--rows must be a positive integer, got {config.preview.rows}")

    # jsonargparse 4.49 renamed instantiate_classes to instantiate.
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    config = instantiate(config)
    if config.subcommand == "preview":
        preview(config.preview)


if __name__ == "__main__":
    main()
