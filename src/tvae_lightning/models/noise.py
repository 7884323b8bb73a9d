"""Standard normal noise that is a fixed function of a sample's index.

Validation and test losses are Monte Carlo estimates that need a noise draw per
sequence. Drawing it from the global generator makes the estimate depend on the
batch size, on how the sequences are split over processes and on what ran
before. :func:`keyed_normal` instead hashes ``(seed, stream, key, element)``, so
sequence ``key`` gets the same noise in any batch, on any process and in any
run. The global generator is left untouched, so validation between training
steps does not shift the random stream of a resumed run.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B9


def _multiply32(x: Tensor, constant: int) -> Tensor:
    """Return ``x * constant mod 2**32`` for ``0 <= x < 2**32``, without overflow."""
    low = (x & 0xFFFF) * constant
    high = ((x >> 16) * constant) & 0xFFFF
    return (low + (high << 16)) & _MASK32


def hash32(x: Tensor) -> Tensor:
    """Mix 32-bit values held in an int64 tensor (C. Wellons' "lowbias32" hash)."""
    x = x ^ (x >> 16)
    x = _multiply32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _multiply32(x, 0x846CA68B)
    return x ^ (x >> 16)


def keyed_normal(
    keys: Tensor, shape: tuple[int, ...], seed: int = 0, stream: int = 0
) -> Tensor:
    """Return standard normal noise ``(len(keys), *shape)``, one fixed draw per key.

    Row ``i`` depends only on ``keys[i]``, ``shape``, ``seed`` and ``stream``.
    Two hashed 32-bit uniforms per pair of outputs go through the Box-Muller
    transform; the values are float32 on the device of ``keys``. Use distinct
    ``stream`` values for independent draws of the same keys.

    Args:
        keys: non-negative integer keys ``(batch,)``, such as sample indices.
        shape: shape of the noise of one key.
        seed: seed of the whole family of draws.
        stream: index of an independent draw for the same keys.
    """
    if keys.ndim != 1 or keys.dtype.is_floating_point:
        raise ValueError(
            f"keys must be a 1-D integer tensor, got dtype {keys.dtype} and shape "
            f"{tuple(keys.shape)}"
        )
    numel = math.prod(shape)
    pairs = (numel + 1) // 2

    start = torch.tensor((seed * _GOLDEN32 + stream) & _MASK32, device=keys.device)
    per_key = hash32(hash32(start) ^ (keys.long() & _MASK32))
    counters = 2 * torch.arange(pairs, device=keys.device)
    first = hash32(hash32((per_key[:, None] + counters) & _MASK32) ^ _GOLDEN32)
    second = hash32(hash32((per_key[:, None] + counters + 1) & _MASK32) ^ _GOLDEN32)

    # (h + 0.5) / 2**32 lies in (0, 1], so the logarithm is finite.
    scale = 1.0 / 2.0**32
    radius = torch.sqrt(-2.0 * torch.log((first.float() + 0.5) * scale))
    angle = (2.0 * math.pi * scale) * second.float()
    noise = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return noise[:, :numel].reshape(len(keys), *shape)
