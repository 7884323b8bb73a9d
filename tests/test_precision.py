"""bf16 mixed precision on the CPU and ``compile_networks``."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

from tvae_lightning import BubbleVAE, TopographicVAE
from tvae_lightning.data import TransformingMNISTDataModule
from tvae_lightning.models import VAE

SMALL = {"n_caps": 2, "cap_dim": 4, "seq_len": 4}


def small_tvae(**kwargs) -> TopographicVAE:
    return TopographicVAE(**SMALL, time_window=3, capsule_window=3, **kwargs)


def fit_two_steps(model: L.LightningModule, data_root: Path, precision: str) -> float:
    """Fit two steps and return the last logged training loss."""
    L.seed_everything(0)
    datamodule = TransformingMNISTDataModule(
        root=str(data_root), seq_len=SMALL["seq_len"], batch_size=4, download=False
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule)
    return trainer.callback_metrics["train/loss_step"].item()


def latents(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 8, generator=generator)
    u = torch.randn(2, 4, 8, generator=generator)
    return z, u


@pytest.mark.parametrize(
    "model_class", [TopographicVAE, BubbleVAE, VAE], ids=["tvae", "bubble", "vae"]
)
def test_bf16_fit_loss_finite(model_class, mnist_root: Path):
    arguments = dict(SMALL)
    if model_class is not VAE:
        arguments.update(time_window=3, capsule_window=3)
    loss = fit_two_steps(model_class(**arguments), mnist_root, "bf16-mixed")
    assert math.isfinite(loss)


def test_topography_float32_under_autocast():
    model = small_tvae()
    z, u = latents()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = model.group(z, u)
    assert t.dtype == torch.float32


def test_topography_same_values_under_autocast():
    # Autocast would run the pooling matrix product in bfloat16 if group() did
    # not switch it off; the values then differ in the third digit.
    model = small_tvae()
    z, u = latents()
    with torch.no_grad():
        expected = model.group(z, u)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = model.group(z, u)
    assert torch.equal(actual, expected)


def test_topography_upcasts_bfloat16_latents():
    model = small_tvae()
    z, u = latents()
    with torch.no_grad():
        expected = model.group(z.bfloat16().float(), u.bfloat16().float())
        actual = model.group(z.bfloat16(), u.bfloat16())
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("term", ["reconstruction", "kl_z", "kl_u"])
def test_loss_terms_float32_under_autocast(term: str):
    model = small_tvae()
    frames = torch.rand(2, 4, 3, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.elbo_terms(frames, model.encode(frames))
    assert getattr(terms, term).dtype == torch.float32


def test_encoder_runs_in_bfloat16_under_autocast():
    model = small_tvae()
    frames = torch.rand(2, 4, 3, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        posterior = model.encode(frames)
    assert posterior.z_mean.dtype == torch.bfloat16


def test_compile_networks_keeps_checkpoint_keys():
    torch.manual_seed(0)
    plain = small_tvae()
    torch.manual_seed(0)
    compiled = small_tvae(compile_networks=True)
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_compile_networks_saved_in_hparams():
    assert small_tvae(compile_networks=True).hparams.compile_networks is True


@pytest.mark.slow
def test_compiled_fit_matches_plain(mnist_root: Path):
    # torch.compile on the CPU builds C++ kernels with the system compiler.
    torch.manual_seed(0)
    plain = fit_two_steps(small_tvae(), mnist_root, "32-true")
    torch.manual_seed(0)
    compiled = fit_two_steps(small_tvae(compile_networks=True), mnist_root, "32-true")
    assert math.isclose(compiled, plain, rel_tol=1e-4)


@pytest.mark.slow
def test_compiled_bf16_fit_loss_finite(mnist_root: Path):
    loss = fit_two_steps(small_tvae(compile_networks=True), mnist_root, "bf16-mixed")
    assert math.isfinite(loss)
