"""Base LightningModule shared by the TVAE and its baselines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from tvae_lightning.metrics import EquivarianceError
from tvae_lightning.models.losses import bernoulli_nll, gaussian_kl
from tvae_lightning.networks import MLPDecoder, MLPEncoder


@dataclass
class Posterior:
    """Means and log-variances of ``q(z | x)`` and ``q(u | x)``, ``(batch, seq_len, D)``.

    ``u_mean`` and ``u_logvar`` are ``None`` for a model without a u encoder.
    """

    z_mean: Tensor
    z_logvar: Tensor
    u_mean: Tensor | None = None
    u_logvar: Tensor | None = None


@dataclass
class ELBOTerms:
    """Per-frame terms of the negative ELBO, each of shape ``(batch * seq_len,)``."""

    reconstruction: Tensor
    kl_z: Tensor
    kl_u: Tensor

    @property
    def loss(self) -> Tensor:
        return self.reconstruction + self.kl_z + self.kl_u


class SequenceVAE(L.LightningModule):
    """Encoders, an optional topography and a Bernoulli decoder over frame sequences.

    Each frame ``x_l`` of a sequence is encoded independently into ``q(z_l | x_l)``
    and, when ``u_encoder`` is given, ``q(u_l | x_l)``; the topography turns the
    sampled ``z`` and ``u`` of the whole sequence into ``t``, which the decoder
    maps to Bernoulli logits per pixel. The loss is the negative ELBO per frame:
    summed binary cross-entropy plus ``KL(q(z) || N(0, I))`` plus
    ``KL(q(u) || N(0, I))``, averaged over the frames of a batch.

    Batches are dicts with ``frames`` of shape ``(batch, seq_len, C, H, W)`` in
    [0, 1], or such a tensor alone.

    Args:
        n_caps: number of capsules.
        cap_dim: units per capsule; ``n_caps * cap_dim`` is the latent size D.
        seq_len: frames per sequence.
        image_shape: ``(channels, height, width)`` of one frame.
        z_encoder: Gaussian encoder of z; the paper's MLP when ``None``.
        u_encoder: Gaussian encoder of u, or ``None`` for a model without u.
        decoder: maps ``(frames, D)`` to logits ``(frames, C, H, W)``; the paper's
            MLP when ``None``.
        topography: maps ``z, u`` of shape ``(batch, seq_len, D)`` to t, or
            ``None`` for ``t = z``.
        lr: SGD learning rate.
        momentum: SGD momentum.
    """

    def __init__(
        self,
        n_caps: int = 18,
        cap_dim: int = 18,
        seq_len: int = 18,
        image_shape: Sequence[int] = (3, 28, 28),
        z_encoder: nn.Module | None = None,
        u_encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        topography: nn.Module | None = None,
        lr: float = 1e-4,
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        for name, value in (("n_caps", n_caps), ("cap_dim", cap_dim), ("seq_len", seq_len)):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if len(image_shape) != 3:
            raise ValueError(
                f"image_shape must be (channels, height, width), got {image_shape}"
            )

        self.n_caps = n_caps
        self.cap_dim = cap_dim
        self.seq_len = seq_len
        self.image_shape = tuple(image_shape)
        self.latent_dim = n_caps * cap_dim
        self.lr = lr
        self.momentum = momentum

        self.z_encoder = z_encoder or MLPEncoder(self.image_shape, self.latent_dim)
        self.u_encoder = u_encoder
        self.decoder = decoder or MLPDecoder(self.image_shape, self.latent_dim)
        self.topography = topography
        self.check_networks()

        self.val_equivariance = EquivarianceError()
        self.test_equivariance = EquivarianceError()

    def check_networks(self) -> None:
        """Raise ``ValueError`` unless the networks fit ``image_shape`` and D.

        One zero frame runs through each network on the CPU, without gradients.
        """
        frame = torch.zeros(1, *self.image_shape)
        expected = (1, self.latent_dim)
        encoders = [("z_encoder", self.z_encoder)]
        if self.u_encoder is not None:
            encoders.append(("u_encoder", self.u_encoder))

        with torch.no_grad():
            for name, encoder in encoders:
                shapes = [tuple(part.shape) for part in encoder(frame)]
                if shapes != [expected, expected]:
                    raise ValueError(
                        f"{name} must return (mean, logvar) of shape {expected} for "
                        f"one frame of image_shape {self.image_shape}, got {shapes}; "
                        f"n_caps * cap_dim = {self.n_caps} * {self.cap_dim} must "
                        f"equal the encoder's latent size"
                    )
            output = tuple(self.decoder(torch.zeros(expected)).shape)

        if output != (1, *self.image_shape):
            raise ValueError(
                f"decoder must map latents of shape {expected} to "
                f"{(1, *self.image_shape)}, got {output}; n_caps * cap_dim = "
                f"{self.latent_dim} and image_shape must match the decoder"
            )

    # -- model ---------------------------------------------------------------

    def encode(self, frames: Tensor) -> Posterior:
        """Encode ``frames (batch, seq_len, C, H, W)`` one frame at a time."""
        batch, seq_len = frames.shape[:2]
        flat = frames.flatten(0, 1)
        shape = (batch, seq_len, self.latent_dim)

        z_mean, z_logvar = self.z_encoder(flat)
        posterior = Posterior(z_mean.view(shape), z_logvar.view(shape))
        if self.u_encoder is not None:
            u_mean, u_logvar = self.u_encoder(flat)
            posterior.u_mean = u_mean.view(shape)
            posterior.u_logvar = u_logvar.view(shape)
        return posterior

    def group(self, z: Tensor, u: Tensor | None) -> Tensor:
        """Return the topographic latent t ``(batch, seq_len, D)`` of z and u."""
        if self.topography is None:
            return z
        return self.topography(z, u)

    def decode(self, t: Tensor) -> Tensor:
        """Return Bernoulli logits ``(batch, seq_len, C, H, W)`` of ``t``."""
        logits = self.decoder(t.flatten(0, 1))
        return logits.view(*t.shape[:2], *self.image_shape)

    def forward(self, frames: Tensor) -> Tensor:
        """Return the capsules of t at the posterior means, ``(batch, S, n_caps, cap_dim)``."""
        posterior = self.encode(frames)
        t = self.group(posterior.z_mean, posterior.u_mean)
        return self.to_capsules(t)

    def to_capsules(self, t: Tensor) -> Tensor:
        return t.reshape(*t.shape[:2], self.n_caps, self.cap_dim)

    @staticmethod
    def sample(mean: Tensor, logvar: Tensor) -> Tensor:
        """Draw ``mean + exp(logvar / 2) * eps`` with standard normal ``eps``."""
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    def elbo_terms(self, frames: Tensor, posterior: Posterior) -> ELBOTerms:
        """Return the negative ELBO terms of one reparameterised sample."""
        z = self.sample(posterior.z_mean, posterior.z_logvar)
        u = None
        kl_u = torch.zeros(z.shape[:2], device=z.device).flatten()
        if posterior.u_mean is not None:
            u = self.sample(posterior.u_mean, posterior.u_logvar)
            kl_u = gaussian_kl(posterior.u_mean, posterior.u_logvar).flatten()

        logits = self.decode(self.group(z, u))

        return ELBOTerms(
            reconstruction=bernoulli_nll(logits.flatten(0, 1), frames.flatten(0, 1)),
            kl_z=gaussian_kl(posterior.z_mean, posterior.z_logvar).flatten(),
            kl_u=kl_u,
        )

    # -- training ------------------------------------------------------------

    @staticmethod
    def frames_of(batch: Any) -> Tensor:
        """Return the frames of a batch given as a dict or a tensor."""
        frames = batch["frames"] if isinstance(batch, dict) else batch
        if frames.ndim != 5:
            raise ValueError(
                "frames must have shape (batch, seq_len, channels, height, width), "
                f"got {tuple(frames.shape)}"
            )
        return frames

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor, Posterior]:
        """Compute and log the negative ELBO and its terms under ``stage/``."""
        frames = self.frames_of(batch)
        posterior = self.encode(frames)
        terms = self.elbo_terms(frames, posterior)
        loss = terms.loss.mean()

        on_step = stage == "train"
        batch_size = frames.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=on_step,
                 on_epoch=True, batch_size=batch_size, sync_dist=not on_step)
        parts = {
            f"{stage}/reconstruction": terms.reconstruction.mean(),
            f"{stage}/kl_z": terms.kl_z.mean(),
            f"{stage}/kl_u": terms.kl_u.mean(),
        }
        self.log_dict(parts, on_step=on_step, on_epoch=True,
                      batch_size=batch_size, sync_dist=not on_step)
        return loss, posterior

    def capsules_of(self, posterior: Posterior) -> Tensor:
        """Return capsules of t at the posterior means, as the metrics use them."""
        t = self.group(posterior.z_mean, posterior.u_mean)
        return self.to_capsules(t)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, _ = self.shared_step(batch, "train")
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, posterior = self.shared_step(batch, "val")
        self.val_equivariance.update(self.capsules_of(posterior))
        self.log("val/equivariance_error", self.val_equivariance, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        _, posterior = self.shared_step(batch, "test")
        self.test_equivariance.update(self.capsules_of(posterior))
        self.log("test/equivariance_error", self.test_equivariance)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)

    def setup(self, stage: str) -> None:
        self.check_data()

    def check_data(self) -> None:
        """Raise ``ValueError`` when the data module's frames do not fit the model."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is None:
            return

        seq_len = getattr(datamodule, "seq_len", None)
        if seq_len is not None and seq_len != self.seq_len:
            raise ValueError(
                f"the data module yields sequences of {seq_len} frames but the "
                f"model's seq_len is {self.seq_len}; set model seq_len or data "
                f"seq_len so that they are equal"
            )
        image_shape = getattr(datamodule, "image_shape", None)
        if image_shape is not None and tuple(image_shape) != self.image_shape:
            raise ValueError(
                f"the data module yields frames of shape {tuple(image_shape)} but "
                f"the model's image_shape is {self.image_shape}; set model "
                f"image_shape to {list(image_shape)}"
            )
