"""Importance-sampled log-likelihood: exact cases, a slow reference and a toy model."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from tvae_lightning import VAE, BubbleVAE, TopographicVAE
from tvae_lightning.data import TransformingMNISTDataModule
from tvae_lightning.models.likelihood import draw_latents, log_importance_weights

IMAGE_SHAPE = (1, 4, 4)
SMALL = {"n_caps": 2, "cap_dim": 4, "seq_len": 3, "image_shape": IMAGE_SHAPE}


def build_model(name: str) -> L.LightningModule:
    if name == "tvae":
        return TopographicVAE(time_window=3, capsule_window=3, **SMALL)
    if name == "tvae_L0":
        return TopographicVAE(time_window=0, capsule_window=3, **SMALL)
    if name == "bubble":
        return BubbleVAE(time_window=3, capsule_window=3, **SMALL)
    return VAE(**SMALL)


MODELS = ["tvae", "tvae_L0", "bubble", "vae"]


def last_linear(network: nn.Module) -> nn.Linear:
    return [layer for layer in network.modules() if isinstance(layer, nn.Linear)][-1]


def make_prior_model(name: str, logits: torch.Tensor) -> L.LightningModule:
    """A model with q equal to the prior and a decoder that ignores its input."""
    model = build_model(name)
    encoders = [model.z_encoder] + ([model.u_encoder] if model.u_encoder else [])
    with torch.no_grad():
        for encoder in encoders:
            layer = last_linear(encoder)
            layer.weight.zero_()
            layer.bias.zero_()
        layer = last_linear(model.decoder)
        layer.weight.zero_()
        layer.bias.copy_(logits.flatten())
    return model


def exact_log_likelihood_per_frame(x: torch.Tensor, logits: torch.Tensor) -> list:
    """log p(x) / S under independent Bernoulli pixels, one pixel at a time."""
    values = []
    flat_logits = logits.flatten().tolist()
    for sequence in x:
        total = 0.0
        for frame in sequence:
            for target, logit in zip(frame.flatten().tolist(), flat_logits):
                p = 1.0 / (1.0 + math.exp(-logit))
                total += target * math.log(p) + (1.0 - target) * math.log(1.0 - p)
        values.append(total / len(sequence))
    return values


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("num_samples", [1, 2, 10, 37])
def test_log_likelihood_exact_when_q_is_prior(name: str, num_samples: int):
    torch.manual_seed(0)
    logits = torch.randn(IMAGE_SHAPE) * 2.0
    model = make_prior_model(name, logits)
    x = torch.rand(3, 3, *IMAGE_SHAPE)

    estimate = model.log_likelihood(x, num_samples=num_samples)
    exact = torch.tensor(exact_log_likelihood_per_frame(x, logits))

    torch.testing.assert_close(estimate, exact, rtol=1e-5, atol=1e-4)


def test_log_likelihood_exact_with_chunks():
    torch.manual_seed(0)
    logits = torch.randn(IMAGE_SHAPE)
    model = make_prior_model("tvae", logits)
    x = torch.rand(2, 3, *IMAGE_SHAPE)

    estimate = model.log_likelihood(x, num_samples=10, chunk_size=3)
    exact = torch.tensor(exact_log_likelihood_per_frame(x, logits))

    torch.testing.assert_close(estimate, exact, rtol=1e-5, atol=1e-4)


def slow_log_weight(model, x, posterior, z, u, n: int, b: int) -> float:
    """log w of sample n of sequence b, frame by frame with torch.distributions."""
    normal = torch.distributions.Normal
    t = model.group(z[n, b : b + 1], None if u is None else u[n, b : b + 1])
    total = 0.0
    for frame in range(x.shape[1]):
        logits = model.decoder(t[0, frame : frame + 1])[0]
        target = x[b, frame]
        log_p = torch.nn.functional.logsigmoid(logits)
        log_not_p = torch.nn.functional.logsigmoid(-logits)
        total += float((target * log_p + (1 - target) * log_not_p).sum())

    pairs = [(z, posterior.z_mean, posterior.z_logvar)]
    if u is not None:
        pairs.append((u, posterior.u_mean, posterior.u_logvar))
    for sample, mean, logvar in pairs:
        value = sample[n, b]
        total += float(normal(0.0, 1.0).log_prob(value).sum())
        scale = torch.exp(0.5 * logvar[b])
        total -= float(normal(mean[b], scale).log_prob(value).sum())
    return total


@pytest.mark.parametrize("name", MODELS)
def test_log_importance_weights_match_slow_loop(name: str):
    torch.manual_seed(1)
    model = build_model(name)
    x = torch.rand(2, 3, *IMAGE_SHAPE)

    with torch.no_grad():
        posterior = model.encode(x)
        z, u = draw_latents(posterior, num_samples=4)
        weights = log_importance_weights(model, x, posterior, z, u)
        slow = torch.tensor(
            [[slow_log_weight(model, x, posterior, z, u, n, b) for b in range(2)]
             for n in range(4)]
        )

    assert weights.shape == (4, 2)
    torch.testing.assert_close(weights, slow, rtol=1e-5, atol=1e-3)


def test_log_likelihood_matches_slow_estimate():
    # Reseeding reproduces the noise: z for all samples first, then u.
    model = build_model("tvae")
    x = torch.rand(2, 3, *IMAGE_SHAPE)

    torch.manual_seed(5)
    estimate = model.log_likelihood(x, num_samples=6)

    torch.manual_seed(5)
    with torch.no_grad():
        posterior = model.encode(x)
        z, u = draw_latents(posterior, num_samples=6)
        slow = []
        for b in range(2):
            weights = [
                slow_log_weight(model, x, posterior, z, u, n, b) for n in range(6)
            ]
            top = max(weights)
            total = sum(math.exp(w - top) for w in weights)
            slow.append((top + math.log(total) - math.log(6)) / 3)

    torch.testing.assert_close(estimate, torch.tensor(slow), rtol=1e-5, atol=1e-3)


def test_log_likelihood_reuses_given_posterior():
    model = build_model("tvae")
    x = torch.rand(3, 3, *IMAGE_SHAPE)

    torch.manual_seed(2)
    encoded_here = model.log_likelihood(x, num_samples=5)
    with torch.no_grad():
        posterior = model.encode(x)
    torch.manual_seed(2)
    reused = model.log_likelihood(x, num_samples=5, posterior=posterior)

    torch.testing.assert_close(reused, encoded_here, rtol=0, atol=0)


def test_log_likelihood_rejects_posterior_of_other_frames():
    model = build_model("tvae")
    with torch.no_grad():
        posterior = model.encode(torch.rand(2, 3, *IMAGE_SHAPE))
    message = r"z_mean has shape \(2, 3, 8\) but .* \(4, 3, 8\)"
    with pytest.raises(ValueError, match=message):
        model.log_likelihood(torch.rand(4, 3, *IMAGE_SHAPE), posterior=posterior)


def test_log_likelihood_rejects_posterior_of_wider_model():
    model = build_model("tvae")
    wider = TopographicVAE(time_window=3, capsule_window=3, **{**SMALL, "n_caps": 3})
    x = torch.rand(2, 3, *IMAGE_SHAPE)
    with torch.no_grad():
        posterior = wider.encode(x)
    message = r"z_mean has shape \(2, 3, 12\) but .* \(2, 3, 8\)"
    with pytest.raises(ValueError, match=message):
        model.log_likelihood(x, posterior=posterior)


@pytest.mark.parametrize(("encoder", "scorer"), [("vae", "tvae"), ("tvae", "vae")])
def test_log_likelihood_rejects_posterior_with_other_latents(encoder, scorer):
    x = torch.rand(2, 3, *IMAGE_SHAPE)
    with torch.no_grad():
        posterior = build_model(encoder).encode(x)
    with pytest.raises(ValueError, match="u encoder"):
        build_model(scorer).log_likelihood(x, posterior=posterior)


@pytest.mark.parametrize("name", ["z_logvar", "u_mean", "u_logvar"])
def test_log_likelihood_rejects_posterior_with_a_cut_tensor(name: str):
    model = build_model("tvae")
    x = torch.rand(2, 3, *IMAGE_SHAPE)
    with torch.no_grad():
        posterior = model.encode(x)
    setattr(posterior, name, getattr(posterior, name)[..., :3])
    with pytest.raises(ValueError, match=f"posterior.{name} has shape"):
        model.log_likelihood(x, posterior=posterior)


def test_log_likelihood_rejects_nan_posterior():
    model = build_model("tvae")
    x = torch.rand(2, 3, *IMAGE_SHAPE)
    with torch.no_grad():
        posterior = model.encode(x)
    posterior.z_mean[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="posterior.z_mean contains NaN"):
        model.log_likelihood(x, posterior=posterior)


def test_log_likelihood_rejects_posterior_of_wrong_type():
    model = build_model("tvae")
    x = torch.rand(2, 3, *IMAGE_SHAPE)
    with pytest.raises(TypeError, match="got tuple"):
        model.log_likelihood(x, posterior=(x, x))


def test_log_likelihood_of_empty_batch_is_empty():
    model = build_model("tvae")
    estimate = model.log_likelihood(torch.rand(0, 3, *IMAGE_SHAPE), num_samples=3)
    assert estimate.shape == (0,)


def test_log_likelihood_shape_per_sequence():
    model = build_model("bubble")
    estimate = model.log_likelihood(torch.rand(5, 3, *IMAGE_SHAPE), num_samples=3)
    assert estimate.shape == (5,)


def test_log_likelihood_chunks_give_finite_values():
    model = build_model("tvae")
    estimate = model.log_likelihood(
        torch.rand(2, 3, *IMAGE_SHAPE), num_samples=7, chunk_size=3
    )
    assert torch.isfinite(estimate).all()


def test_log_likelihood_rejects_zero_samples():
    model = build_model("vae")
    with pytest.raises(ValueError, match="num_samples"):
        model.log_likelihood(torch.rand(1, 3, *IMAGE_SHAPE), num_samples=0)


def test_log_likelihood_rejects_zero_chunk_size():
    model = build_model("vae")
    with pytest.raises(ValueError, match="chunk_size"):
        model.log_likelihood(torch.rand(1, 3, *IMAGE_SHAPE), chunk_size=0)


def test_log_likelihood_rejects_byte_intensities():
    model = build_model("vae")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.log_likelihood(torch.rand(1, 3, *IMAGE_SHAPE) * 255)


def test_log_likelihood_rejects_wrong_shape():
    model = build_model("vae")
    with pytest.raises(ValueError, match="x must have shape"):
        model.log_likelihood(torch.rand(1, 4, *IMAGE_SHAPE))


def test_eval_num_samples_rejects_zero():
    with pytest.raises(ValueError, match="eval_num_samples"):
        TopographicVAE(eval_num_samples=0, time_window=3, **SMALL)


def test_eval_num_samples_saved_in_hparams():
    model = BubbleVAE(eval_num_samples=4, time_window=3, **SMALL)
    assert model.hparams.eval_num_samples == 4


# -- a toy model trained briefly ----------------------------------------------

TOY_NUM_SAMPLES = (1, 5, 50)


@pytest.fixture(scope="module")
def toy_estimates(tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """Mean estimate per N of a small TVAE after 60 steps on rotating digits."""
    from conftest import write_digit_folder

    root = write_digit_folder(tmp_path_factory.mktemp("data"))
    data = TransformingMNISTDataModule(
        root=str(root), seq_len=4, batch_size=8, download=False, seed=0
    )
    model = TopographicVAE(
        n_caps=2, cap_dim=4, seq_len=4, time_window=3, capsule_window=3,
        image_shape=(3, 28, 28), lr=1e-3,
    )
    trainer = L.Trainer(
        max_steps=60, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path_factory.mktemp("runs"),
    )
    torch.manual_seed(0)
    trainer.fit(model, datamodule=data)

    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    frames = data.make_sequences(batch)["frames"][:8]
    repeats = frames.repeat(20, 1, 1, 1, 1)

    torch.manual_seed(1)
    model.eval()
    return {
        n: float(model.log_likelihood(repeats, num_samples=n, chunk_size=10).mean())
        for n in TOY_NUM_SAMPLES
    }


def test_toy_estimate_grows_from_1_to_5_samples(toy_estimates: dict[int, float]):
    assert toy_estimates[5] > toy_estimates[1]


def test_toy_estimate_grows_from_5_to_50_samples(toy_estimates: dict[int, float]):
    assert toy_estimates[50] > toy_estimates[5]


# -- logged by test ----------------------------------------------------------


class FrameData(L.LightningDataModule):
    def __init__(self, frames: torch.Tensor) -> None:
        super().__init__()
        self.frames = frames

    def test_dataloader(self):
        return torch.utils.data.DataLoader(
            [{"frames": frame} for frame in self.frames], batch_size=4
        )


def test_test_logs_log_likelihood(tmp_path: Path):
    model = build_model("tvae")
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    results = trainer.test(model, datamodule=FrameData(torch.rand(8, 3, *IMAGE_SHAPE)))
    assert results[0]["test/log_likelihood"] < 0


def test_test_step_encodes_each_batch_once(tmp_path: Path):
    # The log-likelihood reuses the posterior of the loss instead of encoding
    # the frames a second time.
    model = build_model("tvae")
    calls = []
    model.z_encoder.register_forward_hook(lambda *args: calls.append(1))
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.test(model, datamodule=FrameData(torch.rand(8, 3, *IMAGE_SHAPE)))
    assert len(calls) == 2
