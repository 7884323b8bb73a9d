"""Callback that colours each latent unit by the class that activates it most."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from tvae_lightning.callbacks.activation_map import topographic_grid_shape
from tvae_lightning.callbacks.image_logging import (
    ValidationImageCallback,
    check_positive_int,
    figure_to_image,
)

log = logging.getLogger(__name__)


def preferred_classes(class_means: Tensor, normalize: bool = True) -> Tensor:
    """Return for every unit the class with the highest mean activation.

    Args:
        class_means: mean t per class and unit, ``(num_classes, D)``; rows of
            classes never seen are NaN and never win.
        normalize: scale each class's row to zero mean and unit standard
            deviation over the units first, so that a class which raises every
            unit (digits with more ink, say) does not win everywhere.

    Returns:
        Class indices ``(D,)``.
    """
    means = class_means.clone()
    if normalize:
        centred = means - means.mean(dim=1, keepdim=True)
        means = centred / means.std(dim=1, keepdim=True).clamp_min(1e-12)
    return means.nan_to_num(nan=-torch.inf).argmax(dim=0)


class ClassMap(ValidationImageCallback):
    """Colour each latent unit by the label class whose images activate it most.

    In validation epochs that draw, and during ``test``, the callback averages t
    at the posterior means of up to ``max_examples`` labelled images per class.
    Each unit gets the class with the highest mean t (see
    :func:`preferred_classes`). The map is drawn on the torus for the 2D TVAE, or
    as capsules x units, with one colour per class and a legend. Test runs write
    ``<name>_test_epoch<N>.png``. Batches without ``labels`` are skipped.

    Args:
        every_n_epochs: draw at epochs 0, n, 2n, ... and at the last epoch.
        max_examples: labelled images (sequences for sequence models) averaged
            per drawing.
        num_classes: number of label classes, at most 20.
        normalize: standardise each class's mean activations over the units
            before the comparison.
        output_dir: folder of the PNG files; ``<trainer.log_dir>/images``
            when ``None``.
        name: file name prefix and logger tag.
        figure_size: ``(width, height)`` of the figure in inches.
        dpi: pixels per inch of the PNG.
    """

    default_name = "class_map"
    uses_examples = False

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_examples: int = 2048,
        num_classes: int = 10,
        normalize: bool = True,
        output_dir: str | None = None,
        name: str | None = None,
        figure_size: tuple[float, float] = (7.0, 5.5),
        dpi: int = 100,
    ) -> None:
        check_positive_int("max_examples", max_examples)
        super().__init__(every_n_epochs, max_examples, output_dir, name)
        if not 1 <= num_classes <= 20:
            raise ValueError(f"num_classes must be between 1 and 20, got {num_classes}")
        self.num_classes = num_classes
        self.normalize = normalize
        self.figure_size = tuple(figure_size)
        self.dpi = dpi
        self.split = "validation"
        self._reset()

    def _reset(self) -> None:
        self.sums: Tensor | None = None
        self.counts = torch.zeros(self.num_classes, dtype=torch.long)
        self._missing_labels_logged = False

    @property
    def num_seen(self) -> int:
        return int(self.counts.sum())

    def on_validation_epoch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> None:
        self._reset()
        self.split = "validation"

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.should_draw(trainer):
            self.accumulate(pl_module, batch)

    def on_test_epoch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> None:
        self._reset()
        self.split = "test"

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.is_global_zero:
            self.accumulate(pl_module, batch)

    def on_test_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> None:
        if trainer.is_global_zero and self.num_seen > 0:
            self.draw_and_write(trainer, pl_module, suffix="_test")

    def on_validation_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> None:
        if self.should_draw(trainer) and self.num_seen > 0:
            self.draw_and_write(trainer, pl_module)

    def accumulate(self, pl_module: L.LightningModule, batch: Any) -> None:
        """Add the per-class sums of mean t of a batch's labelled examples."""
        missing = self.num_examples - self.num_seen
        if missing <= 0:
            return
        if not isinstance(batch, dict) or not isinstance(batch.get("labels"), Tensor):
            if not self._missing_labels_logged:
                log.warning("%s: batches without labels are skipped", self.name)
                self._missing_labels_logged = True
            return

        frames = batch["frames"][:missing]
        labels = batch["labels"][:missing].long().cpu()
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise ValueError(
                f"labels go up to {int(labels.max())} but num_classes is "
                f"{self.num_classes}; set num_classes to at least "
                f"{int(labels.max()) + 1}"
            )

        with torch.no_grad():
            posterior = pl_module.encode(frames)
            t = pl_module.group(posterior.z_mean, posterior.u_mean)
        per_example = t.mean(dim=1).float().cpu()

        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, per_example.shape[-1])
        self.sums.index_add_(0, labels, per_example)
        self.counts += torch.bincount(labels, minlength=self.num_classes)

    def draw(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        examples: dict[str, Tensor] | None,
    ) -> Tensor:
        seen = self.counts > 0
        means = self.sums / self.counts.clamp_min(1).unsqueeze(1).float()
        means[~seen] = torch.nan
        shape = topographic_grid_shape(pl_module)
        winners = preferred_classes(means, self.normalize).reshape(shape)

        colours = colormaps["tab20" if self.num_classes > 10 else "tab10"].colors
        colours = colours[: self.num_classes]
        figure = Figure(figsize=self.figure_size, dpi=self.dpi)
        axes = figure.add_subplot()
        axes.imshow(
            winners.numpy(),
            cmap=ListedColormap(colours),
            vmin=-0.5,
            vmax=self.num_classes - 0.5,
            interpolation="nearest",
        )

        handles = [
            Patch(color=colours[index], label=str(index))
            for index in range(self.num_classes)
            if seen[index]
        ]
        axes.legend(
            handles=handles,
            title="class",
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
        )
        self.label_axes(axes, pl_module, trainer.current_epoch)
        figure.tight_layout()
        return figure_to_image(figure)

    def label_axes(self, axes: Any, pl_module: L.LightningModule, epoch: int) -> None:
        """Set the axis labels and the title of the map."""
        on_torus = getattr(pl_module.topography, "grid_shape", None) is not None
        axes.set_xlabel("torus column" if on_torus else "unit within capsule")
        axes.set_ylabel("torus row" if on_torus else "capsule")
        how = "standardised mean t" if self.normalize else "mean t"
        axes.set_title(
            f"Class with the highest {how} per unit\n"
            f"({self.num_seen} {self.split} examples, epoch {epoch})"
        )
