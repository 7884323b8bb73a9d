"""Command-line entry points."""

from tvae_lightning.cli.main import TVAECLI, main

__all__ = ["TVAECLI", "main"]
