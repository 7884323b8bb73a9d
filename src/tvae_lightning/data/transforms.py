"""Batched image transformations with one parameter per image.

Every function takes ``images`` of shape ``(N, C, H, W)`` with values in [0, 1] and
one parameter per image, and transforms the whole batch in one call on the
device the images are on.

Geometric transformations are written as 3 x 3 matrices that map output
coordinates to input coordinates, both normalised to [-1, 1] about the image
centre with ``align_corners=False`` (the convention of ``torch.nn.functional``
``affine_grid`` and ``grid_sample``). Multiplying the matrices of several
transformations composes them, so a frame is resampled only once.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor


def warp_affine(images: Tensor, matrices: Tensor) -> Tensor:
    """Resample ``images`` through the inverse maps ``matrices`` of shape ``(N, 2, 3)``.

    A matrix maps output coordinates to input coordinates, both normalised to
    [-1, 1] about the image centre. Bilinear interpolation, zeros outside. The
    result equals ``affine_grid`` followed by ``grid_sample``.
    """
    return _sample(images, sampling_grid(matrices, *images.shape[-2:]))


def warp_homography(images: Tensor, matrices: Tensor) -> Tensor:
    """Resample ``images`` through the inverse homographies ``matrices (N, 3, 3)``.

    Output pixel centre ``(x, y, 1)`` in normalised coordinates maps to the input
    point ``(a / w, b / w)`` with ``(a, b, w) = matrix @ (x, y, 1)``. Output
    pixels whose ``w`` is not positive see no point of the input plane in front
    of the camera and stay zero. Bilinear interpolation, zeros outside.
    """
    return _sample(images, sampling_grid(matrices, *images.shape[-2:]))


def _sample(images: Tensor, grid: Tensor) -> Tensor:
    return F.grid_sample(
        images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros",
        align_corners=False,
    )


def sampling_grid(matrices: Tensor, height: int, width: int) -> Tensor:
    """Return the ``grid_sample`` grid ``(N, height, width, 2)`` of inverse maps.

    ``matrices`` are affine ``(N, 2, 3)`` or projective ``(N, 3, 3)``. A projective
    map divides by its third row and sends points with ``w <= 0`` (behind the
    camera) far outside [-1, 1].
    """
    xs = pixel_centres(width, matrices.device, matrices.dtype)
    ys = pixel_centres(height, matrices.device, matrices.dtype)

    # Row i of a matrix gives coordinate i as (a * x) + (b * y + c). Both terms
    # are small, (rows, 1, width) and (rows, height, 1), and one broadcast sum
    # fills the grid: several times faster than affine_grid on the CPU.
    terms = matrices[:, :, :, None, None]
    along_x = terms[:, :, 0] * xs
    along_y = terms[:, :, 1] * ys[:, None] + terms[:, :, 2]
    mapped = along_x + along_y

    if matrices.shape[1] == 3:
        w = mapped[:, 2:]
        grid = mapped[:, :2] / w.clamp(min=1e-12)
        mapped = grid.masked_fill(w <= 0, 4.0)
    return mapped.permute(0, 2, 3, 1)


@functools.lru_cache(maxsize=32)
def pixel_centres(size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Return the normalised coordinates ``(size,)`` of the pixel centres along an axis.

    Pixel ``i`` of ``size`` has its centre at ``(2 i + 1) / size - 1``, the
    ``align_corners=False`` convention. Cached, because a grid is built per batch.
    """
    return (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1


def rotation_matrices(angles: Tensor) -> Tensor:
    """Return inverse maps ``(N, 3, 3)`` that rotate counter-clockwise by ``angles``.

    ``angles`` are in degrees. The images turn about their centre as
    ``torchvision.transforms.functional.rotate`` turns them.
    """
    radians = torch.deg2rad(angles)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    entries = [cos, -sin, zero, sin, cos, zero, zero, zero, one]
    return torch.stack(entries, dim=-1).view(-1, 3, 3)


def zoom_matrices(scales: Tensor) -> Tensor:
    """Return inverse maps ``(N, 3, 3)`` that enlarge by ``scales`` about the centre.

    A scale above 1 magnifies, below 1 shrinks: output point ``p`` shows input
    point ``p / scale``.
    """
    inverse = 1.0 / scales
    zero, one = torch.zeros_like(inverse), torch.ones_like(inverse)
    entries = [inverse, zero, zero, zero, inverse, zero, zero, zero, one]
    return torch.stack(entries, dim=-1).view(-1, 3, 3)


def tilt_matrices(angles: Tensor, distance: float = 2.0) -> Tensor:
    """Return inverse homographies ``(N, 3, 3)`` of the image plane turned in 3D.

    The image plane turns by ``angles`` (degrees) about its vertical axis through
    the centre, so at 90 degrees it is seen edge-on and at 180 degrees from behind
    (mirrored). A pinhole camera at ``distance`` half-widths from the centre,
    on the optical axis, views it, and at angle 0 the image is unchanged. Plane
    point ``(x, 0, 0)`` turned by ``a`` lies at ``(x cos a, 0, x sin a)``, depth
    pointing away from the camera, and projects to ``u = d x cos a / (d + x sin a)``.
    Solving for ``x`` gives the inverse map
    ``x = d u / (d cos a - u sin a)``, ``y = d cos a v / (d cos a - u sin a)``.
    """
    if distance <= 1.0:
        raise ValueError(
            f"distance must be above 1 (image half-widths) so that the whole image "
            f"plane stays in front of the camera at every angle, got {distance}"
        )
    radians = torch.deg2rad(angles)
    cos, sin = torch.cos(radians), torch.sin(radians)

    # Scaling by the sign of cos a keeps w positive where the plane lies in front
    # of the camera, which warp_homography relies on.
    sign = torch.where(cos < 0, -1.0, 1.0).to(cos.dtype)
    far = distance * cos.abs()
    zero = torch.zeros_like(cos)
    entries = [distance * sign, zero, zero, zero, far, zero, -sin * sign, zero, far]
    return torch.stack(entries, dim=-1).view(-1, 3, 3)


def rotate(images: Tensor, angles: Tensor) -> Tensor:
    """Rotate each image counter-clockwise by its angle in degrees about its centre.

    Matches ``torchvision.transforms.functional.rotate`` with bilinear
    interpolation for square images.
    """
    matrices = rotation_matrices(angles.to(images.dtype))
    return warp_affine(images, matrices[:, :2])


def zoom(images: Tensor, scales: Tensor) -> Tensor:
    """Enlarge each image by its scale about its centre (below 1 shrinks it)."""
    matrices = zoom_matrices(scales.to(images.dtype))
    return warp_affine(images, matrices[:, :2])


def tilt(images: Tensor, angles: Tensor, distance: float = 2.0) -> Tensor:
    """Turn each image plane in 3D by its angle in degrees (:func:`tilt_matrices`)."""
    matrices = tilt_matrices(angles.to(images.dtype), distance)
    return warp_homography(images, matrices)


def hue_colours(hues: Tensor) -> Tensor:
    """Return the RGB colours ``(N, 3)`` of full saturation and value at ``hues``.

    ``hues`` are in degrees: 0 is red, 120 green, 240 blue. Channel ``n`` of
    the HSV to RGB conversion is ``1 - max(0, min(k, 4 - k, 1))`` with
    ``k = (n + hue / 60) mod 6`` and ``n = 5, 3, 1`` for red, green and blue.
    """
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=hues.dtype, device=hues.device)
    k = torch.remainder(offsets + hues.unsqueeze(-1) / 60.0, 6.0)
    ramp = torch.minimum(torch.minimum(k, 4.0 - k), torch.ones_like(k))
    return 1.0 - ramp.clamp(min=0.0)


def colourise(images: Tensor, hues: Tensor) -> Tensor:
    """Paint single-channel ``images (N, 1, H, W)`` in the colours of ``hues``.

    The result equals turning the hue of the red image ``to_red(images)`` by
    ``hues`` degrees: a red pixel of value v has HSV ``(0, 1, v)``, so its
    turned colour is ``v`` times the colour of full value at that hue.
    """
    colours = hue_colours(hues.to(images.dtype))
    return images * colours[:, :, None, None]


def adjust_hue(images: Tensor, hues: Tensor) -> Tensor:
    """Turn the hue of RGB ``images (N, 3, H, W)`` by ``hues`` degrees, one per image.

    Converts to HSV, adds the hue and converts back, as
    ``torchvision.transforms.functional.adjust_hue`` does with
    ``hue_factor = hue / 360`` (wrapped to [-0.5, 0.5]). Grey pixels stay grey.
    """
    value, _ = images.max(dim=1)
    minimum, _ = images.min(dim=1)
    chroma = value - minimum
    saturation = torch.where(value > 0, chroma / value.clamp(min=1e-12), 0.0)
    hue = _hue_degrees(images, value, chroma)

    shifted = torch.remainder(hue + hues.to(images.dtype)[:, None, None], 360.0)
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=images.dtype, device=images.device)
    k = torch.remainder(offsets[None, :, None, None] + shifted[:, None] / 60.0, 6.0)
    ramp = torch.minimum(torch.minimum(k, 4.0 - k), torch.ones_like(k)).clamp(min=0.0)
    return value[:, None] * (1.0 - saturation[:, None] * ramp)


def _hue_degrees(images: Tensor, value: Tensor, chroma: Tensor) -> Tensor:
    """Return the HSV hue in degrees ``(N, H, W)``; 0 where the pixel is grey."""
    red, green, blue = images.unbind(dim=1)
    safe = chroma.clamp(min=1e-12)
    hue_red = torch.remainder((green - blue) / safe, 6.0)
    hue_green = (blue - red) / safe + 2.0
    hue_blue = (red - green) / safe + 4.0

    hue = torch.where(value == green, hue_green, hue_blue)
    hue = torch.where(value == red, hue_red, hue)
    return torch.where(chroma > 0, hue * 60.0, torch.zeros_like(hue))


def to_red(images: Tensor) -> Tensor:
    """Place single-channel ``images (N, 1, H, W)`` in the red channel of RGB images."""
    return F.pad(images, (0, 0, 0, 0, 0, 2))
