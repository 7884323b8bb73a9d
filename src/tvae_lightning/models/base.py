"""Base LightningModule shared by the TVAE and its baselines."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MeanMetric

from tvae_lightning.checkpointing import (
    MODEL_CLASS_KEY,
    RANDOM_STATES_KEY,
    check_checkpoint_fits,
    class_mismatch_error,
    qualified_name,
    random_states,
    restore_random_states,
    saved_model_class,
)
from tvae_lightning.metrics import CapsuleCorrelation, EquivarianceError
from tvae_lightning.models.completion import (
    SequenceCompletionMixin,
    check_num_observed,
)
from tvae_lightning.models.likelihood import estimate_log_likelihood
from tvae_lightning.models.losses import bernoulli_nll, gaussian_kl
from tvae_lightning.models.noise import keyed_normal
from tvae_lightning.networks import MLPDecoder, MLPEncoder

log = logging.getLogger(__name__)

NONFINITE_LOSS_MODES = ("raise", "skip")

TEST_METRICS_FILE = "test_metrics.json"
"""File in the logger's log_dir to which ``test`` writes its metrics."""


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


class SequenceVAE(SequenceCompletionMixin, L.LightningModule):
    """Encoders, an optional topography and a Bernoulli decoder over frame sequences.

    Each frame ``x_l`` of a sequence is encoded independently into ``q(z_l | x_l)``
    and, when ``u_encoder`` is given, ``q(u_l | x_l)``. The topography turns the
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
        z_encoder: Gaussian encoder of z; :class:`MLPEncoder` when ``None``.
        u_encoder: Gaussian encoder of u, or ``None`` for a model without u.
        decoder: maps ``(frames, D)`` to logits ``(frames, C, H, W)``;
            :class:`MLPDecoder` when ``None``.
        topography: maps ``z, u`` of shape ``(batch, seq_len, D)`` to t, or
            ``None`` for ``t = z``.
        lr: SGD learning rate.
        momentum: SGD momentum.
        eval_num_samples: importance samples per sequence for
            ``test/log_likelihood``.
        predict_num_observed: frames that ``predict_step`` encodes before it
            completes the rest of each sequence with :meth:`complete`.
        average_completion: let ``predict_step`` average the predictions of all
            observed frames instead of rolling the last one only.
        compile_networks: wrap the encoders and the decoder with
            ``torch.compile`` (in place, so checkpoint keys do not change). The
            topography and the loss are not compiled.
        nonfinite_loss: what a NaN or infinite training loss does: ``"raise"``
            stops training with ``FloatingPointError`` naming the step and the
            non-finite terms; ``"skip"`` logs a warning and skips the optimizer
            step, leaving the parameters unchanged. Under DDP every process
            skips or raises when any process sees a non-finite loss.
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
        eval_num_samples: int = 10,
        predict_num_observed: int = 1,
        average_completion: bool = False,
        compile_networks: bool = False,
        nonfinite_loss: str = "raise",
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
        _check_num_samples("eval_num_samples", eval_num_samples)
        self.eval_num_samples = eval_num_samples
        check_num_observed(predict_num_observed, seq_len, "predict_num_observed")
        self.predict_num_observed = predict_num_observed
        self.average_completion = average_completion
        if nonfinite_loss not in NONFINITE_LOSS_MODES:
            raise ValueError(
                f"nonfinite_loss must be one of {NONFINITE_LOSS_MODES}, got "
                f"{nonfinite_loss!r}"
            )
        self.nonfinite_loss = nonfinite_loss
        self.skipped_steps = 0

        self.z_encoder = z_encoder or MLPEncoder(self.image_shape, self.latent_dim)
        self.u_encoder = u_encoder
        self.decoder = decoder or MLPDecoder(self.image_shape, self.latent_dim)
        self.topography = topography
        self.check_networks()
        if compile_networks:
            self.compile_networks()

        self.val_equivariance = EquivarianceError()
        self.test_equivariance = EquivarianceError()
        self.eval_terms = nn.ModuleDict(
            {stage: _term_means() for stage in ("val", "test")}
        )
        self.test_log_likelihood = MeanMetric()
        # Built at the first test batch with a "varied" key, because the number
        # of transformations comes from the data module.
        self.test_capsule_correlation: CapsuleCorrelation | None = None

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
                outputs = _run_network(name, encoder, frame)
                shapes = [tuple(part.shape) for part in outputs]
                if shapes != [expected, expected]:
                    raise ValueError(
                        f"{name} must return (mean, logvar) of shape {expected} for "
                        f"one frame of image_shape {self.image_shape}, got {shapes}; "
                        f"n_caps * cap_dim = {self.n_caps} * {self.cap_dim} must "
                        f"equal the encoder's latent size"
                    )
            latents = torch.zeros(expected)
            output = tuple(_run_network("decoder", self.decoder, latents).shape)

        if output != (1, *self.image_shape):
            raise ValueError(
                f"decoder must map latents of shape {expected} to "
                f"{(1, *self.image_shape)}, got {output}; n_caps * cap_dim = "
                f"{self.latent_dim} and image_shape must match the decoder"
            )
        self.check_topography()

    def check_topography(self) -> None:
        """Raise ``ValueError`` unless the topography fits D and ``seq_len``.

        Checks the ``latent_dim`` and ``seq_len`` attributes, where the
        topography has them.
        """
        expected_sizes = {"latent_dim": self.latent_dim, "seq_len": self.seq_len}
        for name, expected in expected_sizes.items():
            value = getattr(self.topography, name, None)
            if value is not None and value != expected:
                raise ValueError(
                    f"topography has {name} = {value} but the model needs "
                    f"{expected} (n_caps * cap_dim = {self.n_caps} * "
                    f"{self.cap_dim}, seq_len = {self.seq_len}); build the "
                    f"topography with the model's n_caps, cap_dim and seq_len"
                )

    def compile_networks(self) -> None:
        """Compile the encoders and the decoder with ``torch.compile``, in place.

        ``nn.Module.compile`` keeps parameter names, so compiled and plain models
        share checkpoints. Compilation happens at the first forward pass.
        """
        for network in (self.z_encoder, self.u_encoder, self.decoder):
            if network is not None:
                network.compile()

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
        """Return the topographic latent t ``(batch, seq_len, D)`` of z and u.

        Under mixed precision the topography runs in float32 with autocast off,
        because autocast would otherwise run its pooling matrix product in
        bfloat16 or float16, where sums of dozens of squares lose digits.
        """
        if self.topography is None:
            return _upcast(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self.topography(_upcast(z), None if u is None else _upcast(u))

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
    def sample(mean: Tensor, logvar: Tensor, noise: Tensor | None = None) -> Tensor:
        """Draw ``mean + exp(logvar / 2) * eps``, in at least float32.

        ``eps`` is ``noise`` when given, else standard normal from the global
        generator.
        """
        mean, logvar = _upcast(mean), _upcast(logvar)
        if noise is None:
            noise = torch.randn_like(mean)
        return mean + torch.exp(0.5 * logvar) * noise

    @staticmethod
    def keyed_noise(
        reference: Tensor, keys: Tensor | None, stream: int
    ) -> Tensor | None:
        """Return noise shaped like ``reference`` with one fixed draw per key.

        ``keys`` contains one sample index per sequence. ``None`` returns
        ``None``, which makes :meth:`sample` use the global generator.
        """
        if keys is None:
            return None
        noise = keyed_normal(keys, tuple(reference.shape[1:]), stream=stream)
        return noise.to(reference.device)

    def elbo_terms(
        self, frames: Tensor, posterior: Posterior, noise_keys: Tensor | None = None
    ) -> ELBOTerms:
        """Return the negative ELBO terms of one reparameterised sample.

        With ``noise_keys`` (one sample index per sequence) the sample of each
        sequence is a fixed function of its index, so evaluation metrics do not
        depend on batching, on the number of processes or on the global
        generator. The terms are float32 under mixed precision: the topography
        runs with autocast off (:meth:`group`) and ``bernoulli_nll`` and
        ``gaussian_kl`` upcast their inputs.
        """
        z_noise = self.keyed_noise(posterior.z_mean, noise_keys, stream=0)
        z = self.sample(posterior.z_mean, posterior.z_logvar, z_noise)
        u = None
        kl_u = torch.zeros(z.shape[:2], device=z.device).flatten()
        if posterior.u_mean is not None:
            u_noise = self.keyed_noise(posterior.u_mean, noise_keys, stream=1)
            u = self.sample(posterior.u_mean, posterior.u_logvar, u_noise)
            kl_u = gaussian_kl(posterior.u_mean, posterior.u_logvar).flatten()

        logits = self.decode(self.group(z, u))

        return ELBOTerms(
            reconstruction=bernoulli_nll(logits.flatten(0, 1), frames.flatten(0, 1)),
            kl_z=gaussian_kl(posterior.z_mean, posterior.z_logvar).flatten(),
            kl_u=kl_u,
        )

    @torch.no_grad()
    def log_likelihood(
        self,
        x: Tensor,
        num_samples: int = 10,
        chunk_size: int | None = None,
        posterior: Posterior | None = None,
    ) -> Tensor:
        """Estimate ``log p(x_1..S) / S`` of each sequence by importance sampling.

        The encoders are the proposal. Each of the ``num_samples`` samples draws
        the latents of a whole sequence, because ``t`` couples frames through u,
        and gets one log weight ``log p(x | t) + log p(z) + log p(u) - log q(z | x)
        - log q(u | x)``. The estimate is ``logsumexp`` of the weights minus
        ``log(num_samples)``, divided by the number of frames S. Its expectation
        is a lower bound on ``log p(x) / S`` that tightens as ``num_samples``
        grows. Runs without gradients.

        Args:
            x: sequences ``(batch, seq_len, C, H, W)`` with intensities in [0, 1].
            num_samples: importance samples per sequence.
            chunk_size: samples decoded in one pass, to bound memory; all at once
                when ``None``. Chunks draw the noise in another order, so under
                one seed the estimate changes with ``chunk_size`` by the Monte
                Carlo error.
            posterior: ``self.encode(x)``, to reuse an encoding the caller has
                already computed; ``x`` is encoded here when ``None``. Its
                type, shapes and finiteness are checked, but the posterior of
                other frames of the same shape gives a wrong estimate without
                an error.

        Returns:
            Nats per frame, shape ``(batch,)``.
        """
        _check_num_samples("num_samples", num_samples)
        if chunk_size is not None:
            _check_num_samples("chunk_size", chunk_size)
        self.check_frames(x, "x")
        if posterior is not None:
            self.check_posterior(posterior, x)
        if x.shape[0] == 0:
            return x.new_zeros(0)

        return estimate_log_likelihood(self, x, num_samples, chunk_size, posterior)

    def check_posterior(self, posterior: Posterior, x: Tensor) -> None:
        """Raise unless ``posterior`` could be ``self.encode(x)``.

        Checks its type, whether it has u, and the shape and finiteness of each
        tensor; where it came from cannot be checked.
        """
        if not isinstance(posterior, Posterior):
            raise TypeError(
                "posterior must be the Posterior that model.encode(x) returns, got "
                f"{type(posterior).__name__}"
            )

        if (posterior.u_mean is None) != (self.u_encoder is None):
            has_u = "has" if posterior.u_mean is not None else "has no"
            wants_u = "has" if self.u_encoder is not None else "has no"
            raise ValueError(
                f"posterior {has_u} u but this model {wants_u} u encoder; pass "
                "posterior=model.encode(x) of this model or leave it out"
            )

        expected = (*x.shape[:2], self.latent_dim)
        names = ["z_mean", "z_logvar"]
        if self.u_encoder is not None:
            names += ["u_mean", "u_logvar"]
        for name in names:
            value = getattr(posterior, name)
            shape = None if value is None else tuple(value.shape)
            if shape != expected:
                raise ValueError(
                    f"posterior.{name} has shape {shape} but model.encode(x) gives "
                    f"{expected} (batch, seq_len, D); pass "
                    "posterior=model.encode(x) of this model or leave it out"
                )
            if not torch.isfinite(value).all():
                raise ValueError(f"posterior.{name} contains NaN or infinite values")

    def check_frames(self, frames: Tensor, name: str = "frames") -> None:
        """Raise ``ValueError`` unless ``frames`` are sequences this model takes.

        They must have shape ``(batch, seq_len, C, H, W)`` with this model's
        ``seq_len`` and ``image_shape``, and finite intensities in [0, 1].
        """
        expected = (self.seq_len, *self.image_shape)
        if frames.ndim != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f"{name} must have shape (batch, {', '.join(map(str, expected))}), "
                f"got {tuple(frames.shape)}"
            )
        if not torch.isfinite(frames).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        # The margin admits rounding errors of image transforms but catches
        # intensities in 0 .. 255.
        if frames.numel() and (frames.min() < -1e-3 or frames.max() > 1 + 1e-3):
            raise ValueError(
                f"{name} must contain intensities in [0, 1], got values from "
                f"{float(frames.min())} to {float(frames.max())}"
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

    def shared_step(self, batch: Any, stage: str) -> tuple[Tensor | None, Posterior]:
        """Compute and log the negative ELBO and its terms under ``stage/``.

        Evaluation batches with an ``indices`` entry draw their noise from the
        sample indices (see :meth:`elbo_terms`). A non-finite training loss
        raises or, with ``nonfinite_loss="skip"``, returns ``None`` as the loss
        without logging it.
        """
        frames = self.frames_of(batch)
        posterior = self.encode(frames)
        noise_keys = None
        if stage != "train" and isinstance(batch, dict):
            noise_keys = batch.get("indices")
        terms = self.elbo_terms(frames, posterior, noise_keys)
        loss = terms.loss.mean()
        if stage == "train" and not self.check_finite_loss(terms):
            return None, posterior

        if stage in self.eval_terms:
            self.log_eval_terms(stage, terms)
            return loss, posterior

        batch_size = frames.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=True,
                 on_epoch=True, batch_size=batch_size)
        parts = {
            f"{stage}/reconstruction": terms.reconstruction.mean(),
            f"{stage}/kl_z": terms.kl_z.mean(),
            f"{stage}/kl_u": terms.kl_u.mean(),
        }
        self.log_dict(parts, on_step=True, on_epoch=True, batch_size=batch_size)
        return loss, posterior

    def log_eval_terms(self, stage: str, terms: ELBOTerms) -> None:
        """Log the per-frame means of the loss terms of a ``val`` or ``test`` epoch.

        The means are torchmetrics ``MeanMetric`` objects, whose sums and counts
        add up over processes, so the epoch value equals that of one process
        however the sequences are split. Lightning's own mean of
        ``self.log(..., sync_dist=True)`` divides an integer sample count by
        the number of processes (Lightning 2.6), which is off when processes
        hold different numbers of sequences.
        """
        values = {
            "loss": terms.loss,
            "reconstruction": terms.reconstruction,
            "kl_z": terms.kl_z,
            "kl_u": terms.kl_u,
        }
        for name, value in values.items():
            metric = self.eval_terms[stage][name]
            metric.update(value)
            self.log(f"{stage}/{name}", metric, prog_bar=name == "loss")

    def capsules_of(self, posterior: Posterior) -> Tensor:
        """Return capsules of t at the posterior means, as the metrics use them."""
        t = self.group(posterior.z_mean, posterior.u_mean)
        return self.to_capsules(t)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        # None makes Lightning skip the backward pass and the optimizer step.
        loss, _ = self.shared_step(batch, "train")
        return loss

    def check_finite_loss(self, terms: ELBOTerms) -> bool:
        """Return whether the training step may go on with a finite loss.

        Returns ``False`` when a term is NaN or infinite on any process and
        ``nonfinite_loss`` is ``"skip"``. The check costs one device-to-host copy
        per step and, under DDP, one all-reduce of a flag.

        Raises:
            FloatingPointError: a term is not finite and ``nonfinite_loss`` is
                ``"raise"``; the message names the step and the terms.
        """
        parts = {
            "reconstruction": terms.reconstruction,
            "KL of z": terms.kl_z,
            "KL of u": terms.kl_u,
        }
        finite = torch.stack([torch.isfinite(part).all() for part in parts.values()])
        flags = finite.tolist()
        any_nonfinite = not all(flags)
        if self._trainer is not None:
            # Every process must take the same branch, or DDP waits forever
            # for gradients that one process never computes.
            strategy = self.trainer.strategy
            any_nonfinite = strategy.reduce_boolean_decision(any_nonfinite, all=False)
        if not any_nonfinite:
            return True

        names = [name for name, ok in zip(parts, flags) if not ok]
        where = ", ".join(names) if names else "a term on another process"
        message = (
            f"non-finite training loss at global step {self.global_step} "
            f"(epoch {self.current_epoch}): {where} is NaN or infinite"
        )
        if self.nonfinite_loss == "raise":
            raise FloatingPointError(
                f"{message}. Lower the learning rate, check the data for NaN "
                f"values, or pass nonfinite_loss='skip' to skip such steps."
            )
        # Warn once and then every 100 skips, so a diverged run does not flood
        # the log.
        self.skipped_steps += 1
        if self.skipped_steps == 1 or self.skipped_steps % 100 == 0:
            log.warning(
                "%s; skipping the optimizer step (%d skipped so far).",
                message, self.skipped_steps,
            )
        return False

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, posterior = self.shared_step(batch, "val")
        # A single frame has no frame pairs, so its equivariance error is undefined.
        if self.seq_len > 1:
            self.val_equivariance.update(self.capsules_of(posterior))
            self.log("val/equivariance_error", self.val_equivariance, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        _, posterior = self.shared_step(batch, "test")
        capsules = self.capsules_of(posterior)
        if self.seq_len > 1:
            self.test_equivariance.update(capsules)
            self.log("test/equivariance_error", self.test_equivariance)

        frames = self.frames_of(batch)
        log_likelihood = self.log_likelihood(
            frames, self.eval_num_samples, posterior=posterior
        )
        self.test_log_likelihood.update(log_likelihood)
        self.log("test/log_likelihood", self.test_log_likelihood)

        self.update_capsule_correlation(batch, capsules)

    def transformation_names(self) -> tuple[str, ...] | None:
        """Return the data module's ``factor_names``, or ``None`` without one."""
        if self._trainer is None:
            return None
        names = getattr(self.trainer.datamodule, "factor_names", None)
        return None if names is None else tuple(names)

    def update_capsule_correlation(self, batch: Any, capsules: Tensor) -> None:
        """Add a test batch to CapCorr when it names the factor each sequence varies.

        Needs a ``varied`` entry ``(batch,)`` in the batch, indexing the data
        module's ``factor_names``. Batches without it, and single frames, which
        have no roll to measure, are skipped.
        """
        names = self.transformation_names()
        if names is None or not isinstance(batch, dict) or "varied" not in batch:
            return
        if self.seq_len < 2:
            return

        if self.test_capsule_correlation is None:
            metric = CapsuleCorrelation(num_groups=len(names))
            self.test_capsule_correlation = metric.to(capsules.device)
        self.test_capsule_correlation.update(capsules, batch["varied"])

    def on_test_epoch_end(self) -> None:
        metric = self.test_capsule_correlation
        if metric is None:
            return

        # compute() has already summed the states of all processes. NaN marks a
        # factor that no test sequence varied, such as dSprites' shape.
        values = metric.compute().reshape(-1)
        names = self.transformation_names() or ()
        for name, value in zip(names, values):
            if not torch.isnan(value):
                self.log(f"test/capcorr_{name}", value)
        metric.reset()

    def on_test_end(self) -> None:
        self.save_test_metrics()

    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path: Any, *args: Any, **kwargs: Any
    ) -> SequenceVAE:
        """Load a checkpoint as Lightning does, naming the saving class on a mismatch.

        Rebuilding a model from another class's hyperparameters can fail in the
        constructor before the parameters are compared, as a TVAE's default
        ``time_window`` does against a VAE's ``seq_len``. Such a ``ValueError``
        or ``TypeError`` is replaced by one that names the class that saved the
        checkpoint.
        """
        try:
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        except (ValueError, TypeError) as error:
            if not isinstance(checkpoint_path, (str, os.PathLike)):
                raise
            mismatch = class_mismatch_error(cls, saved_model_class(checkpoint_path))
            if mismatch is None:
                raise
            raise mismatch from error

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODEL_CLASS_KEY] = qualified_name(type(self))
        # Process 0 writes the file. Its generator states equal those of the
        # other processes, which are seeded alike and draw equal shapes,
        # because the training sampler gives every process equal batches.
        checkpoint[RANDOM_STATES_KEY] = random_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_fits(self, checkpoint)
        # trainer.test(ckpt_path=...) does not restore trainer.global_step, so
        # the steps trained are kept here for the test record.
        self.checkpoint_global_step = int(checkpoint.get("global_step", 0))

        # Resumed training continues the random stream of the run it resumes;
        # load_from_checkpoint leaves the global generators alone.
        states = checkpoint.get(RANDOM_STATES_KEY)
        fitting = (
            self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        )
        if states is not None and fitting:
            restore_random_states(states)

    def save_test_metrics(self) -> Path | None:
        """Write the ``test/`` metrics to ``TEST_METRICS_FILE`` in the log folder.

        The record names the model class, its windows and the steps trained, so
        ``tvae-cli-results`` can tabulate runs without parsing event files. Only
        global rank 0 writes, and only when the trainer has a logger. Returns
        the path written, or ``None``.
        """
        trainer = self.trainer
        if not trainer.loggers:
            return None
        # Every process reads log_dir, because it is broadcast from rank 0.
        log_dir = trainer.log_dir
        if not trainer.is_global_zero or log_dir is None:
            return None

        # A NaN metric is written as null, so that the file stays valid JSON.
        metrics = {}
        for name, value in trainer.callback_metrics.items():
            if name.startswith("test/"):
                number = float(value)
                metrics[name] = number if math.isfinite(number) else None
        steps = max(trainer.global_step, getattr(self, "checkpoint_global_step", 0))

        record = {
            "model": type(self).__name__,
            "time_window": getattr(self.topography, "time_window", None),
            "capsule_window": getattr(self.topography, "capsule_window", None),
            "n_caps": self.n_caps,
            "cap_dim": self.cap_dim,
            "seq_len": self.seq_len,
            "global_step": steps,
            "ckpt_path": trainer.ckpt_path,
            "metrics": metrics,
        }

        path = Path(log_dir) / TEST_METRICS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        return path

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The fused kernel updates all parameters in one pass. On a 2-core CPU
        # it halves the update time of the Table 1 TVAE (10 of 20 ms a step, torch
        # 2.14), with the same update rule as the default for-loop kernel.
        return torch.optim.SGD(
            self.parameters(), lr=self.lr, momentum=self.momentum, fused=True
        )

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


def _run_network(name: str, network: nn.Module, inputs: Tensor) -> Any:
    """Call ``network`` and turn a shape error into a ``ValueError`` naming it."""
    try:
        return network(inputs)
    except RuntimeError as error:
        raise ValueError(
            f"{name} cannot take an input of shape {tuple(inputs.shape)} ({error}); "
            f"build it for the model's image_shape and n_caps * cap_dim"
        ) from error


def _term_means() -> nn.ModuleDict:
    # NaN values are kept, so that a diverged model shows a NaN loss.
    return nn.ModuleDict(
        {
            name: MeanMetric(nan_strategy="disable")
            for name in ("loss", "reconstruction", "kl_z", "kl_u")
        }
    )


def _upcast(x: Tensor) -> Tensor:
    """Return ``x`` in float32 when it is float16 or bfloat16, else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_num_samples(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
