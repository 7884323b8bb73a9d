"""Offset windows that define which latent units pool into each other."""

from __future__ import annotations


def centred_offsets(n: int) -> list[int]:
    """Return the ``n`` integer offsets centred on 0, leaning forward when ``n`` is even.

    ``centred_offsets(5)`` is ``[-2, -1, 0, 1, 2]`` and ``centred_offsets(18)`` is
    ``[-8, ..., 9]``. ``centred_offsets(0)`` is empty.
    """
    if n < 0:
        raise ValueError(f"window size must be >= 0, got {n}")

    start = -((n - 1) // 2)
    return list(range(start, start + n))


def shifting_window(time_window: int, capsule_window: int) -> list[tuple[int, int]]:
    """Return the (time offset, unit offset) pairs of the shifting TVAE window.

    Both offsets range over ``centred_offsets(time_window)`` and may differ by at
    most ``(capsule_window - 1) // 2``: a diagonal band of width ``capsule_window``
    cut at the corners of the ``time_window`` square. For time_window 13 and
    capsule_window 3 that gives 37 pairs.
    """
    half_band = (capsule_window - 1) // 2
    offsets = centred_offsets(time_window)
    return [(a, k) for a in offsets for k in offsets if abs(a - k) <= half_band]


def stationary_window(time_window: int, capsule_window: int) -> list[tuple[int, int]]:
    """Return the (time offset, unit offset) pairs of the BubbleVAE window.

    Every time offset of ``centred_offsets(time_window)`` pairs with every unit
    offset of ``centred_offsets(capsule_window)``: a rectangle that does not shift.
    """
    return [
        (a, k)
        for a in centred_offsets(time_window)
        for k in centred_offsets(capsule_window)
    ]


def instantaneous_window(capsule_window: int) -> list[tuple[int, int]]:
    """Return the pairs of a window that pools units within the same frame only."""
    return [(0, k) for k in centred_offsets(capsule_window)]
