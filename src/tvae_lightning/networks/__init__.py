"""Encoder and decoder networks."""

from tvae_lightning.networks.gaussian import LOGVAR_MAX, LOGVAR_MIN, GaussianEncoder
from tvae_lightning.networks.mlp import MLPDecoder, MLPEncoder

__all__ = ["GaussianEncoder", "LOGVAR_MAX", "LOGVAR_MIN", "MLPDecoder", "MLPEncoder"]
