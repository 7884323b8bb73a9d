"""BubbleVAE: the TVAE's divisive normalisation with a window that does not shift."""

from __future__ import annotations

from torch import nn

from tvae_lightning.models.tvae import TopographicVAE
from tvae_lightning.topography import StationaryCapsuleTopography


class BubbleVAE(TopographicVAE):
    """VAE with stationary temporal coherence, the BubbleVAE baseline.

    ``t = (z + mu) / sqrt(v + eps)`` as in the TVAE, but ``v`` pools ``u ** 2``
    over the same ``capsule_window`` units in each of ``time_window`` frames,
    without the shift of one unit per frame (Keller and Welling, NeurIPS 2021).
    ``time_window=5, capsule_window=3`` pools 15 units.

    Takes the arguments of :class:`TopographicVAE`, defaults included, so pass
    ``time_window=5`` for the paper's Table 1 BubbleVAE. ``time_window`` must be
    at least 1.
    """

    @staticmethod
    def build_topography(
        n_caps: int,
        cap_dim: int,
        seq_len: int,
        time_window: int,
        capsule_window: int,
        mu_init: float,
    ) -> nn.Module:
        return StationaryCapsuleTopography(
            n_caps, cap_dim, seq_len, time_window, capsule_window, mu_init
        )
