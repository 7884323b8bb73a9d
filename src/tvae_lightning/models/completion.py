"""Sequence completion by rolling capsules, and the prediction step that runs it.

A TVAE trained on transformation sequences represents one step of the
transformation as a roll of every capsule by one unit. Rolling the capsules of
an encoded frame by ``n`` units and decoding should therefore give the frame
``n`` steps later (Keller and Welling, NeurIPS 2021, Figure 1), which completes
a sequence from its first frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from tvae_lightning.models.base import SequenceVAE


def roll_capsules(latents: Tensor, shifts: Tensor, cap_dim: int) -> Tensor:
    """Roll every capsule of each frame by that frame's shift.

    ``roll(x, s)[i] = x[(i - s) mod cap_dim]``, the convention of ``torch.roll`` and
    of the equivariance error, so frame ``l`` of an equivariant sequence is about
    ``roll_capsules(frame 0, l)``.

    Args:
        latents: ``(batch, frames, n_caps * cap_dim)``.
        shifts: integer shifts ``(frames,)``, one per frame.
        cap_dim: units per capsule.

    Returns:
        Tensor of the same shape as ``latents``.
    """
    batch, frames, latent_dim = latents.shape
    capsules = latents.reshape(batch, frames, latent_dim // cap_dim, cap_dim)

    units = torch.arange(cap_dim, device=latents.device)
    source = (units.unsqueeze(0) - shifts.to(latents.device).unsqueeze(1)) % cap_dim
    index = source[None, :, None, :].expand_as(capsules)
    rolled = torch.gather(capsules, dim=-1, index=index)

    return rolled.reshape(latents.shape)


def extend_by_rolling(latents: Tensor, seq_len: int, cap_dim: int) -> Tensor:
    """Append frames to ``(batch, k, D)`` latents up to ``seq_len`` frames.

    Frame ``l >= k`` is the last given frame rolled by ``l - (k - 1)`` units, the
    value an exactly equivariant encoder would give it.
    """
    num_given = latents.shape[1]
    if num_given == seq_len:
        return latents

    shifts = torch.arange(1, seq_len - num_given + 1, device=latents.device)
    last = latents[:, -1:].expand(-1, len(shifts), -1)
    return torch.cat([latents, roll_capsules(last, shifts, cap_dim)], dim=1)


def predict_by_rolling(
    observed: Tensor, seq_len: int, cap_dim: int, average: bool = False
) -> Tensor:
    """Predict t of frames ``k .. seq_len - 1`` from t of the first ``k`` frames.

    Without ``average`` frame ``l`` is the last observed frame rolled by
    ``l - (k - 1)``. With ``average`` it is the mean over the observed frames
    ``j`` of frame ``j`` rolled by ``l - j``.

    Args:
        observed: t of the observed frames, ``(batch, k, n_caps * cap_dim)``.
        seq_len: frames of the completed sequence.
        cap_dim: units per capsule.
        average: average the predictions of all observed frames.

    Returns:
        t of the missing frames, ``(batch, seq_len - k, n_caps * cap_dim)``.
    """
    batch, num_observed, latent_dim = observed.shape
    targets = torch.arange(num_observed, seq_len, device=observed.device)
    if not average:
        shifts = targets - (num_observed - 1)
        last = observed[:, -1:].expand(-1, len(targets), -1)
        return roll_capsules(last, shifts, cap_dim)

    # Every (observed frame j, target frame l) pair in one gather: shift l - j.
    sources = torch.arange(num_observed, device=observed.device)
    shifts = (targets.unsqueeze(0) - sources.unsqueeze(1)).flatten()
    repeated = observed.repeat_interleave(len(targets), dim=1)
    rolled = roll_capsules(repeated, shifts, cap_dim)
    rolled = rolled.reshape(batch, num_observed, len(targets), latent_dim)
    return rolled.mean(dim=1)


def check_num_observed(num_observed: int, seq_len: int, name: str) -> None:
    """Raise unless ``num_observed`` is an int from 1 to ``seq_len``.

    ``TypeError`` for a value that is not an int, ``ValueError`` for one out of
    range; ``name`` is the argument name the message uses.
    """
    if isinstance(num_observed, bool) or not isinstance(num_observed, int):
        raise TypeError(f"{name} must be an int, got {type(num_observed).__name__}")
    if not 1 <= num_observed <= seq_len:
        raise ValueError(
            f"{name} must be between 1 and the sequence length {seq_len}, "
            f"got {num_observed}"
        )


def observed_latents(model: SequenceVAE, frames: Tensor, num_observed: int) -> Tensor:
    """Return t ``(batch, k, D)`` of the first ``k`` frames, seeing only those.

    Only the first ``k`` frames are encoded, at the posterior means. Because t of
    a frame pools u over neighbouring frames, the z and u of the unseen frames
    are filled in by :func:`extend_by_rolling` before the topography runs.
    """
    seq_len = frames.shape[1]
    posterior = model.encode(frames[:, :num_observed])

    z = extend_by_rolling(posterior.z_mean, seq_len, model.cap_dim)
    u = posterior.u_mean
    if u is not None:
        u = extend_by_rolling(u, seq_len, model.cap_dim)

    return model.group(z, u)[:, :num_observed]


def complete_sequences(
    model: SequenceVAE, frames: Tensor, num_observed: int, average: bool = False
) -> Tensor:
    """Complete each sequence from its first ``num_observed`` frames.

    The observed frames are encoded (:func:`observed_latents`), t of the missing
    frames is predicted by rolling capsules (:func:`predict_by_rolling`), and all
    frames are decoded to Bernoulli probabilities ``sigmoid(logits)``. The first
    ``num_observed`` output frames are therefore reconstructions of the observed
    frames, not copies of them.

    Args:
        model: a :class:`~tvae_lightning.models.SequenceVAE`.
        frames: ``(batch, seq_len, C, H, W)``; only the first ``num_observed``
            frames are read, the rest only give the length.
        num_observed: ``k``, frames seen by the model, from 1 to ``seq_len``.
        average: predict each missing frame by the mean over all observed frames
            rolled by their distance to it, instead of from the last one only.

    Returns:
        Completed frames ``(batch, seq_len, C, H, W)`` in [0, 1].
    """
    model.check_frames(frames, "frames")
    seq_len = frames.shape[1]
    check_num_observed(num_observed, seq_len, "num_observed")

    observed = observed_latents(model, frames, num_observed)
    missing = predict_by_rolling(observed, seq_len, model.cap_dim, average)
    t = torch.cat([observed, missing.to(observed.dtype)], dim=1)

    return torch.sigmoid(model.decode(t))


class SequenceCompletionMixin:
    """Adds :meth:`complete` and a ``predict_step`` that completes sequences.

    The class it is mixed into provides ``encode``, ``group``, ``decode``,
    ``frames_of``, ``cap_dim`` and the settings ``predict_num_observed`` and
    ``average_completion``.
    """

    predict_num_observed: int
    average_completion: bool

    def complete(
        self, frames: Tensor, num_observed: int, average: bool = False
    ) -> Tensor:
        """Complete ``frames (batch, seq_len, C, H, W)`` from the first frames.

        See :func:`complete_sequences`: the first ``num_observed`` returned frames
        are reconstructions, the others are decoded rolls of the capsules, all as
        Bernoulli probabilities in [0, 1].
        """
        return complete_sequences(self, frames, num_observed, average)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Complete the batch from its first ``predict_num_observed`` frames.

        Returns a dict with ``frames`` (the true frames), ``completed`` (both
        ``(batch, seq_len, C, H, W)``), ``num_observed`` and ``average``, and
        ``labels`` when the batch has them.
        """
        frames = self.frames_of(batch)
        completed = self.complete(
            frames, self.predict_num_observed, self.average_completion
        )

        prediction = {
            "frames": frames,
            "completed": completed,
            "num_observed": self.predict_num_observed,
            "average": self.average_completion,
        }
        if isinstance(batch, dict) and "labels" in batch:
            prediction["labels"] = batch["labels"]
        return prediction
