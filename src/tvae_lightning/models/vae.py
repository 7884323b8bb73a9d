"""The VAE baseline: no u latents and no topography."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from tvae_lightning.models.base import SequenceVAE


class VAE(SequenceVAE):
    """VAE over frame sequences with ``t = z`` and a standard normal prior.

    The baseline of Keller and Welling (NeurIPS 2021): the same encoder, decoder
    and loss as the TVAE, without the u encoder and the divisive normalisation.
    Frames are independent. ``t`` is still viewed as ``n_caps`` capsules of
    ``cap_dim`` units, so the equivariance metrics apply unchanged.

    Args:
        n_caps: number of capsules.
        cap_dim: units per capsule.
        seq_len: frames per sequence.
        image_shape: ``(channels, height, width)`` of one frame.
        z_encoder: Gaussian encoder of z; :class:`MLPEncoder` when ``None``.
        decoder: decoder to Bernoulli logits; :class:`MLPDecoder` when ``None``.
        lr: SGD learning rate.
        momentum: SGD momentum.
        eval_num_samples: importance samples per sequence for
            ``test/log_likelihood``.
        predict_num_observed: frames that ``predict_step`` encodes before it
            completes the rest of each sequence.
        average_completion: let ``predict_step`` average the predictions of all
            observed frames instead of rolling the last one only.
        compile_networks: compile the encoders and the decoder with
            ``torch.compile``.
        nonfinite_loss: ``"raise"`` or ``"skip"``, what a NaN or infinite
            training loss does; see :class:`SequenceVAE`.
    """

    def __init__(
        self,
        n_caps: int = 18,
        cap_dim: int = 18,
        seq_len: int = 18,
        image_shape: Sequence[int] = (3, 28, 28),
        z_encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        lr: float = 1e-4,
        momentum: float = 0.9,
        eval_num_samples: int = 10,
        predict_num_observed: int = 1,
        average_completion: bool = False,
        compile_networks: bool = False,
        nonfinite_loss: str = "raise",
    ) -> None:
        super().__init__(
            n_caps=n_caps,
            cap_dim=cap_dim,
            seq_len=seq_len,
            image_shape=image_shape,
            z_encoder=z_encoder,
            u_encoder=None,
            decoder=decoder,
            topography=None,
            lr=lr,
            momentum=momentum,
            eval_num_samples=eval_num_samples,
            predict_num_observed=predict_num_observed,
            average_completion=average_completion,
            compile_networks=compile_networks,
            nonfinite_loss=nonfinite_loss,
        )
        # Called after the locals are final: it records the arguments as passed.
        self.save_hyperparameters()
