"""Batched rotation conversions in torch, written from the math (spec 7.3 "target_rotations").

Every representation converts to and from a rotation matrix `[..., 3, 3]`:
- `quaternion`: (w, x, y, z), returned with w >= 0;
- `axis_angle`: unit axis times angle, angle in [0, pi];
- `rotation_6d`: the first two rows of the matrix, `matrix[..., :2, :].reshape(6)`;
- `matrix`: the 9 entries row by row;
- `euler_angles_<abc>`: letters r/p/y name rotations about X/Y/Z; angles (a0, a1, a2) give
  `R = R_a(a0) @ R_b(a1) @ R_c(a2)` (so `euler_angles_rpy` is R_x(r) R_y(p) R_z(y)).
"""

from __future__ import annotations

import torch

_AXIS_OF_LETTER = {"r": 0, "p": 1, "y": 2}
EULER_TYPES = tuple(f"euler_angles_{order}" for order in ("rpy", "ryp", "pry", "pyr", "yrp", "ypr"))
ROTATION_DIMS = {"axis_angle": 3, "quaternion": 4, "rotation_6d": 6, "matrix": 9,
                 **{name: 3 for name in EULER_TYPES}}


def rotation_dim(rotation_type: str) -> int:
    """Number of values one rotation takes in `rotation_type`."""
    if rotation_type not in ROTATION_DIMS:
        raise ValueError(f"unknown rotation type {rotation_type!r}; expected one of {sorted(ROTATION_DIMS)}")
    return ROTATION_DIMS[rotation_type]


# ---- quaternion ---------------------------------------------------------------------------------
def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """[..., 4] (w, x, y, z), any norm -> [..., 3, 3]"""
    w, x, y, z = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - w * z), s * (x * z + w * y),
        s * (x * y + w * z), 1 - s * (x * x + z * z), s * (y * z - w * x),
        s * (x * z - w * y), s * (y * z + w * x), 1 - s * (x * x + y * y),
    )
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [..., 4] (w, x, y, z) with w >= 0.

    Four candidate quaternions, each divided by one of 4|w|, 4|x|, 4|y|, 4|z|; the candidate with the
    largest divisor is numerically the best and is picked."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.reshape(*m.shape[:-2], 9).unbind(-1)
    twice_abs = torch.sqrt(torch.clamp(torch.stack([
        1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1), min=0))
    a, b, c, d = twice_abs.unbind(-1)
    candidates = torch.stack([  # [..., 4 candidates, 4 components], each still times 4|component|
        torch.stack([a * a, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, b * b, m10 + m01, m02 + m20], -1),
        torch.stack([m02 - m20, m10 + m01, c * c, m21 + m12], -1),
        torch.stack([m10 - m01, m02 + m20, m21 + m12, d * d], -1),
    ], -2)
    candidates = candidates / (2.0 * twice_abs.clamp(min=0.1)).unsqueeze(-1)
    best = twice_abs.argmax(-1)[..., None, None].expand(*m.shape[:-2], 1, 4)
    q = candidates.gather(-2, best).squeeze(-2)
    return torch.where(q[..., :1] < 0, -q, q)


# ---- axis-angle ---------------------------------------------------------------------------------
def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> [..., 3, 3] through the unit quaternion (cos(t/2), sin(t/2)/t * v)."""
    angle = v.norm(dim=-1, keepdim=True)
    half = angle / 2
    small = angle < 1e-6
    safe_angle = angle.where(~small, 1)
    sin_half_over_angle = torch.where(small, 0.5 - angle * angle / 48, torch.sin(half) / safe_angle)
    return quaternion_to_matrix(torch.cat([torch.cos(half), v * sin_half_over_angle], -1))


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [..., 3] with angle in [0, pi]."""
    q = matrix_to_quaternion(m)
    sin_half = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[..., :1])
    small = sin_half < 1e-6
    angle_over_sin_half = torch.where(small, 2 + angle * angle / 12, angle / sin_half.where(~small, 1))
    return q[..., 1:] * angle_over_sin_half


# ---- 6D -----------------------------------------------------------------------------------------
def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """[..., 6] (two rows, any scale) -> [..., 3, 3] by Gram-Schmidt; the third row is their cross product."""
    row0 = torch.nn.functional.normalize(x[..., :3], dim=-1)
    second = x[..., 3:]
    row1 = torch.nn.functional.normalize(second - (row0 * second).sum(-1, keepdim=True) * row0, dim=-1)
    return torch.stack([row0, row1, torch.linalg.cross(row0, row1)], -2)


def matrix_to_rotation_6d(m: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [..., 6]"""
    return m[..., :2, :].reshape(*m.shape[:-2], 6)


# ---- Euler angles -------------------------------------------------------------------------------
def _euler_axes(rotation_type: str) -> tuple[int, int, int]:
    if rotation_type not in EULER_TYPES:
        raise ValueError(f"unknown Euler convention {rotation_type!r}; expected one of {EULER_TYPES}")
    order = rotation_type.removeprefix("euler_angles_")
    return tuple(_AXIS_OF_LETTER[letter] for letter in order)  # type: ignore[return-value]


def _elemental(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """Rotation by `angle` [...] about coordinate axis `axis` -> [..., 3, 3]"""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {
        0: (one, zero, zero, zero, c, -s, zero, s, c),
        1: (c, zero, s, zero, one, zero, -s, zero, c),
        2: (c, -s, zero, s, c, zero, zero, zero, one),
    }[axis]
    return torch.stack(rows, -1).reshape(*angle.shape, 3, 3)


def euler_to_matrix(angles: torch.Tensor, rotation_type: str) -> torch.Tensor:
    """[..., 3] -> [..., 3, 3]: R = R_i(a0) @ R_j(a1) @ R_k(a2) for the axes (i, j, k) of the convention."""
    i, j, k = _euler_axes(rotation_type)
    a0, a1, a2 = angles.unbind(-1)
    return _elemental(i, a0) @ _elemental(j, a1) @ _elemental(k, a2)


def matrix_to_euler(m: torch.Tensor, rotation_type: str) -> torch.Tensor:
    """[..., 3, 3] -> [..., 3], middle angle in [-pi/2, pi/2].

    With s = +1 for cyclic axis orders (XYZ, YZX, ZXY) and -1 otherwise: R[i, k] = s sin(a1),
    (R[j, k], R[k, k]) = cos(a1) (-s sin(a0), cos(a0)), (R[i, j], R[i, i]) = cos(a1) (-s sin(a2), cos(a2))."""
    i, j, k = _euler_axes(rotation_type)
    s = 1.0 if (j - i) % 3 == 1 else -1.0
    a1 = torch.asin((s * m[..., i, k]).clamp(-1.0, 1.0))
    a0 = torch.atan2(-s * m[..., j, k], m[..., k, k])
    a2 = torch.atan2(-s * m[..., i, j], m[..., i, i])
    return torch.stack([a0, a1, a2], -1)


# ---- dispatch -----------------------------------------------------------------------------------
def to_matrix(x: torch.Tensor, rotation_type: str) -> torch.Tensor:
    """[..., rotation_dim(rotation_type)] -> [..., 3, 3]"""
    if rotation_type == "quaternion":
        return quaternion_to_matrix(x)
    if rotation_type == "axis_angle":
        return axis_angle_to_matrix(x)
    if rotation_type == "rotation_6d":
        return rotation_6d_to_matrix(x)
    if rotation_type == "matrix":
        return x.reshape(*x.shape[:-1], 3, 3)
    return euler_to_matrix(x, rotation_type)


def from_matrix(m: torch.Tensor, rotation_type: str) -> torch.Tensor:
    """[..., 3, 3] -> [..., rotation_dim(rotation_type)]"""
    if rotation_type == "quaternion":
        return matrix_to_quaternion(m)
    if rotation_type == "axis_angle":
        return matrix_to_axis_angle(m)
    if rotation_type == "rotation_6d":
        return matrix_to_rotation_6d(m)
    if rotation_type == "matrix":
        return m.reshape(*m.shape[:-2], 9)
    return matrix_to_euler(m, rotation_type)


def convert_rotation(x: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """[..., rotation_dim(source)] -> [..., rotation_dim(target)]"""
    for rotation_type in (source, target):
        rotation_dim(rotation_type)  # raises on an unknown name
    if source == target:
        return x
    return from_matrix(to_matrix(x, source), target)
