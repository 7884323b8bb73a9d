"""Numerical safety: non-finite losses, clamped log-variances, extreme inputs."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tvae_lightning import (
    BubbleVAE,
    ShiftingCapsuleTopography,
    StationaryCapsuleTopography,
    TopographicVAE,
)
from tvae_lightning.data import TransformingMNISTDataModule
from tvae_lightning.models import VAE, ELBOTerms
from tvae_lightning.models.losses import (
    bernoulli_log_prob,
    bernoulli_nll,
    gaussian_kl,
)
from tvae_lightning.models.noise import keyed_normal
from tvae_lightning.networks import LOGVAR_MAX, LOGVAR_MIN, GaussianEncoder, MLPEncoder

SMALL = {"n_caps": 2, "cap_dim": 4, "seq_len": 4}


class ShiftedEncoder(MLPEncoder):
    """MLP encoder whose mean is offset by a constant, to force huge latents."""

    def __init__(self, offset: float) -> None:
        super().__init__((3, 28, 28), SMALL["n_caps"] * SMALL["cap_dim"])
        self.offset = offset

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = super().forward(x)
        return mean + self.offset, logvar


class ConstantFeatures(GaussianEncoder):
    """Encoder whose raw mean and log-variance are all ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(latent_dim=3)
        self.value = torch.nn.Parameter(torch.tensor(value))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.value.expand(len(x), 6)


def small_tvae(**kwargs) -> TopographicVAE:
    return TopographicVAE(**SMALL, time_window=3, capsule_window=3, **kwargs)


def small_models() -> dict[str, torch.nn.Module]:
    return {
        "tvae": small_tvae(),
        "tvae_l0": TopographicVAE(**SMALL, time_window=0, capsule_window=3),
        "bubble": BubbleVAE(**SMALL, time_window=3, capsule_window=3),
        "vae": VAE(**SMALL),
    }


def fit_two_batches(model: L.LightningModule, data_root: Path) -> None:
    datamodule = TransformingMNISTDataModule(
        root=str(data_root), seq_len=SMALL["seq_len"], batch_size=4, download=False
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule)


def terms_with(name: str, value: float) -> ELBOTerms:
    parts = {key: torch.ones(6) for key in ("reconstruction", "kl_z", "kl_u")}
    parts[name][2] = value
    return ELBOTerms(**parts)


# -- non-finite losses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "label"),
    [("reconstruction", "reconstruction"), ("kl_z", "KL of z"), ("kl_u", "KL of u")],
)
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nonfinite_term_named_in_error(term: str, label: str, value: float):
    model = small_tvae()
    with pytest.raises(FloatingPointError, match=f"step 0 .*: {label} is NaN"):
        model.check_finite_loss(terms_with(term, value))


def test_nonfinite_error_names_only_offending_term():
    model = small_tvae()
    with pytest.raises(FloatingPointError) as error:
        model.check_finite_loss(terms_with("kl_u", math.nan))
    assert "reconstruction" not in str(error.value)


def test_finite_terms_pass():
    assert small_tvae().check_finite_loss(terms_with("kl_z", 2.0))


def test_skip_mode_returns_false():
    model = small_tvae(nonfinite_loss="skip")
    assert not model.check_finite_loss(terms_with("reconstruction", math.nan))


def test_fit_raises_on_huge_u(mnist_root: Path):
    # A mean of 1e20 makes KL(q(u)) overflow to infinity, while t = (z + mu) /
    # sqrt(v + eps) goes to 0 and keeps the reconstruction finite.
    model = small_tvae(u_encoder=ShiftedEncoder(1e20))
    with pytest.raises(FloatingPointError, match="global step 0 .*KL of u"):
        fit_two_batches(model, mnist_root)


def test_fit_skip_mode_leaves_parameters(mnist_root: Path):
    model = small_tvae(u_encoder=ShiftedEncoder(1e20), nonfinite_loss="skip")
    before = copy.deepcopy(model.state_dict())
    fit_two_batches(model, mnist_root)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_fit_skip_mode_trains_finite_model(mnist_root: Path):
    model = small_tvae(nonfinite_loss="skip")
    before = model.decoder.net[0].weight.detach().clone()
    fit_two_batches(model, mnist_root)
    assert not torch.equal(model.decoder.net[0].weight, before)


# -- clamped log-variances -----------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(1e6, LOGVAR_MAX), (-1e6, LOGVAR_MIN)])
def test_logvar_clamped(raw: float, expected: float):
    _, logvar = ConstantFeatures(raw)(torch.zeros(2, 1))
    assert torch.all(logvar == expected)


def test_logvar_range_documented_values():
    assert (LOGVAR_MIN, LOGVAR_MAX) == (-30.0, 20.0)


@pytest.mark.parametrize("logvar", [LOGVAR_MIN, LOGVAR_MAX])
def test_kl_finite_at_clamp_limits(logvar: float):
    kl = gaussian_kl(torch.zeros(1, 4), torch.full((1, 4), logvar))
    expected = 4 * 0.5 * (math.exp(logvar) - 1.0 - logvar)
    assert math.isclose(kl.item(), expected, rel_tol=1e-5)


# -- topography near u = 0 and for huge u ----------------------------------------


def topography_gradients(topography: torch.nn.Module, u_value: float) -> list[Tensor]:
    z = torch.randn(2, 4, 8, requires_grad=True)
    u = torch.full((2, 4, 8), u_value, requires_grad=True)
    topography(z, u).square().sum().backward()
    return [z.grad, u.grad, topography.mu.grad]


@pytest.mark.parametrize("u_value", [0.0, 1e-20, 1e-3, 1e6, 1e15])
@pytest.mark.parametrize(
    "topography_class", [ShiftingCapsuleTopography, StationaryCapsuleTopography]
)
def test_topography_gradients_finite(topography_class, u_value: float):
    topography = topography_class(2, 4, 4, 3, 3)
    for gradient in topography_gradients(topography, u_value):
        assert torch.isfinite(gradient).all()


def test_zero_u_scales_by_inverse_sqrt_eps():
    topography = ShiftingCapsuleTopography(2, 4, 4, 3, 3, mu_init=0.0)
    z = torch.ones(1, 4, 8)
    t = topography(z, torch.zeros(1, 4, 8))
    assert torch.allclose(t, torch.full_like(t, 1.0 / math.sqrt(topography.eps)))


# -- extreme frames and logits ---------------------------------------------------


@pytest.mark.parametrize("fill", [0.0, 1.0])
@pytest.mark.parametrize("name", ["tvae", "tvae_l0", "bubble", "vae"])
def test_extreme_frames_give_finite_gradients(name: str, fill: float):
    torch.manual_seed(0)
    model = small_models()[name]
    frames = torch.full((2, 4, 3, 28, 28), fill)
    loss = model.elbo_terms(frames, model.encode(frames)).loss.mean()
    loss.backward()
    assert torch.isfinite(loss)
    for parameter_name, parameter in model.named_parameters():
        assert torch.isfinite(parameter.grad).all(), parameter_name


def slow_bernoulli_nll(logits: Tensor, targets: Tensor) -> Tensor:
    # max(l, 0) - l * y + log(1 + exp(-|l|)), in float64, one frame at a time.
    rows = []
    for logit, target in zip(logits.double(), targets.double()):
        values = (
            logit.clamp(min=0) - logit * target + torch.log1p(torch.exp(-logit.abs()))
        )
        rows.append(values.sum())
    return torch.stack(rows)


def test_bernoulli_nll_large_logits_match_reference():
    logits = torch.tensor([[1e4, -1e4, 80.0, -80.0], [0.0, 3.0, -3.0, 1e30]])
    targets = torch.tensor([[0.0, 1.0, 0.5, 0.5], [0.5, 1.0, 0.0, 1.0]])
    expected = slow_bernoulli_nll(logits, targets).float()
    assert torch.allclose(bernoulli_nll(logits, targets), expected, rtol=1e-6)


def test_bernoulli_log_prob_broadcasts_and_keeps_large_logits():
        # Two samples of logits share one copy of the targets. The 1e30 logit has
    # target 1, so it contributes 0 and must not swamp the small terms of its row.
    logits = torch.tensor([
        [[1e4, -1e4, 80.0, -80.0], [0.0, 3.0, -3.0, 1e30]],
        [[0.5, -0.5, 2.0, -2.0], [7.0, -7.0, 0.1, -0.1]],
    ])
    targets = torch.tensor([[0.0, 1.0, 0.5, 0.5], [0.5, 1.0, 0.0, 1.0]])

    log_prob = bernoulli_log_prob(logits, targets)

    expected = torch.stack(
        [-slow_bernoulli_nll(sample, targets).float() for sample in logits]
    )
    assert log_prob.shape == (2, 2)
    assert torch.allclose(log_prob, expected, rtol=1e-6)


def test_bernoulli_nll_large_logits_finite_gradient():
    logits = torch.tensor([[1e4, -1e4, 1e30, -1e30]], requires_grad=True)
    bernoulli_nll(logits, torch.tensor([[0.0, 1.0, 0.5, 0.5]])).sum().backward()
    assert torch.isfinite(logits.grad).all()


# -- evaluation noise ------------------------------------------------------------


def test_keyed_normal_independent_of_batch():
    keys = torch.arange(10)
    together = keyed_normal(keys, (3, 5))
    alone = keyed_normal(keys[[7, 2]], (3, 5))
    assert torch.equal(alone, together[[7, 2]])


def test_keyed_normal_streams_differ():
    keys = torch.arange(4)
    assert not torch.equal(
        keyed_normal(keys, (8,), stream=0), keyed_normal(keys, (8,), stream=1)
    )


def test_keyed_normal_moments():
    noise = keyed_normal(torch.arange(500), (200,)).double()
    assert abs(noise.mean().item()) < 0.01
    assert abs(noise.std().item() - 1.0) < 0.01


def test_keyed_normal_tail_matches_normal():
    # About 4.55 % of a standard normal lies beyond two standard deviations.
    noise = keyed_normal(torch.arange(500), (200,))
    share = (noise.abs() > 2).double().mean().item()
    assert abs(share - 0.0455) < 0.003


def test_keyed_normal_rejects_float_keys():
    with pytest.raises(ValueError, match="keys must be a 1-D integer tensor"):
        keyed_normal(torch.zeros(3), (2,))


def test_evaluation_step_leaves_global_generator():
    model = small_tvae()
    frames = torch.rand(2, 4, 3, 28, 28)
    state = torch.get_rng_state()
    model.shared_step({"frames": frames, "indices": torch.tensor([4, 9])}, "val")
    assert torch.equal(torch.get_rng_state(), state)


def test_evaluation_loss_independent_of_batch_split():
    model = small_tvae()
    frames = torch.rand(3, 4, 3, 28, 28)
    keys = torch.tensor([0, 1, 2])
    posterior = model.encode(frames)
    together = model.elbo_terms(frames, posterior, keys).loss.view(3, 4)
    first = model.elbo_terms(frames[:1], model.encode(frames[:1]), keys[:1]).loss
    assert torch.allclose(first, together[0], rtol=1e-5)


def test_sample_upcasts_bfloat16():
    sample = TopographicVAE.sample(
        torch.zeros(2, 3, dtype=torch.bfloat16), torch.zeros(2, 3, dtype=torch.bfloat16)
    )
    assert sample.dtype == torch.float32


def test_reference_uses_softplus_identity():
    # The slow reference above equals the textbook form where that is finite.
    logits, targets = torch.tensor([[0.3, -1.2]]), torch.tensor([[0.2, 0.9]])
    textbook = F.binary_cross_entropy(torch.sigmoid(logits), targets, reduction="sum")
    assert torch.allclose(slow_bernoulli_nll(logits, targets).float(), textbook.view(1))
