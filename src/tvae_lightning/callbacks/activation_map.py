"""Callback that draws the mean absolute activation of every latent unit."""

from __future__ import annotations

import lightning as L
from matplotlib.figure import Figure
from torch import Tensor

from tvae_lightning.callbacks.image_logging import (
    ValidationImageCallback,
    figure_to_image,
)


def topographic_grid_shape(pl_module: L.LightningModule) -> tuple[int, int]:
    """Return the 2D layout of a frame's latent units.

    A topography with a ``grid_shape`` (the torus of the 2D TVAE) gives its own
    ``(height, width)``; otherwise the layout is ``(n_caps, cap_dim)``.
    """
    shape = getattr(pl_module.topography, "grid_shape", None)
    if shape is not None:
        return tuple(shape)
    return (pl_module.n_caps, pl_module.cap_dim)


class TopographicActivationMap(ValidationImageCallback):
    """Draw mean ``|t|`` per latent unit over fixed validation examples.

    t is taken at the posterior means and averaged over all examples and frames.
    The units are drawn as a capsules x units image, or on the torus for a model
    whose topography has a ``grid_shape`` (the 2D TVAE). The PNG is
    ``figure_size`` inches at ``dpi``.

    Args:
        every_n_epochs: draw at epochs 0, n, 2n, ... and at the last epoch.
        num_examples: validation sequences averaged over.
        output_dir: folder of the PNG files; ``<trainer.log_dir>/images``
            when ``None``.
        name: file name prefix and logger tag.
        figure_size: ``(width, height)`` of the figure in inches.
        dpi: pixels per inch of the PNG.
    """

    default_name = "activation_map"

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_examples: int = 64,
        output_dir: str | None = None,
        name: str | None = None,
        figure_size: tuple[float, float] = (6.0, 5.0),
        dpi: int = 100,
    ) -> None:
        super().__init__(every_n_epochs, num_examples, output_dir, name)
        self.figure_size = tuple(figure_size)
        self.dpi = dpi

    def draw(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        examples: dict[str, Tensor] | None,
    ) -> Tensor:
        frames = examples["frames"]
        posterior = pl_module.encode(frames)
        t = pl_module.group(posterior.z_mean, posterior.u_mean)
        shape = topographic_grid_shape(pl_module)
        activity = t.abs().mean(dim=(0, 1)).reshape(shape).float().cpu()

        figure = Figure(figsize=self.figure_size, dpi=self.dpi)
        axes = figure.add_subplot()
        picture = axes.imshow(activity.numpy(), cmap="viridis", aspect="auto")
        figure.colorbar(picture, ax=axes, label="mean |t|")

        batch, seq_len = frames.shape[:2]
        epoch = trainer.current_epoch
        if getattr(pl_module.topography, "grid_shape", None) is not None:
            axes.set_xlabel("torus column")
            axes.set_ylabel("torus row")
            axes.set_title(
                f"Mean |t| on the {shape[0]} x {shape[1]} torus\n"
                f"over {batch * seq_len} validation images, epoch {epoch}"
            )
        else:
            axes.set_xlabel("unit within capsule")
            axes.set_ylabel("capsule")
            axes.set_title(
                f"Mean |t| per capsule unit\nover {batch} validation sequences "
                f"x {seq_len} frames, epoch {epoch}"
            )
        figure.tight_layout()
        return figure_to_image(figure)
