"""TopographicVAE construction checks, loss terms and data checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tvae_lightning import TopographicVAE
from tvae_lightning.networks import MLPDecoder, MLPEncoder


def small_model(**kwargs) -> TopographicVAE:
    arguments = dict(n_caps=2, cap_dim=4, seq_len=4, time_window=3, capsule_window=1)
    arguments.update(kwargs)
    return TopographicVAE(**arguments)


def test_forward_returns_capsules():
    model = small_model()
    capsules = model(torch.rand(3, 4, 3, 28, 28))
    assert capsules.shape == (3, 4, 2, 4)


def test_paper_networks_layer_sizes():
    model = TopographicVAE()
    linears = [m for m in model.z_encoder.modules() if isinstance(m, nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    assert shapes == [(2352, 972), (972, 648), (648, 648)]
    linears = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    assert shapes == [(324, 648), (648, 972), (972, 2352)]


def test_elbo_terms_match_manual_computation():
    torch.manual_seed(0)
    model = small_model()
    frames = torch.rand(2, 4, 3, 28, 28)
    posterior = model.encode(frames)

    torch.manual_seed(1)
    terms = model.elbo_terms(frames, posterior)

    torch.manual_seed(1)
    z = posterior.z_mean + torch.exp(0.5 * posterior.z_logvar) * torch.randn_like(
        posterior.z_mean
    )
    u = posterior.u_mean + torch.exp(0.5 * posterior.u_logvar) * torch.randn_like(
        posterior.u_mean
    )
    probabilities = torch.sigmoid(model.decode(model.topography(z, u))).double()
    x = frames.double()
    bce = -(x * probabilities.log() + (1 - x) * (1 - probabilities).log())
    kl_z = 0.5 * (posterior.z_mean**2 + posterior.z_logvar.exp() - 1 - posterior.z_logvar)

    torch.testing.assert_close(
        terms.reconstruction.double(), bce.flatten(2).sum(-1).flatten(), rtol=1e-4, atol=1e-3
    )
    torch.testing.assert_close(terms.kl_z, kl_z.sum(-1).flatten())


def test_time_window_zero_pools_within_frame():
    model = small_model(time_window=0, capsule_window=3)
    assert model.topography.window == [(0, -1), (0, 0), (0, 1)]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"time_window": 5}, "time_window"),
        ({"capsule_window": 2}, "capsule_window"),
        ({"n_caps": 0}, "n_caps"),
    ],
)
def test_invalid_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        small_model(**kwargs)


def test_encoder_latent_mismatch_raises():
    encoder = MLPEncoder((3, 28, 28), latent_dim=10)
    with pytest.raises(ValueError, match="z_encoder.*n_caps \\* cap_dim"):
        small_model(z_encoder=encoder)


def test_decoder_image_mismatch_raises():
    decoder = MLPDecoder((1, 28, 28), latent_dim=8)
    with pytest.raises(ValueError, match="decoder"):
        small_model(decoder=decoder)


def test_hyperparameters_saved():
    model = small_model(mu_init=7.0)
    assert model.hparams.time_window == 3
    assert model.hparams.mu_init == 7.0
    assert math.isclose(model.topography.mu.item(), 7.0)


def test_log_likelihood_rejects_nan_frames():
    model = small_model()
    frames = torch.rand(2, 4, 3, 28, 28)
    frames[0, 1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        model.log_likelihood(frames, num_samples=2)


def test_complete_rejects_intensities_above_one():
    model = small_model()
    with pytest.raises(ValueError, match=r"frames must contain intensities in \[0, 1\]"):
        model.complete(torch.rand(2, 4, 3, 28, 28) * 5, num_observed=2)


def test_complete_rejects_other_sequence_length():
    model = small_model()
    with pytest.raises(ValueError, match=r"frames must have shape \(batch, 4, 3, 28, 28\)"):
        model.complete(torch.rand(2, 5, 3, 28, 28), num_observed=2)
