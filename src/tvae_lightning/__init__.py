"""Topographic VAEs (Keller and Welling, NeurIPS 2021) for PyTorch Lightning."""

from tvae_lightning.metrics import EquivarianceError
from tvae_lightning.models import SequenceVAE, TopographicVAE
from tvae_lightning.topography import (
    CapsuleTopography,
    InstantaneousCapsuleTopography,
    ShiftingCapsuleTopography,
    StationaryCapsuleTopography,
)

__version__ = "0.1.0"

__all__ = [
    "CapsuleTopography",
    "EquivarianceError",
    "InstantaneousCapsuleTopography",
    "SequenceVAE",
    "ShiftingCapsuleTopography",
    "StationaryCapsuleTopography",
    "TopographicVAE",
    "__version__",
]
