"""Measure evaluation throughput of the Table 1 TVAE against a per-sample loop.

Per batch of ``--batch-size`` sequences the batched method runs what
``test_step`` computes besides the loss: it encodes the frames once, then
computes the importance-sampled log-likelihood
``model.log_likelihood(frames, num_samples, posterior=...)`` and the
equivariance error of the capsules at the posterior means. Two loops compute
the same two quantities one sequence and one importance sample at a time, with
the same functions (``draw_latents``, ``log_importance_weights`` and
``equivariance_error``) and no batching:

- the loop encodes each sequence once and reuses the encoding for its samples;
- the re-encoding loop encodes the sequence again for every sample, as a loop
  of whole forward passes does.

The model is built from ``--config`` (default
``configs/table1/tvae_L13_K3.yaml``) with freshly initialised weights, and the
frames come from its data module on a small synthetic digit set written as IDX
files into a temporary folder, or from ``--data-root``.

It prints sequences per second of the three methods, the ratios, and the mean
estimates of the batched method and the loop. The log-likelihoods differ by
the random draws, and the equivariance errors are equal up to rounding. The
last line is one JSON object with ``sequences_per_second``,
``loop_sequences_per_second``, ``speedup_vs_loop``,
``reencoding_loop_sequences_per_second`` and ``speedup_vs_reencoding_loop``.

Run: ``python3 benchmarks/eval_throughput.py [--batches 3] [--num-samples 10]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import lightning as L
import torch

# Python puts this script's folder on sys.path, so the sibling module is importable.
from common import (
    DEFAULT_CONFIG,
    check_positive,
    check_threads_and_device,
    fail,
    instantiate,
    load_config,
    new_parser,
    setup_data,
    write_training_digits,
)
from torch import Tensor

from tvae_lightning.metrics.functional.equivariance import equivariance_error
from tvae_lightning.models.likelihood import draw_latents, log_importance_weights


def parse_args() -> tuple[argparse.Namespace, dict]:
    """Return the checked arguments and the config they name."""
    parser = new_parser(__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="LightningCLI YAML config naming the model and data")
    parser.add_argument("--batches", type=int, default=3,
                        help="timed batches per method (after one warm-up batch)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="sequences per batch")
    parser.add_argument("--num-samples", type=int, default=10,
                        help="importance samples per sequence")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="device of the model and the frames")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder with MNIST in torchvision's layout; a "
                             "synthetic digit set when omitted")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 keeps the default")
    args = parser.parse_args()

    check_positive(parser, args, "batches", "batch_size", "num_samples")
    check_threads_and_device(parser, args)
    return args, load_config(parser, args.config)


def batched_method(model, frames: Tensor, num_samples: int) -> tuple[Tensor, Tensor]:
    """Return the log-likelihood and equivariance error ``(batch,)`` of a batch.

    Like ``test_step``, it encodes the frames once for both quantities.
    """
    posterior = model.encode(frames)
    log_likelihood = model.log_likelihood(frames, num_samples, posterior=posterior)
    error = equivariance_error(model.capsules_of(posterior))
    return log_likelihood, error


def loop_method(
    model, frames: Tensor, num_samples: int, reencode: bool = False
) -> tuple[Tensor, Tensor]:
    """Return the same two quantities, one sequence and one sample at a time.

    With ``reencode`` the sequence is encoded again for every importance sample,
    as a loop of whole forward passes does.
    """
    log_likelihoods, errors = [], []
    for sequence in frames:
        single = sequence.unsqueeze(0)
        posterior = model.encode(single)
        log_weights = []
        for _ in range(num_samples):
            if reencode:
                posterior = model.encode(single)
            z, u = draw_latents(posterior, 1)
            log_weights.append(log_importance_weights(model, single, posterior, z, u))
        log_marginal = torch.logsumexp(torch.cat(log_weights), dim=0)
        log_marginal = log_marginal - math.log(num_samples)
        log_likelihoods.append(log_marginal / single.shape[1])
        errors.append(equivariance_error(model.capsules_of(posterior)))
    return torch.cat(log_likelihoods), torch.cat(errors)


def time_method(
    method: Callable, model, batches: list[Tensor], num_samples: int
) -> tuple[float, Tensor, Tensor]:
    """Return the seconds per batch (median) and the outputs of all batches."""
    method(model, batches[0], num_samples)
    seconds, log_likelihoods, errors = [], [], []
    for frames in batches[1:]:
        if frames.device.type == "cuda":
            torch.cuda.synchronize(frames.device)
        start = time.perf_counter()
        log_likelihood, error = method(model, frames, num_samples)
        if frames.device.type == "cuda":
            torch.cuda.synchronize(frames.device)
        seconds.append(time.perf_counter() - start)
        log_likelihoods.append(log_likelihood)
        errors.append(error)
    return statistics.median(seconds), torch.cat(log_likelihoods), torch.cat(errors)


def make_batches(args: argparse.Namespace, config: dict, folder: str) -> list[Tensor]:
    """Return ``--batches`` + 1 batches of frames made by the config's data module."""
    root = args.data_root
    if root is None:
        root = Path(folder) / "data"
        write_training_digits(root, config, args.batch_size * (args.batches + 1))
    data = instantiate(config["data"], root=str(root), batch_size=args.batch_size,
                       download=False)
    setup_data(data, root)

    batches = []
    for batch in data.train_dataloader():
        batch = {key: value.to(args.device) for key, value in batch.items()}
        frames = data.on_after_batch_transfer(batch, 0)["frames"]
        # A short last batch would overstate the rate, which counts batch_size.
        if len(frames) == args.batch_size:
            batches.append(frames)
        if len(batches) == args.batches + 1:
            break

    if len(batches) < args.batches + 1:
        fail(f"--batches {args.batches} needs {args.batches + 1} full batches but "
             f"the training split has {len(batches)}; lower --batches or --batch-size")
    return batches


def main() -> None:
    args, config = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    L.seed_everything(0, verbose=False)

    with tempfile.TemporaryDirectory() as folder:
        batches = make_batches(args, config, folder)
    model = instantiate(config["model"]).to(args.device).eval()

    with torch.no_grad():
        batched = time_method(batched_method, model, batches, args.num_samples)
        loop = time_method(loop_method, model, batches, args.num_samples)
        reencoding_loop = time_method(
            partial(loop_method, reencode=True), model, batches, args.num_samples
        )

    rate = args.batch_size / batched[0]
    loop_rate = args.batch_size / loop[0]
    reencoding_rate = args.batch_size / reencoding_loop[0]
    result = {
        "sequences_per_second": round(rate, 2),
        "loop_sequences_per_second": round(loop_rate, 2),
        "speedup_vs_loop": round(rate / loop_rate, 2),
        "reencoding_loop_sequences_per_second": round(reencoding_rate, 2),
        "speedup_vs_reencoding_loop": round(rate / reencoding_rate, 2),
        "ms_per_batch": round(1000 * batched[0], 3),
        "log_likelihood_batched": round(batched[1].mean().item(), 3),
        "log_likelihood_loop": round(loop[1].mean().item(), 3),
        "max_equivariance_difference": (batched[2] - loop[2]).abs().max().item(),
        "batch_size": args.batch_size,
        "num_samples": args.num_samples,
        "device": args.device,
        "threads": torch.get_num_threads(),
    }
    print(f"batched: {rate:.2f} sequences/s, loop: {loop_rate:.2f} sequences/s, "
          f"speedup {rate / loop_rate:.2f}x")
    print(f"loop that encodes again for every sample: {reencoding_rate:.2f} "
          f"sequences/s, speedup {rate / reencoding_rate:.2f}x")
    print(f"mean log-likelihood per frame: batched {result['log_likelihood_batched']}, "
          f"loop {result['log_likelihood_loop']}. Largest equivariance error "
          f"difference {result['max_equivariance_difference']:.3g}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
