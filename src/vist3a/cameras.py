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

import json
import math
import os
from pathlib import Path

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


# ----------------------------------------------------------------------------- intrinsics
def intrinsics_from_fov(
    fov_deg: float, width: int, height: int, *, axis: str = "horizontal", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pinhole ``K [3, 3]`` with square pixels and the principal point at the image centre.

    ``fov_deg`` is the full field of view across the image ``axis`` ("horizontal": across ``width``,
    "vertical": across ``height``), measured between the outer pixel *edges*: ``f = (size / 2) / tan(fov / 2)``.
    With integer pixel centres the image centre is ``((width - 1) / 2, (height - 1) / 2)``.
    """
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    sizes = {"horizontal": width, "vertical": height}
    if axis not in sizes:
        raise ValueError(f"axis must be 'horizontal' or 'vertical', got {axis!r}")
    focal = (sizes[axis] / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return torch.tensor(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]], dtype=dtype
    )


def K_from_edge_convention(K: torch.Tensor) -> torch.Tensor:
    """Intrinsics whose pixel centres sit at ``+0.5`` (gsplat, 3DGS, AnySplat/VGGT's ``c = size / 2``) ->
    vist3a's integer-centre convention (principal point moved by ``-0.5`` px). ``K [..., 3, 3]``.

    The reconstruction models decode ``c = (W / 2, H / 2)`` and their Gaussians were trained against a
    renderer of the edge convention, so renders at predicted cameras must shift the principal point to line
    up with the model's own renders.
    """
    out = K.clone()
    out[..., 0, 2] = out[..., 0, 2] - 0.5
    out[..., 1, 2] = out[..., 1, 2] - 0.5
    return out


# ----------------------------------------------------------------------------- trajectories
def look_at_w2c(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """World-to-camera ``[..., 4, 4]`` of OpenCV cameras at ``eye [..., 3]`` looking at ``target [..., 3]``.

    ``up [..., 3]`` is the world direction that should point *up* in the image (the camera's ``-y``);
    it only needs to be non-parallel to the viewing direction.
    """
    eye, target, up = torch.broadcast_tensors(eye, target, up.to(eye))
    forward = target - eye
    fwd_norm = forward.norm(dim=-1, keepdim=True)
    if bool((fwd_norm < 1e-12).any()):
        raise ValueError("look_at_w2c: eye and target must differ")
    z_axis = forward / fwd_norm
    right = torch.linalg.cross(z_axis, up)
    right_norm = right.norm(dim=-1, keepdim=True)
    if bool((right_norm < 1e-9 * up.norm(dim=-1, keepdim=True).clamp_min(1e-30)).any()):
        raise ValueError("look_at_w2c: up must not be parallel to the viewing direction (target - eye)")
    x_axis = right / right_norm
    y_axis = torch.linalg.cross(z_axis, x_axis)  # points down in the image
    rot = torch.stack((x_axis, y_axis, z_axis), -2)  # rows: camera axes in world coordinates
    trans = -(rot @ eye[..., None])
    return to_homogeneous(torch.cat((rot, trans), -1))


def _reference_forward(up: torch.Tensor) -> torch.Tensor:
    """Unit vector orthogonal to ``up``: world +z made orthogonal (or +x if ``up`` is along z)."""
    for axis in (2, 0):
        ref = torch.zeros_like(up)
        ref[axis] = 1.0
        ref = ref - (ref @ up) * up
        if float(ref.norm()) > 1e-6:
            return ref / ref.norm()
    raise AssertionError("unreachable: +z and +x cannot both be parallel to up")


def orbit_trajectory(
    center: torch.Tensor,
    radius: float,
    elevation_deg: float,
    num_frames: int,
    *,
    up: torch.Tensor | None = None,
    start_azimuth_deg: float = 0.0,
    turns: float = 1.0,
) -> torch.Tensor:
    """Turntable cameras circling ``center [3]`` and looking at it -> ``w2c [num_frames, 4, 4]``.

    Cameras sit at distance ``radius`` from ``center``, ``elevation_deg`` above the plane orthogonal to
    ``up`` (default ``(0, -1, 0)``: up is -y, as in OpenCV worlds such as VGGT's and AnySplat's). At azimuth 0 a
    camera looks along world +z (made orthogonal to ``up``), like the first camera of such a world; the
    azimuth grows counter-clockwise about ``up``. ``turns`` full circles are spread over the frames without
    repeating the first pose at the end, so the video loops.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    if not -90.0 < elevation_deg < 90.0:
        raise ValueError(f"elevation_deg must be in (-90, 90), got {elevation_deg}")
    center = torch.as_tensor(center, dtype=torch.float64)
    up_vec = torch.tensor((0.0, -1.0, 0.0), dtype=torch.float64) if up is None else torch.as_tensor(up).double()
    if float(up_vec.norm()) < 1e-12:
        raise ValueError("up must be a non-zero vector")
    up_vec = up_vec / up_vec.norm()
    fwd = _reference_forward(up_vec)
    side = torch.linalg.cross(up_vec, fwd)
    az = torch.deg2rad(start_azimuth_deg + 360.0 * turns * torch.arange(num_frames, dtype=torch.float64) / num_frames)
    el = math.radians(elevation_deg)
    horizontal = -torch.cos(az)[:, None] * fwd - torch.sin(az)[:, None] * side  # -fwd rotated about up
    eye = center + radius * (math.cos(el) * horizontal + math.sin(el) * up_vec)
    return look_at_w2c(eye, center.expand_as(eye), up_vec)


def slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation of unit quaternions ``[..., 4]`` along the shorter arc; ``t [...]``."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    t = t[..., None]
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    close = sin_theta < 1e-6
    safe = torch.where(close, torch.ones_like(sin_theta), sin_theta)
    w0 = torch.where(close, 1.0 - t, torch.sin((1.0 - t) * theta) / safe)
    w1 = torch.where(close, t, torch.sin(t * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / out.norm(dim=-1, keepdim=True)


def interpolate_poses(c2w_keys: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Smooth camera path through key poses ``c2w [K, 3|4, 4]`` -> ``c2w [num_frames, 4, 4]``.

    The frames are spread evenly in key index, first and last frame on the first and last key; positions
    follow a uniform Catmull-Rom spline through the key positions (ends extended linearly), rotations are
    slerped between consecutive keys.
    """
    if c2w_keys.ndim != 3 or tuple(c2w_keys.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"c2w_keys must have shape [K, 4, 4] or [K, 3, 4], got {list(c2w_keys.shape)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    keys = to_homogeneous(c2w_keys)
    num_keys = keys.shape[0]
    if num_keys == 0:
        raise ValueError("c2w_keys must hold at least one pose")
    if num_keys == 1:
        return keys.expand(num_frames, 4, 4).clone()
    pos = keys[:, :3, 3]
    quats = rotmat_to_quat(keys[:, :3, :3])
    for i in range(1, num_keys):  # keep consecutive keys on the same hemisphere
        if float((quats[i] * quats[i - 1]).sum()) < 0:
            quats[i] = -quats[i]
    padded = torch.cat((2 * pos[:1] - pos[1:2], pos, 2 * pos[-1:] - pos[-2:-1]))
    s = torch.linspace(0.0, num_keys - 1.0, num_frames, dtype=keys.dtype, device=keys.device)
    seg = s.floor().long().clamp(max=num_keys - 2)
    t = s - seg
    p0, p1, p2, p3 = padded[seg], padded[seg + 1], padded[seg + 2], padded[seg + 3]
    tt = t[:, None]
    position = 0.5 * (
        2 * p1 + (p2 - p0) * tt + (2 * p0 - 5 * p1 + 4 * p2 - p3) * tt**2 + (3 * p1 - p0 - 3 * p2 + p3) * tt**3
    )
    rot = quat_to_rotmat(slerp(quats[seg], quats[seg + 1], t))
    return to_homogeneous(torch.cat((rot, position[..., None]), -1))


# ----------------------------------------------------------------------------- camera files
CAMERAS_JSON_CONVENTION = (
    "OpenCV camera axes (x right, y down, z forward). w2c maps world points to camera coordinates "
    "(x_cam = R x_world + t); c2w is its inverse. Intrinsics in pixels, pixel centres at integer coordinates."
)


def save_cameras_json(
    path: str | os.PathLike, w2c: torch.Tensor, Ks: torch.Tensor, width: int, height: int
) -> Path:
    """Write cameras to a JSON file (atomically); returns the path.

    ``w2c [T, 3|4, 4]``; ``Ks [T, 3, 3]`` or ``[3, 3]`` for all frames. Schema::

        {"format": "vist3a-cameras", "version": 1, "convention": "...", "width": W, "height": H,
         "frames": [{"index": i, "w2c": 4x4, "c2w": 4x4, "fx": .., "fy": .., "cx": .., "cy": ..,
                     "width": W, "height": H}, ...]}
    """
    from vist3a.io_utils import atomic_path

    if w2c.ndim != 3 or tuple(w2c.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"w2c must have shape [T, 4, 4] or [T, 3, 4], got {list(w2c.shape)}")
    w2c = to_homogeneous(w2c.detach().double().cpu())
    Ks = Ks.detach().double().cpu()
    if Ks.shape == (3, 3):
        Ks = Ks.expand(w2c.shape[0], 3, 3)
    if tuple(Ks.shape) != (w2c.shape[0], 3, 3):
        raise ValueError(f"Ks must have shape [T, 3, 3] (T={w2c.shape[0]}) or [3, 3], got {list(Ks.shape)}")
    c2w = invert_rigid(w2c)
    frames = [
        {
            "index": i,
            "w2c": w2c[i].tolist(),
            "c2w": c2w[i].tolist(),
            "fx": float(Ks[i, 0, 0]),
            "fy": float(Ks[i, 1, 1]),
            "cx": float(Ks[i, 0, 2]),
            "cy": float(Ks[i, 1, 2]),
            "width": int(width),
            "height": int(height),
        }
        for i in range(w2c.shape[0])
    ]
    doc = {
        "format": "vist3a-cameras",
        "version": 1,
        "convention": CAMERAS_JSON_CONVENTION,
        "width": int(width),
        "height": int(height),
        "frames": frames,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1))
    return path


def load_cameras_json(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Read a file written by :func:`save_cameras_json` -> ``(w2c [T, 4, 4], Ks [T, 3, 3], width, height)``.

    float64 tensors; ``w2c`` is taken from each frame's ``w2c`` (or inverted from ``c2w`` if only that is
    present). Bad files raise ``UserInputError`` naming the file and the problem.
    """
    from vist3a.errors import UserInputError

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: file does not exist")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: not a valid JSON file ({exc})") from None
    frames = doc.get("frames") if isinstance(doc, dict) else None
    if not isinstance(frames, list) or not frames:
        raise UserInputError(f"{path}: not a vist3a cameras file (needs a non-empty 'frames' list)")
    w2c, Ks, sizes = [], [], set()
    for i, frame in enumerate(frames):
        try:
            if "w2c" in frame:
                pose = torch.tensor(frame["w2c"], dtype=torch.float64)
            else:
                pose = invert_rigid(torch.tensor(frame["c2w"], dtype=torch.float64))
            K = torch.tensor(
                [[frame["fx"], 0.0, frame["cx"]], [0.0, frame["fy"], frame["cy"]], [0.0, 0.0, 1.0]],
                dtype=torch.float64,
            )
            sizes.add((int(frame.get("width", doc.get("width"))), int(frame.get("height", doc.get("height")))))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"{path}: frame {i} is malformed ({type(exc).__name__}: {exc})") from None
        if tuple(pose.shape) not in ((3, 4), (4, 4)) or not bool(torch.isfinite(pose).all()):
            raise UserInputError(f"{path}: frame {i} pose must be a finite 4x4 or 3x4 matrix")
        w2c.append(to_homogeneous(pose))
        Ks.append(K)
    if len(sizes) != 1:
        raise UserInputError(f"{path}: frames have different image sizes {sorted(sizes)}")
    width, height = sizes.pop()
    return torch.stack(w2c), torch.stack(Ks), width, height
