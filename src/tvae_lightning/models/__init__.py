"""LightningModules of the TVAE and its baselines."""

from tvae_lightning.models.base import ELBOTerms, Posterior, SequenceVAE
from tvae_lightning.models.tvae import TopographicVAE

__all__ = ["ELBOTerms", "Posterior", "SequenceVAE", "TopographicVAE"]
