"""The 2D Topographic VAE on single images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from tvae_lightning.models.base import SequenceVAE
from tvae_lightning.networks import MLPEncoder
from tvae_lightning.topography.torus import TorusTopography


class TopographicVAE2D(SequenceVAE):
    """TVAE whose latent units lie on a torus, for single images (``seq_len`` 1).

    ``t = (z + mu) / sqrt(v + eps)``, where ``v`` sums ``u ** 2`` over a
    ``window x window`` box on a ``torus_height x torus_width`` torus with
    wrap-around (:class:`~tvae_lightning.topography.TorusTopography`).
    Neighbouring units therefore share a normaliser. Keller and Welling (NeurIPS
    2021, Figure 3) report that the model then arranges digit class, stroke
    width and slant smoothly over the torus, with an 18 x 18 torus, a 5 x 5
    window and mu_init 10.

    Batches hold sequences of one frame, ``(batch, 1, C, H, W)``. The latent is
    one capsule of ``torus_height * torus_width`` units, so the activation-map
    callback draws it on the torus through ``topography.grid_shape``. With one
    frame there are no frame pairs, so no equivariance error is logged.

    Args:
        torus_height: rows of the torus.
        torus_width: columns of the torus.
        window: odd side of the square pooling window.
        mu_init: initial value of the learnable shift ``mu``.
        image_shape: ``(channels, height, width)`` of one image.
        z_encoder: Gaussian encoder of z; :class:`MLPEncoder` when ``None``.
        u_encoder: Gaussian encoder of u; :class:`MLPEncoder` when ``None``.
        decoder: decoder to Bernoulli logits; :class:`MLPDecoder` when ``None``.
        topography: replaces the torus that ``torus_height``, ``torus_width``
            and ``window`` describe; called as ``topography(z, u)``.
        lr: SGD learning rate.
        momentum: SGD momentum.
        eval_num_samples: importance samples per image for
            ``test/log_likelihood``.
        predict_num_observed: frames observed by ``predict_step``; must be 1,
            which makes a prediction a reconstruction.
        average_completion: accepted for a uniform signature; has no effect
            with one frame.
    """

    def __init__(
        self,
        torus_height: int = 18,
        torus_width: int = 18,
        window: int = 5,
        mu_init: float = 10.0,
        image_shape: Sequence[int] = (1, 28, 28),
        z_encoder: nn.Module | None = None,
        u_encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        topography: nn.Module | None = None,
        lr: float = 1e-4,
        momentum: float = 0.9,
        eval_num_samples: int = 10,
        predict_num_observed: int = 1,
        average_completion: bool = False,
        compile_networks: bool = False,
        nonfinite_loss: str = "raise",
    ) -> None:
        if topography is None:
            grouping = TorusTopography(torus_height, torus_width, window, mu_init)
        else:
            grouping = topography
        latent_dim = torus_height * torus_width

        super().__init__(
            n_caps=1,
            cap_dim=latent_dim,
            seq_len=1,
            image_shape=image_shape,
            z_encoder=z_encoder,
            u_encoder=u_encoder or MLPEncoder(image_shape, latent_dim),
            decoder=decoder,
            topography=grouping,
            lr=lr,
            momentum=momentum,
            eval_num_samples=eval_num_samples,
            predict_num_observed=predict_num_observed,
            average_completion=average_completion,
            compile_networks=compile_networks,
            nonfinite_loss=nonfinite_loss,
        )
        # Called after the locals are final: it records the arguments as passed.
        self.save_hyperparameters()
