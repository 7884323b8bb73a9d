"""Measure how fast the batched transformations generate MNIST sequences.

For each transformation this script draws batches of ``--batch-size`` sequences
of ``--seq-len`` frames from 28 x 28 digits in two ways, in the same process
and on the same device:

- batched: ``TransformationSequences.sample``, ``factors`` and ``render``, the
  code path of ``TransformingMNISTDataModule``: one warp and one colouring call
  for the whole batch;
- loop: torchvision.transforms.v2.functional (``rotate``, ``affine``,
  ``adjust_hue``, ``perspective``) on one image and one frame at a time.

The digits are synthetic images of three Gaussian blobs, so the script needs
no data set. It prints sequences per second of both methods, their ratio (the
median over rounds that time both methods back to back) and the largest pixel
difference between the two outputs. The last line is one JSON object mapping
each transformation to ``sequences_per_second``,
``loop_sequences_per_second``, ``speedup_vs_loop`` and ``max_difference`` on
the CPU, with a ``"cuda"`` entry of the same form when a GPU is present.

Run: ``python3 benchmarks/data_throughput.py [--seconds 2] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF

# Python puts this script's folder on sys.path, so the sibling module is importable.
from common import check_positive, check_threads_and_device, new_parser
from torch import Tensor
from torchvision.transforms import InterpolationMode

from tvae_lightning.data.sequences import (
    TILT_DISTANCE,
    TRANSFORMATIONS,
    TransformationSequences,
)

BILINEAR = InterpolationMode.BILINEAR


def parse_args() -> argparse.Namespace:
    parser = new_parser(__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per batch")
    parser.add_argument("--seq-len", type=int, default=18, help="frames per sequence")
    parser.add_argument(
        "--seconds",
        type=float,
        default=1.0,
        help="seconds per method and round (the loop runs at least one batch)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds; the medians are reported"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads; 0 keeps the default"
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "all"],
        default="all",
        help="devices to measure; 'all' adds cuda when it is available",
    )
    args = parser.parse_args()

    check_positive(parser, args, "batch_size", "seq_len", "seconds", "rounds")
    if not math.isfinite(args.seconds):
        parser.error(f"--seconds must be a finite number, got {args.seconds}")
    check_threads_and_device(parser, args)
    return args


def synthetic_digits(count: int, device: torch.device) -> Tensor:
    """Return ``count`` images ``(count, 1, 28, 28)`` of three Gaussian blobs each."""
    generator = torch.Generator().manual_seed(0)
    coordinates = torch.arange(28.0)
    images = torch.zeros(count, 28, 28)
    for _ in range(3):
        centre = 8 + 12 * torch.rand(count, 2, generator=generator)
        dy = coordinates[None, :, None] - centre[:, 0, None, None]
        dx = coordinates[None, None, :] - centre[:, 1, None, None]
        images += torch.exp(-(dx**2 + dy**2) / 6.0)
    images /= images.amax(dim=(1, 2), keepdim=True)
    return images.unsqueeze(1).to(device)


def batched_method(
    sequences: TransformationSequences, digits: Tensor
) -> Callable[[], Tensor]:
    generator = torch.Generator().manual_seed(1)

    def run() -> Tensor:
        motions, starts = sequences.sample(len(digits), generator)
        motions, starts = motions.to(digits.device), starts.to(digits.device)
        factors = sequences.factors(motions, starts)
        return sequences.render(digits, factors)

    return run


def loop_method(
    sequences: TransformationSequences, digits: Tensor
) -> Callable[[], Tensor]:
    generator = torch.Generator().manual_seed(1)
    names = sequences.factor_names

    def run() -> Tensor:
        motions, starts = sequences.sample(len(digits), generator)
        factors = sequences.factors(motions, starts).tolist()
        frames = []
        for digit, sequence in zip(digits, factors):
            for values in sequence:
                frames.append(transform_one(digit, dict(zip(names, values))))
        stacked = torch.stack(frames)
        return stacked.reshape(len(digits), -1, *stacked.shape[1:])

    return run


def transform_one(digit: Tensor, values: dict[str, float]) -> Tensor:
    """Transform one digit ``(1, H, W)`` with torchvision, one call per operation."""
    angle = values.get("rotation", 0.0)
    scale = values.get("scale", 1.0)
    if "scale" in values:
        # affine turns clockwise for positive angles, rotate counter-clockwise.
        image = TF.affine(
            digit, angle=-angle, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
            interpolation=BILINEAR,
        )
    elif "rotation" in values:
        image = TF.rotate(digit, angle, interpolation=BILINEAR)
    else:
        image = digit

    if "perspective" in values:
        start, end = tilt_corners(values["perspective"], *digit.shape[-2:])
        image = TF.perspective(image, start, end, interpolation=BILINEAR)

    zeros = torch.zeros_like(image)
    image = torch.cat([image, zeros, zeros])
    if "colour" in values:
        hue_factor = ((values["colour"] + 180.0) % 360.0 - 180.0) / 360.0
        image = TF.adjust_hue(image, hue_factor)
    return image


def tilt_corners(
    degrees: float, height: int, width: int
) -> tuple[list[list[float]], list[list[float]]]:
    """Return the image corners and where the turned, projected plane shows them."""
    radians = math.radians(degrees)
    start, end = [], []
    for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        depth = TILT_DISTANCE + x * math.sin(radians)
        u = TILT_DISTANCE * x * math.cos(radians) / depth
        v = TILT_DISTANCE * y / depth
        start.append([(x + 1) * width / 2, (y + 1) * height / 2])
        end.append([(u + 1) * width / 2, (v + 1) * height / 2])
    return start, end


def compare_rates(
    batched: Callable[[], Tensor], loop: Callable[[], Tensor],
    args: argparse.Namespace, device: torch.device,
) -> tuple[float, float]:
    """Return the median sequences per second of ``batched`` and the median ratio.

    Each round times both methods back to back, so that load from other
    processes affects a ratio's numerator and denominator alike.
    """
    for method in (batched, loop):
        method()
    rates, ratios = [], []
    for _ in range(args.rounds):
        fast = sequences_per_second(batched, args.batch_size, args.seconds, device)
        slow = sequences_per_second(loop, args.batch_size, args.seconds, device)
        rates.append(fast)
        ratios.append(fast / slow)
    return statistics.median(rates), statistics.median(ratios)


def sequences_per_second(
    method: Callable[[], Tensor], batch_size: int, seconds: float,
    device: torch.device,
) -> float:
    """Return the sequences generated per second by calls for about ``seconds``."""
    synchronize(device)
    calls, begin = 0, time.perf_counter()
    while calls < 1 or time.perf_counter() - begin < seconds:
        method()
        calls += 1
    synchronize(device)
    return calls * batch_size / (time.perf_counter() - begin)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_device(args: argparse.Namespace, device: torch.device) -> dict:
    digits = synthetic_digits(args.batch_size, device)
    results = {}
    for name in TRANSFORMATIONS:
        sequences = TransformationSequences(name, args.seq_len)
        batched = batched_method(sequences, digits)
        loop = loop_method(sequences, digits)
        difference = (batched() - loop()).abs().max().item()

        fast, ratio = compare_rates(batched, loop, args, device)
        print(
            f"{name:16s} {device.type:4s} batched {fast:10.1f} seq/s   "
            f"loop {fast / ratio:8.1f} seq/s   ratio {ratio:6.1f}x   "
            f"max |batched - loop| {difference:.1e}",
            flush=True,
        )
        results[name] = {
            "sequences_per_second": round(fast, 1),
            "loop_sequences_per_second": round(fast / ratio, 1),
            "speedup_vs_loop": round(ratio, 2),
            "max_difference": difference,
        }
    return results


def main() -> None:
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"batches of {args.batch_size} sequences of {args.seq_len} frames of "
        f"3 x 28 x 28",
        flush=True,
    )

    results = measure_device(args, torch.device("cpu")) if args.device != "cuda" else {}
    if args.device != "cpu" and torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}", flush=True)
        gpu = measure_device(args, torch.device("cuda"))
        for name, entry in gpu.items():
            results.setdefault(name, {})["cuda"] = entry
    print(json.dumps(results))


if __name__ == "__main__":
    main()
