"""LightningModules of the TVAE and its baselines."""

from tvae_lightning.models.base import ELBOTerms, Posterior, SequenceVAE
from tvae_lightning.models.bubble import BubbleVAE
from tvae_lightning.models.tvae import TopographicVAE
from tvae_lightning.models.tvae_2d import TopographicVAE2D
from tvae_lightning.models.vae import VAE

__all__ = [
    "BubbleVAE",
    "ELBOTerms",
    "Posterior",
    "SequenceVAE",
    "TopographicVAE",
    "TopographicVAE2D",
    "VAE",
]
