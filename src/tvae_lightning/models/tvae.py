"""The Topographic VAE on frame sequences."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from tvae_lightning.models.base import SequenceVAE
from tvae_lightning.networks import MLPEncoder
from tvae_lightning.topography import (
    InstantaneousCapsuleTopography,
    ShiftingCapsuleTopography,
)


class TopographicVAE(SequenceVAE):
    """Topographic VAE with shifting temporal coherence (Keller and Welling, 2021).

    ``t = (z + mu) / sqrt(v + eps)``, where ``v`` pools ``u ** 2`` over a window of
    ``time_window`` frames that shifts one capsule unit per frame, ``capsule_window``
    units wide. ``time_window=0`` gives the TVAE without temporal coherence, which
    pools ``capsule_window`` units within each frame.

    Args:
        n_caps: number of capsules.
        cap_dim: units per capsule.
        seq_len: frames per sequence.
        time_window: L, frames in the window; 0 for no temporal coherence.
        capsule_window: K, the odd width of the window along a capsule.
        mu_init: initial value of the learnable shift ``mu``.
        image_shape: ``(channels, height, width)`` of one frame.
        z_encoder: Gaussian encoder of z; :class:`MLPEncoder` when ``None``.
        u_encoder: Gaussian encoder of u; :class:`MLPEncoder` when ``None``.
        decoder: decoder to Bernoulli logits; :class:`MLPDecoder` when ``None``.
        topography: replaces the window that ``time_window`` and
            ``capsule_window`` describe; called as ``topography(z, u)``.
        lr: SGD learning rate.
        momentum: SGD momentum.
        eval_num_samples: importance samples per sequence for
            ``test/log_likelihood``.
        predict_num_observed: frames that ``predict_step`` encodes before it
            completes the rest of each sequence.
        average_completion: let ``predict_step`` average the predictions of all
            observed frames instead of rolling the last one only.
        compile_networks: compile the encoders and the decoder with
            ``torch.compile``.
        nonfinite_loss: ``"raise"`` or ``"skip"``, what a NaN or infinite
            training loss does; see :class:`SequenceVAE`.
    """

    def __init__(
        self,
        n_caps: int = 18,
        cap_dim: int = 18,
        seq_len: int = 18,
        time_window: int = 13,
        capsule_window: int = 3,
        mu_init: float = 30.0,
        image_shape: Sequence[int] = (3, 28, 28),
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
            grouping = self.build_topography(
                n_caps, cap_dim, seq_len, time_window, capsule_window, mu_init
            )
        else:
            grouping = topography

        super().__init__(
            n_caps=n_caps,
            cap_dim=cap_dim,
            seq_len=seq_len,
            image_shape=image_shape,
            z_encoder=z_encoder,
            u_encoder=u_encoder or MLPEncoder(image_shape, n_caps * cap_dim),
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

    @staticmethod
    def build_topography(
        n_caps: int,
        cap_dim: int,
        seq_len: int,
        time_window: int,
        capsule_window: int,
        mu_init: float,
    ) -> nn.Module:
        """Return the topography used when none is passed in."""
        if time_window < 0:
            raise ValueError(
                f"time_window must be 0 (no temporal coherence) or between 1 and "
                f"min(seq_len, cap_dim) = {min(seq_len, cap_dim)}, got {time_window}"
            )
        if time_window == 0:
            return InstantaneousCapsuleTopography(
                n_caps, cap_dim, seq_len, 0, capsule_window, mu_init
            )
        return ShiftingCapsuleTopography(
            n_caps, cap_dim, seq_len, time_window, capsule_window, mu_init
        )
