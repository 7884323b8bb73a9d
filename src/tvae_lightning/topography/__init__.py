"""Topographies: how the u latents pool into the normaliser of the z latents."""

from tvae_lightning.topography.capsule import (
    CapsuleTopography,
    InstantaneousCapsuleTopography,
    ShiftingCapsuleTopography,
    StationaryCapsuleTopography,
    pooling_matrix,
)
from tvae_lightning.topography.torus import TorusTopography
from tvae_lightning.topography.windows import (
    centred_offsets,
    instantaneous_window,
    shifting_window,
    stationary_window,
)

__all__ = [
    "CapsuleTopography",
    "InstantaneousCapsuleTopography",
    "ShiftingCapsuleTopography",
    "StationaryCapsuleTopography",
    "TorusTopography",
    "centred_offsets",
    "instantaneous_window",
    "pooling_matrix",
    "shifting_window",
    "stationary_window",
]
