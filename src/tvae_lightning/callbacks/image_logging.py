"""Base class and helpers of callbacks that draw images at validation ends.

Every image goes to each logger whose ``experiment`` has ``add_image``, which
is TensorBoard's ``SummaryWriter``. Loggers without it, such as ``CSVLogger``,
are skipped. Every image is also saved as ``<folder>/<name>_epoch<N>.png``.
The folder defaults to ``<trainer.log_dir>/images``, next to the
``checkpoints`` folder of the default ``ModelCheckpoint``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.utils import make_grid, save_image

log = logging.getLogger(__name__)


def image_folder(trainer: L.Trainer, output_dir: str | None, subfolder: str) -> Path:
    """Return ``output_dir``, or ``<trainer.log_dir>/<subfolder>`` when it is ``None``.

    ``trainer.log_dir`` broadcasts from rank zero, so every process must call
    this, e.g. from a ``setup`` hook.
    """
    if output_dir is not None:
        return Path(output_dir)
    root = trainer.log_dir or trainer.default_root_dir
    return Path(root) / subfolder


def frame_grid(rows: Tensor, pad_value: float = 1.0) -> Tensor:
    """Tile frames ``(num_rows, num_columns, C, H, W)`` in [0, 1] into one image.

    Returns an RGB image ``(3, height, width)`` with a border of 2 pixels of
    ``pad_value`` between frames; single-channel frames become grey.
    """
    num_columns = rows.shape[1]
    frames = rows.flatten(0, 1).float().clamp(0.0, 1.0).cpu()
    return make_grid(frames, nrow=num_columns, padding=2, pad_value=pad_value)


def figure_to_image(figure: Figure) -> Tensor:
    """Render a matplotlib figure with the Agg backend to an RGB image ``(3, H, W)``.

    The size in pixels is the figure size in inches times its dpi.
    """
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    image = torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1)
    return image.float() / 255.0


def log_image(trainer: L.Trainer, tag: str, image: Tensor) -> None:
    """Send ``image (3, H, W)`` to every logger whose experiment has ``add_image``."""
    for logger in trainer.loggers:
        add_image = getattr(logger.experiment, "add_image", None)
        if not callable(add_image):
            log.debug("%s cannot store images; skipped %s", type(logger).__name__, tag)
            continue
        add_image(tag, image, global_step=trainer.global_step, dataformats="CHW")


def write_image(trainer: L.Trainer, tag: str, image: Tensor, path: Path) -> None:
    """Save ``image (3, H, W)`` in [0, 1] as a PNG file at ``path`` and log it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(image, path)
    log_image(trainer, tag, image)
    log.debug("Wrote %s", path)


class ValidationImageCallback(Callback):
    """Base of callbacks that draw one image at the end of some validation epochs.

    Drawing happens on global rank zero only, in eval mode and without
    gradients, every ``every_n_epochs`` epochs counted from epoch 0 and at the
    last epoch of ``max_epochs``, never during the sanity check. Subclasses
    implement :meth:`draw`. A subclass that sets ``uses_examples`` receives the
    first ``num_examples`` validation examples, collected once from the first
    validation batches (the sanity check's batches included) and kept on the CPU,
    so every drawing shows the same examples.

    Args:
        every_n_epochs: draw at epochs 0, n, 2n, ... and at the last epoch.
        num_examples: validation examples passed to :meth:`draw`.
        output_dir: folder of the PNG files; ``<trainer.log_dir>/images``
            when ``None``.
        name: file name prefix and logger tag (``images/<name>``).
    """

    default_name = "image"
    uses_examples = True

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_examples: int = 8,
        output_dir: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("every_n_epochs", every_n_epochs)
        check_positive_int("num_examples", num_examples)
        self.every_n_epochs = every_n_epochs
        self.num_examples = num_examples
        self.output_dir = output_dir
        self.name = name or self.default_name
        self.examples: dict[str, Tensor] | None = None
        self.folder: Path | None = None

    def setup(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> None:
        self.folder = image_folder(trainer, self.output_dir, "images")

    def should_draw(self, trainer: L.Trainer) -> bool:
        """Return whether this validation end of the current epoch draws."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return False
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        return epoch % self.every_n_epochs == 0 or last

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.uses_examples and trainer.is_global_zero and dataloader_idx == 0:
            self.collect_examples(batch)

    def collect_examples(self, batch: Any) -> None:
        """Keep examples of ``batch`` until ``num_examples`` are stored."""
        stored = 0 if self.examples is None else len(self.examples["frames"])
        missing = self.num_examples - stored
        if missing <= 0:
            return

        new = _batch_tensors(batch)
        new = {key: value[:missing].detach().cpu() for key, value in new.items()}
        if self.examples is None:
            self.examples = new
        else:
            keys = self.examples.keys() & new.keys()
            self.examples = {
                key: torch.cat([self.examples[key], new[key]]) for key in keys
            }

    def on_validation_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> None:
        if not self.should_draw(trainer):
            return
        if self.uses_examples and self.examples is None:
            log.warning("%s: no validation examples seen; nothing drawn", self.name)
            return
        self.draw_and_write(trainer, pl_module)

    def draw_and_write(
        self, trainer: L.Trainer, pl_module: L.LightningModule, suffix: str = ""
    ) -> None:
        """Draw in eval mode without gradients, then save and log the image.

        The file is ``<folder>/<name><suffix>_epoch<N>.png`` and the logger tag
        ``images/<name><suffix>``.
        """
        start = time.perf_counter()
        examples = None
        if self.examples is not None:
            examples = {
                key: value.to(pl_module.device) for key, value in self.examples.items()
            }

        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                image = self.draw(trainer, pl_module, examples)
        finally:
            pl_module.train(was_training)
        if image is None:
            return

        stem = f"{self.name}{suffix}"
        path = self.output_folder(trainer) / f"{stem}_epoch{trainer.current_epoch}.png"
        write_image(trainer, f"images/{stem}", image, path)
        log.debug("%s drawn in %.3f s", stem, time.perf_counter() - start)

    def output_folder(self, trainer: L.Trainer) -> Path:
        """Return the folder resolved in ``setup``, or resolve it now."""
        if self.folder is None:
            self.folder = image_folder(trainer, self.output_dir, "images")
        return self.folder

    def draw(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        examples: dict[str, Tensor] | None,
    ) -> Tensor | None:
        """Return the image ``(3, H, W)`` in [0, 1], or ``None`` to skip this time.

        ``examples`` contains ``frames`` ``(num_examples, seq_len, C, H, W)`` and, when
        the batches have them, ``labels``, on the module's device.
        """
        raise NotImplementedError


def _batch_tensors(batch: Any) -> dict[str, Tensor]:
    """Return ``frames`` and, if present, ``labels`` of a dict or tensor batch."""
    if isinstance(batch, Tensor):
        return {"frames": batch}
    if not isinstance(batch, dict) or "frames" not in batch:
        raise TypeError(
            "image callbacks need batches that are a frames tensor or a dict with "
            f"a 'frames' entry, got {type(batch).__name__}"
        )
    tensors = {"frames": batch["frames"]}
    if isinstance(batch.get("labels"), Tensor):
        tensors["labels"] = batch["labels"]
    return tensors


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
