"""Time five ways to compute the windowed energy of the capsule topography.

The energy ``v[l, i] = sum over (a, k) in the window of u[(l + a) mod S, (i + k) mod D] ** 2``
is a small circular 2D correlation of each capsule's ``S x D`` grid of squares
with the window (Keller and Welling, "Topographic VAEs learn Equivariant
Capsules", NeurIPS 2021). This script computes it for a batch of the Table 1
size (8 sequences, 18 frames, 18 capsules of 18 units, shifting window L = 13,
K = 3: 37 offsets) in five ways:

- dense: one product with the ``(S * D, S * D)`` pooling matrix, the form
  ``CapsuleTopography`` uses;
- sparse: the same matrix in CSR form with ``torch.sparse.mm``;
- rolls: one ``torch.roll`` of the grid per window offset, summed;
- conv2d: circular padding and one ``conv2d`` with the window as kernel;
- fft: ``rfft2`` of the grid times the conjugate transform of the window,
  then ``irfft2``.

Each form is timed forward and backward (the gradient of ``u``), as in a
training step, and compared with the dense form. The last line of output is
one JSON object with the median microseconds per call and the largest
difference from the dense form for each.

Run: ``python3 benchmarks/topography_forms.py [--batch-size 8] [--repeats 200]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

# Python puts this script's folder on sys.path, so the sibling module is importable.
from common import check_positive, check_threads_and_device, new_parser
from torch import Tensor

from tvae_lightning.topography import ShiftingCapsuleTopography

Energy = Callable[[Tensor], Tensor]


def parse_args() -> tuple[argparse.Namespace, ShiftingCapsuleTopography]:
    """Return the checked arguments and the topography they describe."""
    parser = new_parser(__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8, help="sequences")
    parser.add_argument("--seq-len", type=int, default=18, help="S, frames")
    parser.add_argument("--n-caps", type=int, default=18, help="capsules")
    parser.add_argument("--cap-dim", type=int, default=18, help="D, units per capsule")
    parser.add_argument("--time-window", type=int, default=13, help="L")
    parser.add_argument("--capsule-window", type=int, default=3, help="K")
    parser.add_argument("--repeats", type=int, default=200,
                        help="timed calls per form, after 20 untimed ones")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 keeps the default")
    args = parser.parse_args()

    check_positive(parser, args, "batch_size", "seq_len", "n_caps", "cap_dim",
                   "repeats")
    check_threads_and_device(parser, args)
    try:
        topography = ShiftingCapsuleTopography(
            args.n_caps, args.cap_dim, args.seq_len, args.time_window,
            args.capsule_window,
        )
    except ValueError as error:
        note = ""
        if args.time_window < 1:
            note = " (this script times the shifting window, which needs 1 or more)"
        parser.error(f"--time-window or --capsule-window: {error}{note}")
    return args, topography


def build_forms(
    topography: ShiftingCapsuleTopography, device: torch.device
) -> dict[str, Energy]:
    """Return the five energy functions of grids of squares ``(rows, S, D)``."""
    window = topography.window
    seq_len, cap_dim = topography.seq_len, topography.cap_dim
    pooling = topography.pooling.to(device)
    with warnings.catch_warnings():
        # torch warns that CSR support is in beta; the result is checked below.
        warnings.simplefilter("ignore", UserWarning)
        sparse_pooling = pooling.t().contiguous().to_sparse_csr()

    def dense(squares: Tensor) -> Tensor:
        return (squares.flatten(1) @ pooling).view(squares.shape)

    def sparse(squares: Tensor) -> Tensor:
        product = torch.sparse.mm(sparse_pooling, squares.flatten(1).t())
        return product.t().reshape(squares.shape)

    def rolls(squares: Tensor) -> Tensor:
        total = torch.zeros_like(squares)
        for time_offset, unit_offset in window:
            total = total + torch.roll(
                squares, shifts=(-time_offset, -unit_offset), dims=(1, 2)
            )
        return total

    # conv2d correlates: output (l, i) reads input (l + p, i + q) of the padded
    # grid, so the padding before the grid is minus the smallest offset.
    time_offsets = [a for a, _ in window]
    unit_offsets = [k for _, k in window]
    top, left = -min(time_offsets), -min(unit_offsets)
    bottom, right = max(time_offsets), max(unit_offsets)
    kernel = torch.zeros(1, 1, top + bottom + 1, left + right + 1, device=device)
    for time_offset, unit_offset in window:
        kernel[0, 0, time_offset + top, unit_offset + left] += 1.0

    def conv2d(squares: Tensor) -> Tensor:
        padded = F.pad(squares.unsqueeze(1), (left, right, top, bottom),
                       mode="circular")
        return F.conv2d(padded, kernel).squeeze(1)

    grid = torch.zeros(seq_len, cap_dim, device=device)
    for time_offset, unit_offset in window:
        grid[time_offset % seq_len, unit_offset % cap_dim] += 1.0
    window_spectrum = torch.fft.rfft2(grid).conj()

    def fft(squares: Tensor) -> Tensor:
        spectrum = torch.fft.rfft2(squares) * window_spectrum
        return torch.fft.irfft2(spectrum, s=(seq_len, cap_dim))

    return {"dense": dense, "sparse": sparse, "rolls": rolls, "conv2d": conv2d,
            "fft": fft}


def time_form(energy: Energy, u: Tensor, upstream: Tensor, repeats: int) -> float:
    """Return the median microseconds of one forward and backward pass."""

    def call() -> None:
        u.grad = None
        energy(u**2).backward(upstream)

    for _ in range(20):
        call()
    seconds = []
    for _ in range(repeats):
        if u.device.type == "cuda":
            torch.cuda.synchronize(u.device)
        start = time.perf_counter()
        call()
        if u.device.type == "cuda":
            torch.cuda.synchronize(u.device)
        seconds.append(time.perf_counter() - start)
    return 1e6 * statistics.median(seconds)


def main() -> None:
    args, topography = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    forms = build_forms(topography, device)

    torch.manual_seed(0)
    rows = args.batch_size * args.n_caps
    u = torch.randn(rows, args.seq_len, args.cap_dim, device=device,
                    requires_grad=True)
    upstream = torch.randn(rows, args.seq_len, args.cap_dim, device=device)
    with torch.no_grad():
        reference = forms["dense"](u**2)

    result = {}
    for name, energy in forms.items():
        with torch.no_grad():
            difference = (energy(u**2) - reference).abs().max().item()
        microseconds = time_form(energy, u, upstream, args.repeats)
        result[name] = {"microseconds": round(microseconds, 1),
                        "max_difference": difference}
        print(f"{name:>7}: {microseconds:9.1f} us forward and backward, "
              f"largest difference from dense {difference:.2g}")

    result["window_size"] = len(topography.window)
    result["grids"] = rows
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
