"""Batched image transformations against torchvision on one image at a time."""

from __future__ import annotations

import colorsys
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from tvae_lightning.data.transforms import (
    adjust_hue,
    colourise,
    rotate,
    rotation_matrices,
    sampling_grid,
    tilt,
    to_red,
    warp_affine,
    warp_homography,
    zoom,
)

BILINEAR = InterpolationMode.BILINEAR
TOLERANCE = 1e-4


def blobs(count: int, channels: int = 1, size: int = 28) -> torch.Tensor:
    """Return smooth random images ``(count, channels, size, size)`` in [0, 1]."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(count, channels, size // 4, size // 4, generator=generator)
    return F.interpolate(noise, size=(size, size), mode="bilinear")


def hue_factor(degrees: float) -> float:
    """Return torchvision's ``hue_factor`` in [-0.5, 0.5] for a hue turn in degrees."""
    return ((degrees + 180.0) % 360.0 - 180.0) / 360.0


def tilt_corners(degrees: float, distance: float, size: int) -> tuple[list, list]:
    """Project the corners of an image plane turned about its vertical axis.

    The plane point (x, y) in half-widths goes to (x cos a, y, x sin a) in 3D, depth
    away from a pinhole camera ``distance`` half-widths in front of the centre.
    """
    radians = math.radians(degrees)
    start, end = [], []
    for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        point = (x * math.cos(radians), y, x * math.sin(radians))
        depth = distance + point[2]
        u, v = distance * point[0] / depth, distance * point[1] / depth
        start.append([(x + 1) * size / 2, (y + 1) * size / 2])
        end.append([(u + 1) * size / 2, (v + 1) * size / 2])
    return start, end


def slow_adjust_hue(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """Turn the hue of one RGB image ``(3, H, W)`` pixel by pixel with colorsys."""
    result = torch.empty_like(image)
    for row in range(image.shape[1]):
        for column in range(image.shape[2]):
            red, green, blue = image[:, row, column].tolist()
            hue, saturation, value = colorsys.rgb_to_hsv(red, green, blue)
            turned = (hue + degrees / 360.0) % 1.0
            pixel = colorsys.hsv_to_rgb(turned, saturation, value)
            result[:, row, column] = torch.tensor(pixel)
    return result


@pytest.mark.parametrize("angle", [0.0, 20.0, 100.0, 180.0, 340.0])
def test_rotate_matches_torchvision_rotate(angle: float):
    images = blobs(1)
    expected = TF.rotate(images[0], angle, interpolation=BILINEAR)
    result = rotate(images, torch.tensor([angle]))[0]
    assert torch.allclose(result, expected, atol=TOLERANCE)


def test_rotate_batch_equals_one_call_per_image():
    images = blobs(4)
    angles = torch.tensor([0.0, 40.0, 220.0, 300.0])
    batched = rotate(images, angles)
    for index in range(4):
        single = rotate(images[index : index + 1], angles[index : index + 1])
        assert torch.allclose(batched[index], single[0], atol=1e-6)


@pytest.mark.parametrize("scale", [0.60, 0.87, 1.0, 1.26])
def test_zoom_matches_torchvision_affine(scale: float):
    images = blobs(1)
    expected = TF.affine(
        images[0], angle=0.0, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
        interpolation=BILINEAR,
    )
    result = zoom(images, torch.tensor([scale]))[0]
    assert torch.allclose(result, expected, atol=TOLERANCE)


@pytest.mark.parametrize("hue", [0.0, 20.0, 120.0, 180.0, 200.0, 340.0])
def test_colourise_matches_torchvision_adjust_hue(hue: float):
    images = blobs(1)
    expected = TF.adjust_hue(to_red(images)[0], hue_factor(hue))
    result = colourise(images, torch.tensor([hue]))[0]
    assert torch.allclose(result, expected, atol=TOLERANCE)


@pytest.mark.parametrize("hue", [20.0, 150.0, 300.0])
def test_adjust_hue_matches_torchvision_on_rgb(hue: float):
    images = blobs(1, channels=3)
    expected = TF.adjust_hue(images[0], hue_factor(hue))
    result = adjust_hue(images, torch.tensor([hue]))[0]
    assert torch.allclose(result, expected, atol=TOLERANCE)


def test_adjust_hue_matches_slow_colorsys():
    images = blobs(2, channels=3, size=8)
    images[0, :, 0, 0] = 0.5
    hues = torch.tensor([45.0, 270.0])
    result = adjust_hue(images, hues)
    for index in range(2):
        expected = slow_adjust_hue(images[index], hues[index].item())
        assert torch.allclose(result[index], expected, atol=TOLERANCE)


def test_adjust_hue_keeps_grey_pixels():
    grey = torch.full((1, 3, 4, 4), 0.3)
    result = adjust_hue(grey, torch.tensor([90.0]))
    assert torch.allclose(result, grey)


@pytest.mark.parametrize("angle", [20.0, 60.0, 160.0, 200.0, 320.0])
def test_tilt_matches_torchvision_perspective(angle: float):
    images = blobs(1)
    start, end = tilt_corners(angle, distance=2.0, size=28)
    expected = TF.perspective(images[0], start, end, interpolation=BILINEAR)
    result = tilt(images, torch.tensor([angle]), distance=2.0)[0]
    assert torch.allclose(result, expected, atol=TOLERANCE)


def test_tilt_zero_is_identity():
    images = blobs(1)
    assert torch.allclose(tilt(images, torch.tensor([0.0])), images, atol=1e-6)


def test_tilt_half_turn_mirrors_horizontally():
    images = blobs(1)
    result = tilt(images, torch.tensor([180.0]))
    assert torch.allclose(result, images.flip(-1), atol=1e-5)


def test_tilt_rejects_camera_inside_image():
    with pytest.raises(ValueError, match="distance"):
        tilt(blobs(1), torch.tensor([10.0]), distance=0.5)


def test_sampling_grid_equals_affine_grid():
    matrices = rotation_matrices(torch.tensor([10.0, 75.0]))[:, :2]
    matrices[:, :, 2] = torch.tensor([0.1, -0.2])
    expected = F.affine_grid(matrices, [2, 1, 12, 20], align_corners=False)
    result = sampling_grid(matrices, 12, 20)
    assert torch.allclose(result, expected, atol=1e-6)


def test_warp_homography_of_affine_equals_warp_affine():
    images = blobs(2)
    matrices = rotation_matrices(torch.tensor([30.0, 250.0]))
    homography = warp_homography(images, matrices)
    affine = warp_affine(images, matrices[:, :2])
    assert torch.allclose(homography, affine, atol=1e-6)


def test_to_red_fills_only_red_channel():
    images = blobs(1)
    red = to_red(images)
    assert red.shape == (1, 3, 28, 28)
    assert torch.equal(red[:, :1], images)
    assert red[:, 1:].abs().sum() == 0
