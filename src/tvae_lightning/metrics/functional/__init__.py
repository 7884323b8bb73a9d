"""Functional forms of the package's metrics."""

from tvae_lightning.metrics.functional.equivariance import (
    equivariance_error,
    equivariance_error_by_offset,
    pairwise_equivariance_error,
)

__all__ = [
    "equivariance_error",
    "equivariance_error_by_offset",
    "pairwise_equivariance_error",
]
