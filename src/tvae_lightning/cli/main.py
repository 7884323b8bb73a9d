"""``tvae-cli``: a LightningCLI over the package's models and data modules."""

from __future__ import annotations

import logging

import lightning as L
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

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """Build the trainer with crash-safe checkpoint writes.

        See :class:`~tvae_lightning.checkpointing.AtomicCheckpointIO`; a
        checkpoint plugin given with ``--trainer.plugins`` is kept.
        """
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoint_io(trainer)
        return trainer


def main(args: list[str] | None = None) -> None:
    """Run the command line; ``args`` replaces ``sys.argv[1:]`` when given."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    TVAECLI(args=args)


if __name__ == "__main__":
    main()
