"""Sequence completion by rolling capsules."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from tvae_lightning import SequenceVAE, ShiftingCapsuleTopography, TopographicVAE
from tvae_lightning.models.completion import (
    complete_sequences,
    predict_by_rolling,
    roll_capsules,
)

N_CAPS = 2
CAP_DIM = 5
SEQ_LEN = 5
IMAGE_SHAPE = (1, 6, 6)


def slow_roll(latents: Tensor, shifts: list[int], cap_dim: int) -> Tensor:
    """Roll each frame's capsules with torch.roll, one frame at a time."""
    frames = []
    for index, shift in enumerate(shifts):
        capsules = latents[:, index].reshape(latents.shape[0], -1, cap_dim)
        frames.append(capsules.roll(shift, dims=-1).flatten(1))
    return torch.stack(frames, dim=1)


def test_roll_capsules_matches_torch_roll() -> None:
    latents = torch.randn(3, 4, N_CAPS * CAP_DIM)
    shifts = [0, 1, -2, 7]

    rolled = roll_capsules(latents, torch.tensor(shifts), CAP_DIM)

    torch.testing.assert_close(rolled, slow_roll(latents, shifts, CAP_DIM))


def test_predict_by_rolling_uses_last_frame() -> None:
    observed = torch.randn(2, 2, N_CAPS * CAP_DIM)

    predicted = predict_by_rolling(observed, seq_len=5, cap_dim=CAP_DIM)

    last = observed[:, 1:].expand(-1, 3, -1)
    torch.testing.assert_close(predicted, slow_roll(last, [1, 2, 3], CAP_DIM))


def test_predict_by_rolling_averages_observed_frames() -> None:
    observed = torch.randn(2, 3, N_CAPS * CAP_DIM)

    predicted = predict_by_rolling(observed, seq_len=6, cap_dim=CAP_DIM, average=True)

    expected = torch.zeros(2, 3, N_CAPS * CAP_DIM)
    for target in range(3, 6):
        for source in range(3):
            frame = observed[:, source : source + 1]
            rolled = slow_roll(frame, [target - source], CAP_DIM)[:, 0]
            expected[:, target - 3] += rolled / 3
    torch.testing.assert_close(predicted, expected)


# -- a model that is equivariant by construction ------------------------------


class LinearDecoder(nn.Module):
    """Fixed affine map from t to logits."""

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, t: Tensor) -> Tensor:
        return (t @ self.weight.T + self.bias).reshape(-1, *IMAGE_SHAPE)


def u_of(t: Tensor) -> Tensor:
    """Elementwise, so it commutes with capsule rolls."""
    return 0.5 + 0.1 * t**2


class InvertingEncoder(nn.Module):
    """Recover t of a frame exactly and return the z or u mean that produces it.

    u is ``u_of(t)``. For z, the encoder computes the energy that the shifting
    window pools when every frame is a roll of this one (``u[l + a] =
    roll(u[l], a)``), ``v[i] = sum over (a, k) of u[(i + k - a) mod cap_dim] ** 2``,
    and returns ``z = t * sqrt(v + eps) - mu``.
    """

    def __init__(
        self, decoder: LinearDecoder, role: str, topography: nn.Module | None
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.role = role
        self.topography = topography
        self.pinv = torch.linalg.pinv(decoder.weight.double())

    def recover_t(self, frames: Tensor) -> Tensor:
        p = frames.flatten(1).double().clamp(1e-12, 1 - 1e-12)
        logits = torch.log(p) - torch.log1p(-p)
        return (logits - self.decoder.bias.double()) @ self.pinv.T

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        t = self.recover_t(frames)
        zeros = torch.zeros_like(t, dtype=torch.float32)
        if self.role == "u":
            return u_of(t).float(), zeros
        if self.topography is None:
            return t.float(), zeros

        capsules = u_of(t).reshape(len(t), N_CAPS, CAP_DIM)
        energy = torch.zeros_like(capsules)
        for time_offset, unit_offset in self.topography.window:
            shift = unit_offset - time_offset
            energy += capsules.roll(-shift, dims=-1) ** 2
        energy = energy.reshape(len(t), -1)
        mu = float(self.topography.mu)
        z = t * torch.sqrt(energy + self.topography.eps) - mu
        return z.float(), zeros


def equivariant_model(with_topography: bool) -> SequenceVAE:
    generator = torch.Generator().manual_seed(0)
    pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
    weight = 0.3 * torch.randn(pixels, N_CAPS * CAP_DIM, generator=generator)
    bias = 0.1 * torch.randn(pixels, generator=generator)
    decoder = LinearDecoder(weight, bias)

    topography = None
    u_encoder = None
    if with_topography:
        topography = ShiftingCapsuleTopography(
            N_CAPS, CAP_DIM, SEQ_LEN, time_window=3, capsule_window=3, mu_init=2.0
        )
        u_encoder = InvertingEncoder(decoder, "u", topography)

    return SequenceVAE(
        n_caps=N_CAPS,
        cap_dim=CAP_DIM,
        seq_len=SEQ_LEN,
        image_shape=IMAGE_SHAPE,
        z_encoder=InvertingEncoder(decoder, "z", topography),
        u_encoder=u_encoder,
        decoder=decoder,
        topography=topography,
    )


def rolled_sequences(model: SequenceVAE, batch: int = 3) -> Tensor:
    """Frames ``sigmoid(decoder(roll(t0, l)))`` for l = 0 .. SEQ_LEN - 1."""
    generator = torch.Generator().manual_seed(1)
    first = torch.randn(batch, N_CAPS, CAP_DIM, generator=generator)
    t = torch.stack([first.roll(step, dims=-1) for step in range(SEQ_LEN)], dim=1)
    logits = model.decoder(t.reshape(batch * SEQ_LEN, -1))
    return torch.sigmoid(logits).reshape(batch, SEQ_LEN, *IMAGE_SHAPE)


@pytest.mark.parametrize("with_topography", [False, True])
@pytest.mark.parametrize("num_observed", [1, 2, 4])
@pytest.mark.parametrize("average", [False, True])
def test_complete_reproduces_equivariant_frames(
    with_topography: bool, num_observed: int, average: bool
) -> None:
    model = equivariant_model(with_topography)
    frames = rolled_sequences(model)

    with torch.no_grad():
        completed = model.complete(frames, num_observed, average=average)

    assert completed.shape == frames.shape
    torch.testing.assert_close(completed, frames, rtol=0, atol=1e-4)


def test_complete_ignores_unobserved_frames() -> None:
    model = equivariant_model(with_topography=True)
    frames = rolled_sequences(model)
    scrambled = frames.clone()
    scrambled[:, 2:] = torch.rand_like(scrambled[:, 2:])

    with torch.no_grad():
        expected = model.complete(frames, 2)
        actual = model.complete(scrambled, 2)

    torch.testing.assert_close(actual, expected)


def test_complete_all_observed_equals_reconstruction() -> None:
    torch.manual_seed(0)
    model = TopographicVAE(
        n_caps=2, cap_dim=4, seq_len=4, time_window=3, capsule_window=1
    )
    frames = torch.rand(2, 4, 3, 28, 28)

    with torch.no_grad():
        completed = model.complete(frames, 4)
        posterior = model.encode(frames)
        t = model.group(posterior.z_mean, posterior.u_mean)
        reconstruction = torch.sigmoid(model.decode(t))

    torch.testing.assert_close(completed, reconstruction)
    # An untrained decoder gives probabilities near 0.5, not copies of the input.
    assert not torch.allclose(completed, frames, atol=0.1)


def test_complete_sequences_function_matches_method() -> None:
    model = equivariant_model(with_topography=True)
    frames = rolled_sequences(model)

    with torch.no_grad():
        method = model.complete(frames, 3, average=True)
        function = complete_sequences(model, frames, 3, average=True)

    torch.testing.assert_close(method, function)


@pytest.mark.parametrize("num_observed", [0, SEQ_LEN + 1])
def test_complete_rejects_num_observed_out_of_range(num_observed: int) -> None:
    model = equivariant_model(with_topography=False)
    frames = rolled_sequences(model)

    with pytest.raises(ValueError, match="num_observed must be between 1 and"):
        model.complete(frames, num_observed)


def test_complete_rejects_frames_without_sequence_axis() -> None:
    model = equivariant_model(with_topography=False)

    with pytest.raises(ValueError, match="frames must have shape"):
        model.complete(torch.rand(2, *IMAGE_SHAPE), 1)


def test_model_rejects_predict_num_observed_above_seq_len() -> None:
    with pytest.raises(ValueError, match="predict_num_observed must be between 1"):
        SequenceVAE(n_caps=2, cap_dim=4, seq_len=4, predict_num_observed=5)


def test_predict_step_returns_completion_of_batch() -> None:
    model = equivariant_model(with_topography=True)
    model.predict_num_observed = 2
    frames = rolled_sequences(model)
    labels = torch.arange(3)

    with torch.no_grad():
        prediction = model.predict_step({"frames": frames, "labels": labels}, 0)

    assert prediction["num_observed"] == 2
    assert prediction["frames"] is frames
    assert torch.equal(prediction["labels"], labels)
    torch.testing.assert_close(prediction["completed"], frames, rtol=0, atol=1e-4)
