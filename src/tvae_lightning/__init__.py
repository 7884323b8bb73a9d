"""Topographic VAEs (Keller and Welling, NeurIPS 2021) for PyTorch Lightning."""

from tvae_lightning.metrics import CapsuleCorrelation, EquivarianceError
from tvae_lightning.models import (
    VAE,
    BubbleVAE,
    SequenceVAE,
    TopographicVAE,
    TopographicVAE2D,
)
from tvae_lightning.topography import (
    CapsuleTopography,
    InstantaneousCapsuleTopography,
    ShiftingCapsuleTopography,
    StationaryCapsuleTopography,
    TorusTopography,
)

__version__ = "0.1.0"

__all__ = [
    "BubbleVAE",
    "CapsuleCorrelation",
    "CapsuleTopography",
    "EquivarianceError",
    "InstantaneousCapsuleTopography",
    "SequenceVAE",
    "ShiftingCapsuleTopography",
    "StationaryCapsuleTopography",
    "TopographicVAE",
    "TopographicVAE2D",
    "TorusTopography",
    "VAE",
    "__version__",
]
