"""Metrics of equivariance and likelihood."""

from tvae_lightning.metrics import functional
from tvae_lightning.metrics.capcorr import CapsuleCorrelation
from tvae_lightning.metrics.equivariance import EquivarianceError

__all__ = ["CapsuleCorrelation", "EquivarianceError", "functional"]
