"""GPU versions of the precision, compilation, noise and resume checks.

The CPU test suite covers bf16 on the CPU. This script repeats the checks that
behave differently on a GPU, because CUDA autocast also has float16,
``torch.compile`` builds Triton kernels and deterministic mode needs a cuBLAS
setting. It also times a training step of the TVAE at the size of the Table 1
MNIST experiments of Keller and Welling (NeurIPS 2021). It needs a CUDA
device and exits 0 with a "skipped" line without one.

NOTE: only the CPU paths of these checks have run so far; the CUDA-only parts
(autocast on CUDA, Triton compilation, the step timer) have not run on a GPU.

Run from the repository root:

    python3 benchmarks/gpu_checks.py [--out results.json]

Each check prints one JSON line; the exit status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# cuBLAS needs this before CUDA starts for deterministic matrix products.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from tvae_lightning import TopographicVAE  # noqa: E402
from tvae_lightning.data import TransformingMNISTDataModule  # noqa: E402
from tvae_lightning.models.noise import keyed_normal  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import write_digit_folder  # noqa: E402

SMALL = {"n_caps": 2, "cap_dim": 4, "seq_len": 4, "time_window": 3}


def small_model(**kwargs) -> TopographicVAE:
    return TopographicVAE(**SMALL, **kwargs)


def datamodule(root: Path, seq_len: int = 4, batch_size: int = 8):
    return TransformingMNISTDataModule(
        root=str(root), seq_len=seq_len, batch_size=batch_size, download=False, seed=0
    )


def trainer(max_steps: int, precision: str = "32-true", **kwargs) -> L.Trainer:
    options = dict(
        accelerator="gpu",
        devices=1,
        precision=precision,
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    options.update(kwargs)
    return L.Trainer(**options)


def fit_loss(root: Path, model: TopographicVAE, precision: str) -> float:
    L.seed_everything(0)
    fit_trainer = trainer(2, precision)
    fit_trainer.fit(model, datamodule(root))
    return fit_trainer.callback_metrics["train/loss_step"].item()


def check_bf16_fit(root: Path) -> dict:
    loss = fit_loss(root, small_model(), "bf16-mixed")
    return {"ok": math.isfinite(loss), "loss": loss}


def check_fp16_fit(root: Path) -> dict:
    loss = fit_loss(root, small_model(), "16-mixed")
    return {"ok": math.isfinite(loss), "loss": loss}


def check_topography_float32(root: Path) -> dict:
    model = small_model().cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(2, 4, 8, device="cuda", generator=generator)
    u = torch.randn(2, 4, 8, device="cuda", generator=generator)
    result = {}
    with torch.no_grad():
        expected = model.group(z, u)
        for dtype in (torch.bfloat16, torch.float16):
            with torch.autocast("cuda", dtype=dtype):
                actual = model.group(z, u)
            name = str(dtype).removeprefix("torch.")
            result[f"{name}_dtype"] = str(actual.dtype)
            result[f"{name}_max_diff"] = (actual - expected).abs().max().item()
    result["ok"] = all(
        result[f"{name}_dtype"] == "torch.float32" and result[f"{name}_max_diff"] < 1e-5
        for name in ("bfloat16", "float16")
    )
    return result


def check_compiled_fit(root: Path) -> dict:
    plain = fit_loss(root, small_model(), "32-true")
    compiled = fit_loss(root, small_model(compile_networks=True), "32-true")
    compiled_bf16 = fit_loss(root, small_model(compile_networks=True), "bf16-mixed")
    return {
        "ok": math.isclose(plain, compiled, rel_tol=1e-3)
        and math.isfinite(compiled_bf16),
        "plain": plain,
        "compiled": compiled,
        "compiled_bf16": compiled_bf16,
    }


def check_keyed_noise_device(root: Path) -> dict:
    # Evaluation noise must be the same on every device, or GPU and CPU runs of
    # the same checkpoint would report different validation losses.
    keys = torch.arange(64)
    cpu = keyed_normal(keys, (18, 324))
    gpu = keyed_normal(keys.cuda(), (18, 324)).cpu()
    difference = (cpu - gpu).abs().max().item()
    return {"ok": difference < 1e-5, "max_diff": difference}


def fit_for_resume(root: Path, folder: Path, max_steps: int, every: int, ckpt=None):
    L.seed_everything(0)
    model = small_model(lr=1e-3)
    callback = ModelCheckpoint(
        dirpath=folder, every_n_train_steps=every, save_last=True, save_top_k=-1
    )
    fit_trainer = trainer(
        max_steps,
        deterministic=True,
        callbacks=[callback],
        enable_checkpointing=True,
        val_check_interval=3,
        limit_val_batches=2,
    )
    fit_trainer.fit(model, datamodule(root), ckpt_path=ckpt)
    return model


def check_exact_resume(root: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        full = fit_for_resume(root, scratch / "full", 10, every=10)
        fit_for_resume(root, scratch / "resumed", 5, every=5)
        resumed = fit_for_resume(root, scratch / "resumed", 10, every=10, ckpt="last")
    difference = max(
        (a - b).abs().max().item()
        for a, b in zip(full.parameters(), resumed.parameters(), strict=True)
    )
    return {"ok": difference == 0.0, "max_parameter_diff": difference}


def check_step_time(root: Path) -> dict:
    """Time training steps of the default TVAE: 18 capsules of 18 units, 18 frames."""
    result = {"ok": True}
    for name, precision, compile_networks in (
        ("fp32", "32-true", False),
        ("bf16", "bf16-mixed", False),
        ("bf16_compiled", "bf16-mixed", True),
    ):
        model = TopographicVAE(compile_networks=compile_networks)
        timing = StepTimer()
        L.seed_everything(0)
        fit_trainer = trainer(60, precision, callbacks=[timing])
        fit_trainer.fit(model, datamodule(root, seq_len=18, batch_size=8))
        result[f"{name}_ms_per_step"] = timing.median_ms()
    return result


class StepTimer(L.Callback):
    """Median wall time per training step after 20 warm-up steps."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start = 0.0

    def on_train_batch_start(self, *args) -> None:
        torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.start)

    def median_ms(self) -> float:
        measured = sorted(self.times[20:])
        return 1000.0 * measured[len(measured) // 2]


CHECKS: dict[str, Callable[[Path], dict]] = {
    "bf16_fit": check_bf16_fit,
    "fp16_fit": check_fp16_fit,
    "topography_float32": check_topography_float32,
    "compiled_fit": check_compiled_fit,
    "keyed_noise_device": check_keyed_noise_device,
    "exact_resume": check_exact_resume,
    "step_time": check_step_time,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write all results to this file")
    args = parser.parse_args()
    if args.out is not None and not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: the folder {args.out.parent} does not exist")
    if args.out is not None and args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; give a file name")

    if not torch.cuda.is_available():
        skipped = {"check": "all", "skipped": "no CUDA device"}
        if args.out is not None:
            args.out.write_text(json.dumps(skipped, indent=2) + "\n")
        print(json.dumps(skipped))
        return 0

    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as scratch:
        root = write_digit_folder(Path(scratch) / "data", num_train=200, num_test=32)
        for name, check in CHECKS.items():
            try:
                results[name] = check(root)
            except Exception as error:  # report every check, even after a failure
                results[name] = {"ok": False, "error": repr(error)}
                traceback.print_exc()
            print(json.dumps({"check": name, **results[name]}), flush=True)

    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    failed = [name for name in CHECKS if not results[name]["ok"]]
    print(json.dumps({"check": "all", "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
