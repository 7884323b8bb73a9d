"""Callback that decodes an encoded frame with its capsules rolled."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from tvae_lightning.callbacks.image_logging import ValidationImageCallback, frame_grid
from tvae_lightning.models.completion import observed_latents, roll_capsules


class CapsuleTraversalImages(ValidationImageCallback):
    """Draw frame 0 of fixed validation sequences decoded with every capsule rolled.

    For each sequence, the top row shows the true frames 0, 1, 2, ... and the
    bottom row shows frame 0 encoded alone, every capsule of its t rolled by
    0, 1, 2, ... units, and decoded (Keller and Welling, NeurIPS 2021, Figures 1
    and 4). In a model whose transformation steps are capsule rolls the two rows
    agree. Column 0 of the bottom row is the reconstruction of frame 0. t of
    frame 0 is computed as :meth:`~tvae_lightning.models.SequenceVAE.complete`
    computes it: only frame 0 is encoded, the other frames' z and u are its
    own rolled.

    Args:
        every_n_epochs: draw at epochs 0, n, 2n, ... and at the last epoch.
        num_examples: sequences drawn, two rows each.
        max_shift: largest roll drawn; ``cap_dim - 1`` when ``None``.
        output_dir: folder of the PNG files; ``<trainer.log_dir>/images``
            when ``None``.
        name: file name prefix and logger tag.
    """

    default_name = "capsule_traversal"

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_examples: int = 4,
        max_shift: int | None = None,
        output_dir: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(every_n_epochs, num_examples, output_dir, name)
        if max_shift is not None and (isinstance(max_shift, bool) or max_shift < 0):
            raise ValueError(f"max_shift must be None or >= 0, got {max_shift!r}")
        self.max_shift = max_shift

    def draw(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        examples: dict[str, Tensor] | None,
    ) -> Tensor:
        frames = examples["frames"]
        cap_dim = pl_module.cap_dim
        num_shifts = cap_dim
        if self.max_shift is not None:
            num_shifts = min(self.max_shift, cap_dim - 1) + 1

        first = observed_latents(pl_module, frames, num_observed=1)
        shifts = torch.arange(num_shifts, device=frames.device)
        rolled = roll_capsules(first.expand(-1, num_shifts, -1), shifts, cap_dim)
        decoded = torch.sigmoid(pl_module.decode(rolled))

        truth = frames[:, :num_shifts]
        missing = num_shifts - truth.shape[1]
        if missing > 0:
            # Black frames where the sequence is shorter than the traversal.
            truth = F.pad(truth, (0, 0, 0, 0, 0, 0, 0, missing))

        rows = torch.stack([truth, decoded], dim=1).flatten(0, 1)
        return frame_grid(rows)
