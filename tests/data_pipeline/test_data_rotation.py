from __future__ import annotations

import math

import pytest
import torch

from groot.data import rotation as R


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return R.quaternion_to_matrix(q)


def test_random_matrices_are_rotations():
    m = random_rotations(64)
    eye = torch.eye(3, dtype=m.dtype).expand_as(m)
    torch.testing.assert_close(m @ m.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(64, dtype=m.dtype))


@pytest.mark.parametrize("rotation_type", sorted(R.ROTATION_DIMS))
def test_matrix_round_trip(rotation_type):
    m = random_rotations(128, seed=1)
    x = R.from_matrix(m, rotation_type)
    assert x.shape == (128, R.rotation_dim(rotation_type))
    torch.testing.assert_close(R.to_matrix(x, rotation_type), m)


def test_quaternion_round_trip_standardized():
    q = torch.nn.functional.normalize(torch.randn(100, 4, dtype=torch.float64), dim=-1)
    q = torch.where(q[:, :1] < 0, -q, q)
    torch.testing.assert_close(R.matrix_to_quaternion(R.quaternion_to_matrix(q)), q)


def test_axis_angle_round_trip_including_zero_angle():
    axis = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    angle = torch.rand(50, 1, dtype=torch.float64) * (math.pi - 0.01)
    v = torch.cat([axis * angle, torch.zeros(1, 3, dtype=torch.float64)])
    torch.testing.assert_close(R.matrix_to_axis_angle(R.axis_angle_to_matrix(v)), v)


def test_known_values():
    quarter_turn_z = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(R.axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2])), quarter_turn_z)
    half = math.sqrt(0.5)
    torch.testing.assert_close(R.matrix_to_quaternion(quarter_turn_z), torch.tensor([half, 0, 0, half]))
    torch.testing.assert_close(R.matrix_to_rotation_6d(quarter_turn_z), torch.tensor([0.0, -1, 0, 1, 0, 0]))


@pytest.mark.parametrize("rotation_type", R.EULER_TYPES)
def test_euler_composition_order(rotation_type):
    angles = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64)
    axes = [{"r": 0, "p": 1, "y": 2}[c] for c in rotation_type.removeprefix("euler_angles_")]
    expected = torch.eye(3, dtype=torch.float64)
    for axis, angle in zip(axes, angles, strict=True):
        rotvec = torch.zeros(3, dtype=torch.float64)
        rotvec[axis] = angle
        expected = expected @ R.axis_angle_to_matrix(rotvec)
    torch.testing.assert_close(R.euler_to_matrix(angles, rotation_type), expected)
    torch.testing.assert_close(R.matrix_to_euler(expected, rotation_type), angles)


def test_rotation_6d_accepts_unnormalized_rows():
    m = random_rotations(10, seed=3)
    six = R.matrix_to_rotation_6d(m) * 3.0
    six[:, 3:] += 0.5 * six[:, :3]  # not orthogonal any more: Gram-Schmidt restores the rotation
    torch.testing.assert_close(R.rotation_6d_to_matrix(six), m)


def test_batched_leading_dims_and_conversion():
    m = random_rotations(24, seed=4).reshape(2, 3, 4, 3, 3)
    aa = R.from_matrix(m, "axis_angle")
    six = R.convert_rotation(aa, "axis_angle", "rotation_6d")
    assert six.shape == (2, 3, 4, 6)
    torch.testing.assert_close(R.convert_rotation(six, "rotation_6d", "axis_angle"), aa)


def test_unknown_rotation_type_names_the_valid_ones():
    with pytest.raises(ValueError, match="quaternion"):
        R.rotation_dim("euler")
