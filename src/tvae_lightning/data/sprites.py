"""dSprites images: the official archive or a procedural renderer of the same grid.

Both sources index a sprite by the class (grid index) of its five factors in
the order of :data:`SPRITE_FACTORS`: shape (square, ellipse, heart), scale
(6 values, 0.5 to 1), orientation (40 values, 0 to 2 pi), x and y position
(32 values each, 0 to 1). Both return float frames ``(N, 1, 64, 64)`` in
{0, 1} on the device of the classes.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
import zlib
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

SPRITE_FACTORS = ("shape", "scale", "orientation", "x", "y")
"""Factor names in the order of the class and value columns."""

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_URL = (
    "https://github.com/deepmind/dsprites-dataset/raw/master/" + DSPRITES_FILE
)
IMAGE_SIZE = 64


def dsprites_grid_values() -> list[Tensor]:
    """Return the factor values of the official archive, one tensor per factor.

    Shapes are numbered 1 (square), 2 (ellipse) and 3 (heart). Orientation runs
    over ``linspace(0, 2 pi, 40)``: the dSprites README gives "40 values in
    [0, 2 pi]", so the first and last values show the same sprite.
    """
    return [
        torch.tensor([1.0, 2.0, 3.0]),
        torch.linspace(0.5, 1.0, 6),
        torch.linspace(0.0, 2 * math.pi, 40),
        torch.linspace(0.0, 1.0, 32),
        torch.linspace(0.0, 1.0, 32),
    ]


class SpriteSource(Protocol):
    """Images of the factor grid, indexed by class."""

    sizes: Tensor
    values: list[Tensor]
    name: str

    def render(self, classes: Tensor) -> Tensor:
        """Return frames ``(N, 1, 64, 64)`` of the sprites with ``classes (N, 5)``."""
        ...


class ProceduralSprites:
    """Renderer of the dSprites factor grid, drawn in one batch on any device.

    A pixel is 1 when its centre lies inside the sprite. The sprite's centre
    moves from ``MARGIN`` to ``64 - MARGIN`` pixels as x (columns) and y (rows,
    downwards) go from 0 to 1. Scale 1 gives a square of side
    ``2 * HALF_SIZE`` pixels, an ellipse of that width and half that height,
    and a heart of about that size. Orientation turns the sprite
    counter-clockwise on screen, in radians.

    NOTE: the sprites follow the factor grid of the official archive, not its
    pixels: sizes, margins and the heart's outline are this renderer's own.
    """

    HALF_SIZE = 9.0
    MARGIN = 13.0
    name = "procedural renderer"

    def __init__(self) -> None:
        self.values = dsprites_grid_values()
        self.sizes = torch.tensor([len(values) for values in self.values])

    def render(self, classes: Tensor) -> Tensor:
        device = classes.device
        values = [v.to(device)[classes[:, i]] for i, v in enumerate(self.values)]
        shape, scale, orientation, x, y = values

        span = IMAGE_SIZE - 2 * self.MARGIN
        centre_x = (self.MARGIN + span * x)[:, None, None]
        centre_y = (self.MARGIN + span * y)[:, None, None]
        pixels = torch.arange(IMAGE_SIZE, device=device, dtype=torch.float32) + 0.5
        dx = pixels[None, None, :] - centre_x
        dy_up = centre_y - pixels[None, :, None]

        # Turning the pixel offsets by -orientation puts them in sprite coordinates.
        cos = torch.cos(orientation)[:, None, None]
        sin = torch.sin(orientation)[:, None, None]
        half = (self.HALF_SIZE * scale)[:, None, None]
        local_x = (cos * dx + sin * dy_up) / half
        local_y = (-sin * dx + cos * dy_up) / half

        inside = torch.stack(
            [
                _inside_square(local_x, local_y),
                _inside_ellipse(local_x, local_y),
                _inside_heart(local_x, local_y),
            ]
        )
        shape_index = (shape.long() - 1).clamp(0, 2)
        picked = inside[shape_index, torch.arange(len(classes), device=device)]
        return picked.unsqueeze(1).float()


def _inside_square(x: Tensor, y: Tensor) -> Tensor:
    return torch.maximum(x.abs(), y.abs()) <= 1.0


def _inside_ellipse(x: Tensor, y: Tensor) -> Tensor:
    return x**2 + (2.0 * y) ** 2 <= 1.0


def _inside_heart(x: Tensor, y: Tensor) -> Tensor:
    # The curve (X^2 + Y^2 - 1)^3 = X^2 Y^3 spans X in [-1.14, 1.14] and
    # Y in [-1, 1.24]; the shift and scale centre it on [-1, 1] roughly.
    big_x = 1.15 * x
    big_y = 1.15 * y + 0.12
    return (big_x**2 + big_y**2 - 1.0) ** 3 - big_x**2 * big_y**3 <= 0.0


class _ArchiveError(ValueError):
    """An archive that cannot be used, with a message naming the file."""


class ArchiveSprites:
    """Images of an official dSprites ``.npz`` archive, kept as packed bits.

    The archive contains ``imgs`` ``(N, 64, 64)`` uint8 in {0, 1},
    ``latents_classes`` and ``latents_values`` ``(N, 6)`` (colour, shape, scale,
    orientation, x, y). The images are read in chunks and packed 8 pixels to a
    byte, so the 737,280 official images take 377 MB of memory. The grid size of
    each factor is read from the classes, so a smaller complete grid works too.

    Raises:
        ValueError: the file is not a readable ``.npz`` archive, is truncated, or
            its arrays do not form a complete factor grid; the message names the
            file.
    """

    CHUNK = 16384
    name = "dSprites archive"

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            classes, values = self._read_latents()
            self.packed = torch.from_numpy(self._read_packed_images(len(classes)))
        except _ArchiveError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
            # np.load raises ValueError for a file that is neither zip nor .npy.
            raise self._error(f"{type(error).__name__}: {error}") from error

        self.sizes, self.values, self.lookup = self._index_grid(classes, values)

    def _error(self, reason: str) -> ValueError:
        return _ArchiveError(
            f"invalid or truncated dSprites archive {self.path!r} ({reason}). "
            f"Delete it and copy an intact {DSPRITES_FILE} from {DSPRITES_URL}, or "
            f"move it away to use the procedural renderer."
        )

    def _read_latents(self) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self.path, allow_pickle=False) as archive:
            for key in ("imgs", "latents_classes", "latents_values"):
                if key not in archive.files:
                    raise self._error(f"missing array {key!r}")
            classes = archive["latents_classes"]
            values = archive["latents_values"]

        if classes.ndim != 2 or classes.shape[1] != 6 or values.shape != classes.shape:
            raise self._error(
                f"latents_classes and latents_values must have shape (N, 6), got "
                f"{classes.shape} and {values.shape}"
            )
        return classes[:, 1:].astype(np.int64), values[:, 1:].astype(np.float32)

    def _read_packed_images(self, count: int) -> np.ndarray:
        with zipfile.ZipFile(self.path) as archive, archive.open("imgs.npy") as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            expected = (count, IMAGE_SIZE, IMAGE_SIZE)
            if shape != expected or dtype != np.uint8 or fortran:
                raise self._error(
                    f"imgs must be C-ordered uint8 of shape {expected}, got "
                    f"{dtype} of shape {shape}"
                )
            return self._pack_chunks(stream, count)

    def _pack_chunks(self, stream, count: int) -> np.ndarray:
        packed = np.empty((count, IMAGE_SIZE, IMAGE_SIZE // 8), dtype=np.uint8)
        frame_bytes = IMAGE_SIZE * IMAGE_SIZE
        for begin in range(0, count, self.CHUNK):
            end = min(begin + self.CHUNK, count)
            data = stream.read((end - begin) * frame_bytes)
            if len(data) != (end - begin) * frame_bytes:
                raise self._error(f"imgs ends after {begin} of {count} images")
            chunk = np.frombuffer(data, dtype=np.uint8)
            if chunk.max(initial=0) > 1:
                raise self._error("imgs must contain only the pixel values 0 and 1")
            images = chunk.reshape(end - begin, IMAGE_SIZE, IMAGE_SIZE)
            packed[begin:end] = np.packbits(images, axis=-1)
        return packed

    def _index_grid(
        self, classes: np.ndarray, values: np.ndarray
    ) -> tuple[Tensor, list[Tensor], Tensor]:
        """Return grid sizes, the values of every class and the class-to-row table."""
        if classes.min(initial=0) < 0:
            raise self._error("latents_classes must not be negative")
        sizes = classes.max(axis=0) + 1
        bases = np.cumprod(np.concatenate([sizes[1:], [1]])[::-1])[::-1]
        flat = classes @ bases
        lookup = np.full(int(np.prod(sizes)), -1, dtype=np.int64)
        lookup[flat] = np.arange(len(classes))
        if (lookup < 0).any() or len(classes) != len(lookup):
            raise self._error(
                f"the classes must cover each cell of the {tuple(sizes)} factor grid "
                f"exactly once"
            )

        grid_values = []
        for column, size in enumerate(sizes):
            column_values = np.zeros(size, dtype=np.float32)
            column_values[classes[:, column]] = values[:, column]
            grid_values.append(torch.from_numpy(column_values))
        return torch.from_numpy(sizes), grid_values, torch.from_numpy(lookup)

    def render(self, classes: Tensor) -> Tensor:
        sizes = self.sizes.tolist()
        bases = [math.prod(sizes[i + 1 :]) for i in range(len(sizes))]
        flat = (classes * torch.tensor(bases, device=classes.device)).sum(dim=-1)
        rows = self.lookup[flat.cpu()]

        # Only the chosen frames travel to the device, still packed.
        packed = self.packed[rows].to(classes.device, non_blocking=True)
        shifts = torch.arange(7, -1, -1, device=classes.device, dtype=torch.uint8)
        bits = (packed.unsqueeze(-1) >> shifts) & 1
        return bits.reshape(len(classes), 1, IMAGE_SIZE, IMAGE_SIZE).float()


def open_sprites(root: str, source: str = "auto") -> SpriteSource:
    """Return the archive in ``root`` or the procedural renderer.

    ``source`` is ``"auto"`` (the archive when ``root`` contains it, else the
    renderer), ``"archive"`` (raise ``FileNotFoundError`` without it) or
    ``"procedural"``.
    """
    path = os.path.join(root, DSPRITES_FILE)
    if source == "procedural":
        sprites: SpriteSource = ProceduralSprites()
    elif os.path.isfile(path):
        sprites = ArchiveSprites(path)
    elif source == "archive":
        raise FileNotFoundError(
            f"{DSPRITES_FILE} not found in {root!r}. Copy it there from "
            f"{DSPRITES_URL}, pass download=True on a machine with network access, "
            f"or set source='auto' to fall back to the procedural renderer."
        )
    else:
        log.info("%s not found in %s", DSPRITES_FILE, root)
        sprites = ProceduralSprites()

    location = path if isinstance(sprites, ArchiveSprites) else "no file"
    log.info("dSprites frames come from the %s (%s)", sprites.name, location)
    return sprites
