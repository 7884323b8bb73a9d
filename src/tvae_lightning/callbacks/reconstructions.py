"""Callback that draws validation sequences over their reconstructions."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from tvae_lightning.callbacks.image_logging import ValidationImageCallback, frame_grid


class ReconstructionImages(ValidationImageCallback):
    """Draw fixed validation sequences, input frames over their reconstructions.

    Reconstructions decode t at the posterior means of z and u (no sampling), as
    Bernoulli probabilities ``sigmoid(logits)``. A grid has ``2 * num_examples``
    rows of ``seq_len`` frames. One-frame sequences (the 2D TVAE) are laid out
    the other way round: one row of ``num_examples`` images over one row of their
    reconstructions.

    Args:
        every_n_epochs: draw at epochs 0, n, 2n, ... and at the last epoch.
        num_examples: sequences (or single images) drawn.
        output_dir: folder of the PNG files; ``<trainer.log_dir>/images``
            when ``None``.
        name: file name prefix and logger tag.
    """

    default_name = "reconstructions"

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_examples: int = 4,
        output_dir: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(every_n_epochs, num_examples, output_dir, name)

    def draw(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        examples: dict[str, Tensor] | None,
    ) -> Tensor:
        frames = examples["frames"]
        posterior = pl_module.encode(frames)
        t = pl_module.group(posterior.z_mean, posterior.u_mean)
        reconstructions = torch.sigmoid(pl_module.decode(t))

        if frames.shape[1] == 1:
            frames = frames.transpose(0, 1)
            reconstructions = reconstructions.transpose(0, 1)

        rows = torch.stack([frames, reconstructions], dim=1).flatten(0, 1)
        return frame_grid(rows)
