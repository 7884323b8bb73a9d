"""Transformation sequences: factor values per frame and frames against torchvision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from tvae_lightning.data.sequences import (
    PAPER_SCALES,
    TILT_DISTANCE,
    TRANSFORMATIONS,
    TransformationSequences,
    parse_motion,
)

BILINEAR = InterpolationMode.BILINEAR
TOLERANCE = 1e-4


def digits(count: int) -> torch.Tensor:
    """Return smooth off-centre blobs ``(count, 1, 28, 28)`` in [0, 1]."""
    generator = torch.Generator().manual_seed(3)
    noise = torch.rand(count, 1, 7, 7, generator=generator)
    return F.interpolate(noise, size=(28, 28), mode="bilinear")


def draw(sequences: TransformationSequences, count: int, split: str = "train"):
    generator = torch.Generator().manual_seed(5)
    motions, starts = sequences.sample(count, generator, split)
    return motions, starts, sequences.factors(motions, starts)


def reference_frame(image: torch.Tensor, values: dict[str, float]) -> torch.Tensor:
    """Transform one digit ``(1, H, W)`` with torchvision's functional ops.

    Rotation and scale go through ``affine`` (which turns clockwise for positive
    angles, hence the sign), the tilt through ``perspective`` with the projected
    corners of the turned plane, the hue through ``adjust_hue`` of the red digit.
    """
    result = image
    if "rotation" in values or "scale" in values:
        result = TF.affine(
            result, angle=-values.get("rotation", 0.0), translate=[0, 0],
            scale=values.get("scale", 1.0), shear=[0.0, 0.0], interpolation=BILINEAR,
        )
    if "perspective" in values:
        start, end = projected_corners(values["perspective"], image.shape[-1])
        result = TF.perspective(result, start, end, interpolation=BILINEAR)

    zeros = torch.zeros_like(result)
    result = torch.cat([result, zeros, zeros])
    if "colour" in values:
        factor = ((values["colour"] + 180.0) % 360.0 - 180.0) / 360.0
        result = TF.adjust_hue(result, factor)
    return result


def projected_corners(degrees: float, size: int) -> tuple[list, list]:
    radians = math.radians(degrees)
    start, end = [], []
    for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        depth = TILT_DISTANCE + x * math.sin(radians)
        u = TILT_DISTANCE * x * math.cos(radians) / depth
        v = TILT_DISTANCE * y / depth
        start.append([(x + 1) * size / 2, (y + 1) * size / 2])
        end.append([(u + 1) * size / 2, (v + 1) * size / 2])
    return start, end


@pytest.mark.parametrize("name", sorted(TRANSFORMATIONS))
def test_frames_match_torchvision_per_frame(name: str):
    sequences = TransformationSequences(name, seq_len=18)
    images = digits(3)
    _, _, factors = draw(sequences, 3)
    frames = sequences.render(images, factors)

    assert frames.shape == (3, 18, 3, 28, 28)
    for sequence in range(3):
        for frame in range(18):
            row = factors[sequence, frame].tolist()
            values = dict(zip(sequences.factor_names, row))
            expected = reference_frame(images[sequence], values)
            difference = (frames[sequence, frame] - expected).abs().max().item()
            assert difference < TOLERANCE, (sequence, frame, values, difference)


@pytest.mark.parametrize(
    ("name", "factor", "step"),
    [("rotation", "rotation", 20.0), ("colour", "colour", 20.0)],
)
def test_angles_advance_twenty_degrees_per_frame(name: str, factor: str, step: float):
    sequences = TransformationSequences(name, seq_len=18)
    _, _, factors = draw(sequences, 6)
    column = factors[..., sequences.factor_names.index(factor)]
    steps = torch.remainder(column[:, 1:] - column[:, :-1], 360.0)
    assert torch.allclose(steps, torch.full_like(steps, step))


def test_angle_sequences_cover_all_eighteen_values():
    sequences = TransformationSequences("rotation", seq_len=18)
    _, _, factors = draw(sequences, 4)
    for row in factors[..., 0]:
        assert sorted(row.tolist()) == [float(angle) for angle in range(0, 360, 20)]


def test_scale_walks_paper_values_and_wraps():
    sequences = TransformationSequences("scale", seq_len=18)
    starts = torch.tensor([[15]])
    factors = sequences.factors(torch.tensor([0]), starts)[0, :, 0]
    expected = torch.tensor(PAPER_SCALES[15:] + PAPER_SCALES[:15])
    assert torch.allclose(factors, expected)
    assert factors[2].item() == pytest.approx(1.26)
    assert factors[3].item() == pytest.approx(0.60)


def test_combined_varies_exactly_one_factor():
    sequences = TransformationSequences("combined", seq_len=18)
    motions, _, factors = draw(sequences, 64)
    varied = sequences.varied(motions)
    changing = (factors[:, 1:] != factors[:, :1]).any(dim=1)

    assert sequences.factor_names == ("rotation", "colour", "scale")
    assert torch.equal(changing.sum(dim=1), torch.ones(64, dtype=torch.long))
    assert torch.equal(changing.long().argmax(dim=1), varied)
    assert set(varied.tolist()) == {0, 1, 2}


def test_combined_fixed_factors_take_random_values():
    sequences = TransformationSequences("combined", seq_len=18)
    motions, _, factors = draw(sequences, 256)
    varied = sequences.varied(motions)
    for column in range(3):
        fixed = factors[varied != column, 0, column]
        assert len(set(fixed.tolist())) > 9, sequences.factor_names[column]


def test_rotation_colour_advances_both_factors():
    sequences = TransformationSequences("rotation_colour", seq_len=18)
    motions, _, factors = draw(sequences, 8)
    steps = torch.remainder(factors[:, 1:] - factors[:, :-1], 360.0)
    assert torch.allclose(steps, torch.full_like(steps, 20.0))
    assert torch.equal(sequences.varied(motions), torch.zeros(8, dtype=torch.long))


def test_single_factor_varied_is_constant():
    sequences = TransformationSequences("perspective", seq_len=18)
    motions, _, _ = draw(sequences, 8)
    assert torch.equal(sequences.varied(motions), torch.zeros(8, dtype=torch.long))


def test_values_and_start_indices_configurable():
    sequences = TransformationSequences(
        "rotation", seq_len=5, values={"rotation": [0.0, 90.0, 180.0, 270.0]},
        start_indices=[1],
    )
    _, _, factors = draw(sequences, 3)
    expected = torch.tensor([90.0, 180.0, 270.0, 0.0, 90.0])
    for row in factors[..., 0]:
        assert torch.equal(row, expected)


def test_held_out_motion_only_in_test_split():
    sequences = TransformationSequences("combined", held_out="rotation_colour")
    train_motions, _, _ = draw(sequences, 128, "train")
    val_motions, _, _ = draw(sequences, 128, "val")
    test_motions, _, test_factors = draw(sequences, 16, "test")
    held_out = sequences.num_motions - 1

    assert held_out not in train_motions.tolist()
    assert held_out not in val_motions.tolist()
    assert set(test_motions.tolist()) == {held_out}
    steps = torch.remainder(test_factors[:, 1:] - test_factors[:, :-1], 360.0)
    rotation_steps, colour_steps = steps[..., 0], steps[..., 1]
    assert torch.allclose(rotation_steps, torch.full_like(rotation_steps, 20.0))
    assert torch.allclose(colour_steps, torch.full_like(colour_steps, 20.0))


def test_held_out_member_motion_removed_from_training():
    sequences = TransformationSequences("combined", held_out="scale")
    train_motions, _, _ = draw(sequences, 128, "train")
    test_motions, _, _ = draw(sequences, 16, "test")
    assert set(train_motions.tolist()) == {0, 1}
    assert set(test_motions.tolist()) == {2}


def test_held_out_only_motion_rejected():
    with pytest.raises(ValueError, match="held_out"):
        TransformationSequences("rotation", held_out="rotation")


def test_parse_motion_orders_factors():
    assert parse_motion("colour_rotation") == ("rotation", "colour")


@pytest.mark.parametrize("name", ["", "spin", "rotation_rotation", "rotation-colour"])
def test_parse_motion_rejects_invalid_names(name: str):
    with pytest.raises(ValueError, match="motion"):
        parse_motion(name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"transformation": "shear"}, "transformation"),
        ({"seq_len": 0}, "seq_len"),
        ({"values": {"hue": [0.0]}}, "values"),
        ({"values": {"rotation": []}}, "values"),
        ({"transformation": "scale", "values": {"scale": [0.0, 1.0]}}, "scale"),
        ({"start_indices": [18]}, "start_indices"),
        ({"start_indices": []}, "start_indices"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        TransformationSequences(**kwargs)
