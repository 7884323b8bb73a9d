"""Tabulate how the training step cost grows with batch size, sequence length and capsules.

Runs ``train_throughput.py`` once per setting, each in a new process so that
peak memory is per setting, and prints one Markdown table per swept quantity.
The other two quantities keep the config's values (batch 8, 18 frames and 18
capsules for the Table 1 TVAE). A time window longer than the sequence is cut
to the sequence length.

The last line of output is one JSON object with a list of result rows per
swept quantity, each row being the JSON that ``train_throughput.py`` printed.

Run: ``python3 benchmarks/train_scaling.py [--steps 20] [--batch-sizes 4 8 16 32]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "train_throughput.py"

SWEEPS = {
    "batch_size": ("--batch-size", "batch size"),
    "seq_len": ("--seq-len", "frames per sequence"),
    "n_caps": ("--n-caps", "capsules"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per run")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32],
                        help="sequences per batch, one run each")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[6, 12, 18, 36],
                        help="frames per sequence, one run each")
    parser.add_argument("--n-caps", type=int, nargs="+", default=[9, 18, 36],
                        help="numbers of capsules, one run each")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 keeps the default")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()

    for option in ("batch_sizes", "seq_lens", "n_caps"):
        bad = [value for value in getattr(args, option) if value < 1]
        if bad:
            parser.error(f"--{option.replace('_', '-')} must be positive integers, "
                         f"got {bad[0]}")
    if args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's default) or more, "
                     f"got {args.threads}")
    return args


def run_once(args: argparse.Namespace, option: str, value: int) -> dict:
    """Run ``train_throughput.py`` with ``option value`` and return its JSON line."""
    command = [
        sys.executable, str(SCRIPT), option, str(value),
        "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--device", args.device,
    ]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        lines = finished.stderr.strip().splitlines() or ["(no output)"]
        raise SystemExit(
            f"train_scaling.py: error: {option} {value} failed with exit status "
            f"{finished.returncode}: {lines[-1]}"
        )
    return json.loads(finished.stdout.strip().splitlines()[-1])


def table(rows: list[dict], key: str, heading: str) -> str:
    """Return a Markdown table of the step cost against ``key``."""
    columns = [heading, "ms per step", "sequences/s", "GFLOP per step", "GFLOP/s",
               "matmul fraction", "peak memory, MB"]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + " ---: |" * len(columns),
    ]
    for row in rows:
        lines.append(
            f"| {row[key]} | {row['ms_per_step']:.1f} | "
            f"{row['sequences_per_second']:.1f} | {row['gflop_per_step']:.2f} | "
            f"{row['gflop_per_second']:.1f} | {row['matmul_fraction']:.2f} | "
            f"{row['peak_memory_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    values = {"batch_size": args.batch_sizes, "seq_len": args.seq_lens,
              "n_caps": args.n_caps}

    results = {}
    for key, (option, heading) in SWEEPS.items():
        rows = []
        for value in values[key]:
            rows.append(run_once(args, option, value))
            print(f"{heading} {value}: {rows[-1]['ms_per_step']:.1f} ms per step",
                  file=sys.stderr, flush=True)
        results[key] = rows
        print(table(rows, key, heading), end="\n\n", flush=True)

    print(json.dumps(results))


if __name__ == "__main__":
    main()
