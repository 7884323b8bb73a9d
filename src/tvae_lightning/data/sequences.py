"""Sequences of digits under transformations that advance one step per frame.

A sequence has a value for each of its factors (rotation angle, hue, scale,
perspective tilt) in every frame. A *motion* is a group of factors that
advance together, one value per frame, wrapping around at the end of their
value list. Factors outside the sequence's motion stay at one value. Frame
``l`` of a sequence shows factor ``f`` at value
``values_f[(start_f + l * advances_f) mod len(values_f)]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from tvae_lightning.data.transforms import (
    colourise,
    rotation_matrices,
    tilt_matrices,
    to_red,
    warp_affine,
    warp_homography,
    zoom_matrices,
)

FACTOR_NAMES = ("rotation", "colour", "scale", "perspective")
"""Factors in the order they take in ``factors`` and in the composed warp."""

PAPER_SCALES = (
    0.60, 0.64, 0.68, 0.72, 0.76, 0.79, 0.83, 0.87, 0.91,
    0.95, 0.99, 1.03, 1.07, 1.11, 1.14, 1.18, 1.22, 1.26,
)

DEFAULT_VALUES: dict[str, tuple[float, ...]] = {
    "rotation": tuple(float(angle) for angle in range(0, 360, 20)),
    "colour": tuple(float(hue) for hue in range(0, 360, 20)),
    "scale": PAPER_SCALES,
    "perspective": tuple(float(angle) for angle in range(0, 360, 20)),
}
"""Default value lists: degrees for rotation, hue and tilt, zoom factors for scale."""

TRANSFORMATIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "rotation": (("rotation",),),
    "colour": (("colour",),),
    "scale": (("scale",),),
    "perspective": (("perspective",),),
    "rotation_colour": (("rotation", "colour"),),
    "combined": (("rotation",), ("colour",), ("scale",)),
}
"""Transformation names and the motions a sequence picks from, uniformly."""

TILT_DISTANCE = 2.0
"""Camera distance of the perspective tilt in image half-widths."""


def parse_motion(name: str) -> tuple[str, ...]:
    """Return the factors of a motion named like ``"rotation_colour"``.

    A motion name is one or more factor names joined by underscores.
    """
    factors = tuple(name.split("_"))
    unknown = [factor for factor in factors if factor not in FACTOR_NAMES]
    if not name or unknown or len(set(factors)) != len(factors):
        raise ValueError(
            f"invalid motion {name!r}: expected distinct factor names out of "
            f"{list(FACTOR_NAMES)} joined by '_', e.g. 'rotation_colour'"
        )
    return tuple(factor for factor in FACTOR_NAMES if factor in factors)


class TransformationSequences:
    """Factor values and frames of sequences of one named transformation.

    Each sequence picks one motion of the transformation uniformly. Its
    advancing factors start at a random index out of ``start_indices`` and the
    other factors stay at a random value out of their whole list. ``held_out``
    names a motion that only test sequences use: it is removed from the motions
    of training and validation sequences, and test sequences use it alone.

    Args:
        transformation: a name out of :data:`TRANSFORMATIONS`.
        seq_len: frames per sequence.
        values: value list per factor name, replacing :data:`DEFAULT_VALUES`;
            degrees for rotation, colour (hue) and perspective (tilt), zoom
            factors for scale.
        start_indices: indices into the value lists at which advancing factors
            may start; every index when ``None``.
        held_out: motion seen only in test sequences, e.g. ``"rotation_colour"``.
    """

    def __init__(
        self,
        transformation: str = "rotation",
        seq_len: int = 18,
        values: Mapping[str, Sequence[float]] | None = None,
        start_indices: Sequence[int] | None = None,
        held_out: str | None = None,
    ) -> None:
        if transformation not in TRANSFORMATIONS:
            raise ValueError(
                f"unknown transformation {transformation!r}; valid names are "
                f"{sorted(TRANSFORMATIONS)}"
            )
        if seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, got {seq_len}")
        self.name = transformation
        self.seq_len = seq_len

        motions = list(TRANSFORMATIONS[transformation])
        held_out_motion = parse_motion(held_out) if held_out is not None else None
        self.train_motions, self.test_motions = _split_motions(
            motions, held_out_motion, transformation
        )
        if held_out_motion is not None and held_out_motion not in motions:
            motions.append(held_out_motion)

        used = {factor for motion in motions for factor in motion}
        self.factor_names = tuple(name for name in FACTOR_NAMES if name in used)
        self.values = _value_lists(self.factor_names, values)
        self.sizes = torch.tensor([len(values) for values in self.values])
        self._tables: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}
        self.advances = torch.tensor(
            [[name in motion for name in self.factor_names] for motion in motions]
        )
        self.varied_factor = torch.tensor(
            [self.factor_names.index(motion[0]) for motion in motions]
        )
        self.start_indices = self._check_start_indices(start_indices, motions)

    def _check_start_indices(
        self, start_indices: Sequence[int] | None, motions: list[tuple[str, ...]]
    ) -> Tensor | None:
        if start_indices is None:
            return None
        advancing = {factor for motion in motions for factor in motion}
        limit = min(
            len(self.values[self.factor_names.index(name)]) for name in advancing
        )
        indices = list(start_indices)
        if not indices or any(not 0 <= index < limit for index in indices):
            raise ValueError(
                f"start_indices must be a non-empty list of indices in [0, {limit}) "
                f"(the shortest value list of an advancing factor), got {indices}"
            )
        return torch.tensor(indices, dtype=torch.long)

    @property
    def num_motions(self) -> int:
        return len(self.advances)

    def sample(
        self, count: int, generator: torch.Generator, split: str = "train"
    ) -> tuple[Tensor, Tensor]:
        """Draw the motion ``(count,)`` and start indices ``(count, F)`` of sequences.

        ``split`` is ``"train"`` or ``"val"`` (motions without the held-out one)
        or ``"test"`` (the held-out motion when there is one). Runs on the CPU.
        """
        allowed = self.test_motions if split == "test" else self.train_motions
        choice = torch.randint(len(allowed), (count,), generator=generator)
        motions = torch.tensor(allowed, dtype=torch.long)[choice]

        sizes = self.sizes
        anywhere = (torch.rand(count, len(sizes), generator=generator) * sizes).long()
        if self.start_indices is None:
            return motions, anywhere
        pick = torch.randint(
            len(self.start_indices), (count, len(sizes)), generator=generator
        )
        starts = torch.where(self.advances[motions], self.start_indices[pick], anywhere)
        return motions, starts

    def _tables_on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Return sizes ``(F,)``, padded values and the advance table on ``device``."""
        if device not in self._tables:
            width = int(self.sizes.max())
            padded = torch.zeros(len(self.values), width)
            for row, values in enumerate(self.values):
                padded[row, : len(values)] = values
            tables = (self.sizes, padded, self.advances.long())
            self._tables[device] = tuple(table.to(device) for table in tables)
        return self._tables[device]

    def factor_indices(self, motions: Tensor, starts: Tensor) -> Tensor:
        """Return the value index of every factor in every frame, ``(B, S, F)``."""
        sizes, _, advances = self._tables_on(starts.device)
        frames = torch.arange(self.seq_len, device=starts.device)
        steps = frames[None, :, None] * advances[motions][:, None, :]
        return torch.remainder(starts[:, None, :] + steps, sizes)

    def factors(self, motions: Tensor, starts: Tensor) -> Tensor:
        """Return the value of every factor in every frame, ``(B, S, F)``."""
        indices = self.factor_indices(motions, starts)
        _, padded, _ = self._tables_on(indices.device)
        rows = torch.arange(len(padded), device=indices.device)
        return padded[rows, indices]

    def varied(self, motions: Tensor) -> Tensor:
        """Return the index into ``factor_names`` of each sequence's varied factor.

        For a motion of several factors (``rotation_colour``) it is the first.
        """
        return self.varied_factor.to(motions.device)[motions]

    def render(self, images: Tensor, factors: Tensor) -> Tensor:
        """Draw frames ``(B, S, 3, H, W)`` of ``images (B, 1, H, W)`` at ``factors``.

        The digit is warped once per frame by the product of the frame's
        rotation, zoom and tilt matrices. Rotation and zoom commute, and the tilt
        acts last, on the rotated and zoomed digit. The frame is then painted at
        its hue, or red when the transformation has no colour factor.
        """
        batch, seq_len, _ = factors.shape
        flat = factors.reshape(batch * seq_len, -1).to(images.dtype)
        frames = images.repeat_interleave(seq_len, dim=0)

        matrices = self._warp_matrices(flat)
        if matrices is not None and "perspective" in self.factor_names:
            frames = warp_homography(frames, matrices)
        elif matrices is not None:
            frames = warp_affine(frames, matrices[:, :2])

        if "colour" in self.factor_names:
            frames = colourise(frames, flat[:, self.factor_names.index("colour")])
        else:
            frames = to_red(frames)
        return frames.reshape(batch, seq_len, *frames.shape[1:])

    def _warp_matrices(self, flat: Tensor) -> Tensor | None:
        builders = {
            "rotation": rotation_matrices,
            "scale": zoom_matrices,
            "perspective": lambda angles: tilt_matrices(angles, TILT_DISTANCE),
        }
        matrices = None
        for name in self.factor_names:
            if name not in builders:
                continue
            matrix = builders[name](flat[:, self.factor_names.index(name)])
            matrices = matrix if matrices is None else matrices @ matrix
        return matrices


def _split_motions(
    motions: list[tuple[str, ...]],
    held_out: tuple[str, ...] | None,
    transformation: str,
) -> tuple[list[int], list[int]]:
    """Return the motion indices of training/validation and of test sequences."""
    everything = list(range(len(motions)))
    if held_out is None:
        return everything, everything
    if held_out not in motions:
        return everything, [len(motions)]

    train = [index for index, motion in enumerate(motions) if motion != held_out]
    if not train:
        raise ValueError(
            f"held_out={'_'.join(held_out)!r} is the only motion of transformation "
            f"{transformation!r}, so no motion is left for training. Hold out one "
            f"motion of 'combined', or a motion the transformation does not have"
        )
    return train, [motions.index(held_out)]


def _value_lists(
    factor_names: tuple[str, ...], values: Mapping[str, Sequence[float]] | None
) -> list[Tensor]:
    values = dict(values or {})
    unknown = sorted(set(values) - set(FACTOR_NAMES))
    if unknown:
        raise ValueError(
            f"values has unknown factors {unknown}; valid names are "
            f"{list(FACTOR_NAMES)}"
        )
    lists = []
    for name in factor_names:
        chosen = values.get(name, DEFAULT_VALUES[name])
        if len(chosen) == 0:
            raise ValueError(f"values[{name!r}] must not be empty")
        if name == "scale" and min(chosen) <= 0:
            raise ValueError(f"values['scale'] must be positive, got {list(chosen)}")
        lists.append(torch.tensor([float(value) for value in chosen]))
    return lists
