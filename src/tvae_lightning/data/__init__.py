"""Data modules that generate transformation sequences."""

from tvae_lightning.data.digits import DIGIT_DATASETS, DigitSource, load_digits
from tvae_lightning.data.images import MNISTImageDataModule
from tvae_lightning.data.dsprites import DSpritesSequenceDataModule
from tvae_lightning.data.mnist import TransformingMNISTDataModule
from tvae_lightning.data.sequences import (
    FACTOR_NAMES,
    TRANSFORMATIONS,
    TransformationSequences,
)

__all__ = [
    "DIGIT_DATASETS",
    "DSpritesSequenceDataModule",
    "DigitSource",
    "FACTOR_NAMES",
    "MNISTImageDataModule",
    "TRANSFORMATIONS",
    "TransformationSequences",
    "TransformingMNISTDataModule",
    "load_digits",
]
