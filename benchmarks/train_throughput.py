"""Measure training throughput of the Table 1 TVAE through the Lightning Trainer.

The model and data module are built from ``--config`` (by default
``configs/table1/tvae_L13_K3.yaml``: 18 capsules of 18 units, L = 13, K = 3, MLP
networks, combined MNIST of 18 frames of 3 x 28 x 28, the model of Table 1 of
Keller and Welling, "Topographic VAEs learn Equivariant Capsules", NeurIPS
2021). A ``Trainer`` runs ``--warmup`` + ``--steps`` training steps: the
data module makes the frames on the device in ``on_after_batch_transfer``, then
forward, backward, the SGD step and the on-step and on-epoch logging run. A
callback times each step from ``on_train_batch_start`` to
``on_train_batch_end``. It skips the warm-up steps and the steps on a batch
shorter than ``--batch-size``, which it counts in ``partial_steps``.

Without ``--data-root`` the digits are a small synthetic set written as IDX
files into a temporary folder, so the script needs no download.

The script also counts the floating-point operations of one training step
(forward and backward, with ``torch.utils.flop_counter.FlopCounterMode``) and
times a float32 matrix product of ``--matmul-size`` squared matrices in the
same process. ``matmul_fraction`` is the achieved GFLOP/s of training divided
by the GFLOP/s of that product.

The last line of output is one JSON object with ``sequences_per_second``,
``ms_per_step``, ``cpu_ms_per_step``, ``peak_memory_mb``, ``gflop_per_step``,
``gflop_per_second``, ``matmul_gflop_per_second`` and ``matmul_fraction``.
Step times are medians. ``cpu_ms_per_step`` is the CPU time of the process per
step (all threads together): with ``--threads 1`` it leaves out the time other
jobs hold the core, so it is the steadier number on a busy machine.

Run: ``python3 benchmarks/train_throughput.py [--steps 40] [--warmup 5]``
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

# Python puts this script's folder on sys.path, so the sibling module is importable.
from common import (
    DEFAULT_CONFIG,
    check_positive,
    check_threads_and_device,
    fail,
    init_args,
    instantiate,
    load_config,
    new_parser,
    setup_data,
    write_training_digits,
)
from torch.utils.flop_counter import FlopCounterMode


def parse_args() -> tuple[argparse.Namespace, dict[str, Any]]:
    """Return the checked arguments and the config they name."""
    parser = new_parser(__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="LightningCLI YAML config naming the model and data")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed training steps before the timed ones")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sequences per batch; the config's when omitted")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="frames per sequence instead of the config's; the "
                             "time window shrinks to fit when needed")
    parser.add_argument("--n-caps", type=int, default=None,
                        help="number of capsules instead of the config's")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="device of the model and the data generation")
    parser.add_argument("--precision", default="32-true",
                        help="Lightning precision, such as 32-true or bf16-mixed")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with MNIST in torchvision's layout; a "
                             "synthetic digit set when omitted")
    parser.add_argument("--matmul-size", type=int, default=2048,
                        help="side of the square float32 matrices of the reference "
                             "matrix product")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 keeps the default")
    args = parser.parse_args()

    check_positive(parser, args, "steps", "batch_size", "seq_len", "n_caps")
    if args.matmul_size < 256:
        parser.error(f"--matmul-size must be at least 256, got {args.matmul_size}: "
                     "smaller products do not reach the machine's rate")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    check_threads_and_device(parser, args)
    config = load_config(parser, args.config)
    if args.batch_size is None:
        args.batch_size = init_args(config["data"]).get("batch_size", 8)
    return args, config


def size_overrides(
    args: argparse.Namespace, config: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the model and data arguments that ``--seq-len`` and ``--n-caps`` change.

    A time window longer than the new sequence is cut to the sequence length,
    because the model accepts no longer window.
    """
    model_args: dict[str, Any] = {}
    data_args: dict[str, Any] = {}
    if args.n_caps is not None:
        model_args["n_caps"] = args.n_caps
    if args.seq_len is not None:
        model_args["seq_len"] = data_args["seq_len"] = args.seq_len
        window = init_args(config["model"]).get("time_window")
        if window is not None and window > args.seq_len:
            model_args["time_window"] = args.seq_len
    return model_args, data_args


class StepTimer(L.Callback):
    """Record the wall time of each full training batch after ``warmup`` batches.

    Steps on a batch of other than ``batch_size`` sequences, such as the last
    batch of an epoch, are counted in ``partial_steps`` and not timed, so the
    rate is not overstated.
    """

    def __init__(self, warmup: int, batch_size: int, device: torch.device) -> None:
        self.warmup = warmup
        self.batch_size = batch_size
        self.device = device
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.partial_steps = 0
        self._start = 0.0
        self._cpu_start = 0.0

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._synchronize()
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._synchronize()
        if trainer.global_step <= self.warmup:
            return

        frames = batch["frames"] if isinstance(batch, dict) else batch
        if len(frames) != self.batch_size:
            self.partial_steps += 1
            return
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


def matmul_gflops(size: int, device: torch.device, seconds: float = 1.0) -> float:
    """Return the best GFLOP/s of a float32 ``size`` x ``size`` matrix product."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.mm(a, b)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or best == 0.0:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def step_gflop(model: Any, frames: torch.Tensor) -> float:
    """Count the GFLOP of one forward and backward pass of the negative ELBO."""
    with FlopCounterMode(display=False) as counter:
        posterior = model.encode(frames)
        model.elbo_terms(frames, posterior).loss.mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def build_trainer(
    args: argparse.Namespace, config: dict[str, Any], folder: str, timer: StepTimer
) -> L.Trainer:
    """Return a Trainer that runs only the training steps, without extras."""
    trainer_args = config.get("trainer") or {}
    try:
        return L.Trainer(
            accelerator=args.device,
            devices=1,
            precision=args.precision,
            max_steps=args.warmup + args.steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            log_every_n_steps=trainer_args.get("log_every_n_steps", 50),
            logger=L.pytorch.loggers.CSVLogger(folder),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
    except ValueError as error:
        fail(str(error))


def main() -> None:
    args, config = parse_args()
    logging.getLogger("lightning").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    L.seed_everything(0, verbose=False)

    with tempfile.TemporaryDirectory() as folder:
        root = args.data_root
        if root is None:
            root = Path(folder) / "data"
            sequences = args.batch_size * (args.warmup + args.steps + 1)
            write_training_digits(root, config, sequences)

        model_args, data_args = size_overrides(args, config)
        data = instantiate(config["data"], root=str(root), batch_size=args.batch_size,
                           download=False, **data_args)
        setup_data(data, root)
        training_sequences = len(data.train_dataloader().sampler)
        if training_sequences < args.batch_size:
            fail(f"the training split has {training_sequences} sequences, fewer "
                 f"than one batch of {args.batch_size}; lower --batch-size or use "
                 "more digits")
        model = instantiate(config["model"], **model_args)
        timer = StepTimer(args.warmup, args.batch_size, device)
        trainer = build_trainer(args, config, folder, timer)
        trainer.fit(model, datamodule=data)
        if not timer.seconds:
            fail(f"none of the {args.steps} timed steps had a full batch of "
                 f"{args.batch_size} sequences; lower --batch-size or use more digits")

        batch = next(iter(data.train_dataloader()))
        batch = {key: value.to(device) for key, value in batch.items()}
        frames = data.on_after_batch_transfer(batch, 0)["frames"]
        gflop = step_gflop(model, frames)

    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = statistics.median(timer.seconds)
    reference = matmul_gflops(args.matmul_size, device)
    achieved = gflop / seconds
    result = {
        "sequences_per_second": round(args.batch_size / seconds, 2),
        "ms_per_step": round(1000 * seconds, 3),
        "ms_per_step_mean": round(1000 * statistics.fmean(timer.seconds), 3),
        "cpu_ms_per_step": round(1000 * statistics.median(timer.cpu_seconds), 3),
        "peak_memory_mb": round(peak_mb, 1),
        "gflop_per_step": round(gflop, 3),
        "gflop_per_second": round(achieved, 2),
        "matmul_gflop_per_second": round(reference, 2),
        "matmul_fraction": round(achieved / reference, 4),
        "batch_size": args.batch_size,
        "seq_len": getattr(model, "seq_len", None),
        "n_caps": getattr(model, "n_caps", None),
        "time_window": model.hparams.get("time_window"),
        "timed_steps": len(timer.seconds),
        "partial_steps": timer.partial_steps,
        "device": args.device,
        "precision": str(trainer.precision),
        "threads": torch.get_num_threads(),
    }
    print(f"{result['sequences_per_second']} sequences/s, "
          f"{result['ms_per_step']} ms per step (median of {len(timer.seconds)}), "
          f"peak memory {result['peak_memory_mb']} MB")
    print(f"{gflop:.2f} GFLOP per step, {achieved:.1f} GFLOP/s, float32 matmul "
          f"{reference:.1f} GFLOP/s, fraction {achieved / reference:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
