"""Callback that decodes latents drawn from the prior."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor

from tvae_lightning.callbacks.image_logging import (
    ValidationImageCallback,
    check_positive_int,
    frame_grid,
)


class PriorSamples(ValidationImageCallback):
    """Draw frames decoded from z and u drawn from the prior ``N(0, I)``.

    t is computed from the sampled z and u by the model's topography (``t = z``
    without one) and decoded to Bernoulli probabilities ``sigmoid(logits)``.
    The latents come from a generator seeded with ``seed``, so every drawing
    decodes the same latents and shows how the decoder changes. Sequences are
    drawn one per row; single images (``seq_len`` 1) fill a square grid.

    Args:
        every_n_epochs: draw at epochs 0, n, 2n, ... and at the last epoch.
        num_samples: sequences (or single images) sampled.
        seed: seed of the latent samples.
        output_dir: folder of the PNG files; ``<trainer.log_dir>/images``
            when ``None``.
        name: file name prefix and logger tag.
    """

    default_name = "prior_samples"
    uses_examples = False

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 64,
        seed: int = 0,
        output_dir: str | None = None,
        name: str | None = None,
    ) -> None:
        check_positive_int("num_samples", num_samples)
        super().__init__(every_n_epochs, num_samples, output_dir, name)
        self.seed = seed

    def draw(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        examples: dict[str, Tensor] | None,
    ) -> Tensor:
        shape = (self.num_examples, pl_module.seq_len, pl_module.latent_dim)
        generator = torch.Generator().manual_seed(self.seed)
        z = torch.randn(shape, generator=generator)
        u = torch.randn(shape, generator=generator)

        z = z.to(pl_module.device)
        u = u.to(pl_module.device) if pl_module.topography is not None else None
        samples = torch.sigmoid(pl_module.decode(pl_module.group(z, u)))

        if pl_module.seq_len == 1:
            columns = math.ceil(math.sqrt(self.num_examples))
            rows = math.ceil(self.num_examples / columns)
            blank = samples.new_zeros(rows * columns - self.num_examples, 1,
                                      *samples.shape[2:])
            samples = torch.cat([samples, blank]).reshape(
                rows, columns, *samples.shape[2:]
            )
        return frame_grid(samples)
