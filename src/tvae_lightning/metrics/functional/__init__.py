"""Functional forms of the package's metrics."""

from tvae_lightning.metrics.functional.capcorr import (
    capsule_correlation,
    capsule_rolls,
    circular_cross_correlation,
)
from tvae_lightning.metrics.functional.equivariance import (
    equivariance_error,
    equivariance_error_by_offset,
    pairwise_equivariance_error,
)

__all__ = [
    "capsule_correlation",
    "capsule_rolls",
    "circular_cross_correlation",
    "equivariance_error",
    "equivariance_error_by_offset",
    "pairwise_equivariance_error",
]
