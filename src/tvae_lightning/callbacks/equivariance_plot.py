"""Callback that plots the equivariance error against the frame offset."""

from __future__ import annotations

import csv
import logging

import lightning as L
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from tvae_lightning.callbacks.image_logging import (
    ValidationImageCallback,
    figure_to_image,
)
from tvae_lightning.metrics.functional import (
    equivariance_error,
    equivariance_error_by_offset,
)

log = logging.getLogger(__name__)


def chance_pair_error(
    n_caps: int, cap_dim: int, num_pairs: int = 20000, seed: int = 0
) -> float:
    """Estimate the pair error of independent random unit capsules.

    Monte Carlo mean of ``sum over capsules of || a_c - b_c ||_1`` for capsules
    ``a_c, b_c`` drawn uniformly on the unit sphere: the level of a frame pair
    whose representation is not equivariant at all. For 18 capsules of 18
    units it is about 86, which over the 153 pairs of 18 frames gives the
    13.2k of the total equivariance error.
    """
    generator = torch.Generator().manual_seed(seed)
    first = F.normalize(torch.randn(num_pairs, cap_dim, generator=generator), dim=-1)
    second = F.normalize(torch.randn(num_pairs, cap_dim, generator=generator), dim=-1)
    return float((first - second).abs().sum(dim=-1).mean()) * n_caps


class EquivarianceByOffsetPlot(ValidationImageCallback):
    """Plot the equivariance error of frame pairs against how far apart they are.

    For fixed validation sequences, the error of a pair ``l0 < l1`` is
    ``sum over c of || roll(s[l0, c], l1 - l0) - s[l1, c] ||_1``, where each
    capsule of t is scaled to unit L2 norm. The plot shows the mean error for
    each offset ``l1 - l0``, while ``val/equivariance_error`` sums all pairs.
    A dashed line marks the error of independent random capsules, so the plot
    shows the offset at which capsule rolls stop predicting the frames. The
    values are also written to ``<name>_epoch<N>.csv`` next to the PNG. Models
    with one frame per sequence have no pairs, and nothing is drawn.

    Args:
        every_n_epochs: draw at epochs 0, n, 2n, ... and at the last epoch.
        num_examples: validation sequences averaged over.
        output_dir: folder of the PNG and CSV files; ``<trainer.log_dir>/images``
            when ``None``.
        name: file name prefix and logger tag.
        figure_size: ``(width, height)`` of the figure in inches.
        dpi: pixels per inch of the PNG.
    """

    default_name = "equivariance_by_offset"

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_examples: int = 64,
        output_dir: str | None = None,
        name: str | None = None,
        figure_size: tuple[float, float] = (6.0, 4.0),
        dpi: int = 100,
    ) -> None:
        super().__init__(every_n_epochs, num_examples, output_dir, name)
        self.figure_size = tuple(figure_size)
        self.dpi = dpi
        self._skip_logged = False

    def draw(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        examples: dict[str, Tensor] | None,
    ) -> Tensor | None:
        frames = examples["frames"]
        batch, seq_len = frames.shape[:2]
        if seq_len < 2:
            if not self._skip_logged:
                log.info("%s: sequences of one frame have no pairs; skipped", self.name)
                self._skip_logged = True
            return None

        capsules = pl_module.capsules_of(pl_module.encode(frames))
        by_offset = equivariance_error_by_offset(capsules).mean(dim=0).cpu()
        total = float(equivariance_error(capsules).mean())
        chance = chance_pair_error(pl_module.n_caps, pl_module.cap_dim)
        offsets = list(range(1, seq_len))
        self.write_values(trainer, offsets, by_offset.tolist())

        figure = Figure(figsize=self.figure_size, dpi=self.dpi)
        axes = figure.add_subplot()
        axes.plot(offsets, by_offset.numpy(), marker="o", label="model")
        axes.axhline(
            chance, color="grey", linestyle="--", label="independent random capsules"
        )
        axes.set_xlabel("frame offset l1 - l0")
        axes.set_ylabel("mean pair error\n(sum over capsules of L1 distance)")
        axes.set_title(
            f"Equivariance error per frame offset, epoch {trainer.current_epoch}\n"
            f"E_eq = {total:.0f} (mean of {batch} validation sequences)"
        )
        axes.set_ylim(bottom=0.0)
        axes.legend(loc="best")
        figure.tight_layout()
        return figure_to_image(figure)

    def write_values(
        self, trainer: L.Trainer, offsets: list[int], errors: list[float]
    ) -> None:
        """Write ``offset,mean_pair_error`` rows next to the PNG of this epoch."""
        file_name = f"{self.name}_epoch{trainer.current_epoch}.csv"
        path = self.output_folder(trainer) / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["offset", "mean_pair_error"])
            writer.writerows(zip(offsets, errors))
