"""Camera conventions, pose encodings and trajectories.

Conventions used everywhere in vist3a:

- OpenCV camera frame: x right, y down, z forward (looking along +z).
- ``w2c`` (world-to-camera, "camera-from-world", the *extrinsic*): ``x_cam = R @ x_world + t``, as
  ``[..., 3, 4]`` or ``[..., 4, 4]``. ``c2w`` is its inverse. Function and field names always say which.
- ``K`` ``[..., 3, 3]``: pixel intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``; pixel centres are at
  integer coordinates (u = column index, v = row index).
- Quaternions in :mod:`vist3a.splats` are (w, x, y, z); VGGT's pose encoding stores (x, y, z, w) — the
  helpers below take an explicit ``scalar_first`` flag where it matters.
"""

from __future__ import annotations

import torch


# ----------------------------------------------------------------------------- quaternions
def quat_to_rotmat(quat: torch.Tensor, scalar_first: bool = True) -> torch.Tensor:
    """Quaternion ``[..., 4]`` -> rotation matrix ``[..., 3, 3]``.

    The quaternion need not be unit norm: the formula divides by ``|q|^2`` (as VGGT's decoder does).
    """
    if scalar_first:
        w, x, y, z = quat.unbind(-1)
    else:
        x, y, z, w = quat.unbind(-1)
    two_s = 2.0 / (quat * quat).sum(-1)
    mat = torch.stack(
        (
            1 - two_s * (y * y + z * z),
            two_s * (x * y - z * w),
            two_s * (x * z + y * w),
            two_s * (x * y + z * w),
            1 - two_s * (x * x + z * z),
            two_s * (y * z - x * w),
            two_s * (x * z - y * w),
            two_s * (y * z + x * w),
            1 - two_s * (x * x + y * y),
        ),
        -1,
    )
    return mat.reshape(quat.shape[:-1] + (3, 3))


def rotmat_to_quat(mat: torch.Tensor, scalar_first: bool = True) -> torch.Tensor:
    """Rotation matrix ``[..., 3, 3]`` -> unit quaternion ``[..., 4]`` with non-negative real part.

    Uses the numerically best of the four candidate formulas per matrix (largest denominator).
    """
    m = mat.reshape(-1, 3, 3)
    m00, m01, m02 = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    m10, m11, m12 = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    m20, m21, m22 = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    # 4 * component^2 for w, x, y, z
    sq = torch.stack(
        (1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1
    ).clamp_min(0)
    r = torch.sqrt(sq)  # 2 * |component|
    # each row: the quaternion (w, x, y, z) scaled by 2 * the chosen component
    cand = torch.stack(
        (
            torch.stack((sq[:, 0], m21 - m12, m02 - m20, m10 - m01), -1),
            torch.stack((m21 - m12, sq[:, 1], m10 + m01, m02 + m20), -1),
            torch.stack((m02 - m20, m10 + m01, sq[:, 2], m12 + m21), -1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, sq[:, 3]), -1),
        ),
        1,
    )
    cand = cand / (2.0 * r[..., None].clamp_min(1e-12))
    best = r.argmax(-1)
    q = cand[torch.arange(m.shape[0], device=m.device), best]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    if not scalar_first:
        q = q[:, [1, 2, 3, 0]]
    return q.reshape(mat.shape[:-2] + (4,))


# ----------------------------------------------------------------------------- matrices
def to_homogeneous(mat34: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 4]`` -> ``[..., 4, 4]`` with last row ``[0, 0, 0, 1]``."""
    bottom = torch.zeros(mat34.shape[:-2] + (1, 4), dtype=mat34.dtype, device=mat34.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat((mat34[..., :3, :4], bottom), -2)


def invert_rigid(mat: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of a rigid transform ``[..., 3|4, 4]`` (returns the same row count)."""
    rot = mat[..., :3, :3]
    trans = mat[..., :3, 3:]
    rot_t = rot.transpose(-1, -2)
    out = torch.cat((rot_t, -rot_t @ trans), -1)
    return to_homogeneous(out) if mat.shape[-2] == 4 else out


# ----------------------------------------------------------------------------- VGGT pose encoding
def pose_encoding_to_w2c_K(
    pose_enc: torch.Tensor, image_hw: tuple[int, int], fov_eps: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """VGGT 9-d pose encoding -> (``w2c [..., 3, 4]``, pixel ``K [..., 3, 3]``).

    ``pose_enc = [t_x, t_y, t_z, q_x, q_y, q_z, q_w, fov_h, fov_w]`` for the world-to-camera extrinsic
    (quaternion scalar-last, need not be unit norm; FoVs in radians). ``f = (size / 2) / (tan(fov / 2) +
    fov_eps)``: VGGT's own decoder uses ``fov_eps = 0``, AnySplat's uses ``1e-3``. The principal point is
    exactly the image centre ``(W / 2, H / 2)``.
    """
    height, width = image_hw
    trans = pose_enc[..., :3]
    rot = quat_to_rotmat(pose_enc[..., 3:7], scalar_first=False)
    fov_h, fov_w = pose_enc[..., 7], pose_enc[..., 8]
    fy = (height / 2.0) / (torch.tan(fov_h / 2.0) + fov_eps)
    fx = (width / 2.0) / (torch.tan(fov_w / 2.0) + fov_eps)
    w2c = torch.cat((rot, trans[..., None]), -1)
    K = torch.zeros(pose_enc.shape[:-1] + (3, 3), dtype=pose_enc.dtype, device=pose_enc.device)
    K[..., 0, 0] = fx
    K[..., 1, 1] = fy
    K[..., 0, 2] = width / 2.0
    K[..., 1, 2] = height / 2.0
    K[..., 2, 2] = 1.0
    return w2c, K


def w2c_K_to_pose_encoding(w2c: torch.Tensor, K: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`pose_encoding_to_w2c_K` (with ``fov_eps = 0``): ``[..., 9]``."""
    height, width = image_hw
    quat_xyzw = rotmat_to_quat(w2c[..., :3, :3], scalar_first=False)
    fov_h = 2.0 * torch.atan((height / 2.0) / K[..., 1, 1])
    fov_w = 2.0 * torch.atan((width / 2.0) / K[..., 0, 0])
    return torch.cat((w2c[..., :3, 3], quat_xyzw, fov_h[..., None], fov_w[..., None]), -1)
