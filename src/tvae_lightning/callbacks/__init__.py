"""Lightning callbacks that draw what a model learned and write completions.

The image callbacks draw at validation ends every ``every_n_epochs`` epochs, on
global rank zero, and write each image to TensorBoard (loggers without
``add_image`` are skipped) and as ``<trainer.log_dir>/images/<name>_epoch<N>.png``.
Use them from a config as
``trainer.callbacks: - class_path: tvae_lightning.callbacks.ReconstructionImages``.
"""

from tvae_lightning.callbacks.activation_map import TopographicActivationMap
from tvae_lightning.callbacks.capsule_traversal import CapsuleTraversalImages
from tvae_lightning.callbacks.class_map import ClassMap
from tvae_lightning.callbacks.completion_writer import CompletionWriter
from tvae_lightning.callbacks.equivariance_plot import EquivarianceByOffsetPlot
from tvae_lightning.callbacks.image_logging import ValidationImageCallback
from tvae_lightning.callbacks.prior_samples import PriorSamples
from tvae_lightning.callbacks.reconstructions import ReconstructionImages

__all__ = [
    "CapsuleTraversalImages",
    "ClassMap",
    "CompletionWriter",
    "EquivarianceByOffsetPlot",
    "PriorSamples",
    "ReconstructionImages",
    "TopographicActivationMap",
    "ValidationImageCallback",
]
