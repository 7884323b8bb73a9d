"""``tvae-cli``: a LightningCLI over the package's models and data modules."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI

from tvae_lightning.checkpointing import use_atomic_checkpoint_io
from tvae_lightning.models import SequenceVAE


class TVAECLI(LightningCLI):
    """LightningCLI with any :class:`SequenceVAE` and any data module as ``class_path``.

    Run ``tvae-cli fit --config configs/rot.yaml``; ``--print_config`` prints a
    config that can be fed back with ``--config``.
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("model_class", SequenceVAE)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("datamodule_class", L.LightningDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 0)
        super().__init__(**kwargs)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        self.check_checkpoint_class()

    def check_checkpoint_class(self) -> None:
        """Exit when ``--ckpt_path`` was saved by another model class than the config's.

        LightningCLI rebuilds the model from the checkpoint's hyperparameters,
        class included, so without this check a VAE config given a TVAE
        checkpoint would silently test the TVAE.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        section = self.config[subcommand]
        ckpt_path = section.get("ckpt_path")
        model = section.get("model")
        if not ckpt_path or not Path(ckpt_path).is_file() or model is None:
            return

        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved = checkpoint.get("hyper_parameters", {}).get("_class_path")
        requested = model.get("class_path") if hasattr(model, "get") else None
        if saved and requested and _class_name(saved) != _class_name(requested):
            raise SystemExit(
                f"error: checkpoint {ckpt_path} was saved by {saved}, but the "
                f"config's model is {requested}. Pass --model.class_path {saved} "
                f"or a checkpoint of {requested}."
            )

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does, reporting this package's own errors briefly.

        jsonargparse wraps an error raised in a constructor into a long report
        on union types; the package's message is the useful part.
        """
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, OSError) as error:
            cause = _package_error(error)
            if cause is None:
                raise
            raise SystemExit(f"error: {type(cause).__name__}: {cause}") from error

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """Build the trainer with crash-safe checkpoint writes.

        See :class:`~tvae_lightning.checkpointing.AtomicCheckpointIO`; a
        checkpoint plugin given with ``--trainer.plugins`` is kept.
        """
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoint_io(trainer)
        return trainer


def _class_name(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def _package_error(error: BaseException) -> BaseException | None:
    """Return the innermost error in the chain raised by this package's code."""
    found = None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        if frames and f"{os.sep}tvae_lightning{os.sep}" in frames[-1].filename:
            found = current
        current = current.__cause__ or current.__context__
    return found


def main(args: list[str] | None = None) -> None:
    """Run the command line; ``args`` replaces ``sys.argv[1:]`` when given."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    TVAECLI(args=args)


if __name__ == "__main__":
    main()
