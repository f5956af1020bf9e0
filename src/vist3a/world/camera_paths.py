"""Camera paths like a video generator's: orbits, arcs, dollies, pans and aerial shots around the scene.

All paths look at (a jittered point of) the scene centre with world ``y`` up, start within
``±start_azimuth_jitter`` of the canonical front view (viewer on ``+z``, see :mod:`vist3a.world.vocab`)
so that a caption's "left of"/"behind" is true in the first frame, and stay above the ground. Output
cameras follow :mod:`vist3a.cameras`: OpenCV frames, world-to-camera ``w2c [T, 4, 4]``, pixel ``K [T, 3, 3]``
with pixel centres at integer coordinates (so the principal point is ``((W - 1) / 2, (H - 1) / 2)``).
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor

from vist3a.cameras import look_at_w2c
from vist3a.world.vocab import make_rng

CAMERA_PATH_KINDS: tuple[str, ...] = (
    "orbit", "partial_orbit", "arc", "dolly_in", "dolly_out", "pan", "aerial_descend", "aerial_rise",
)


def _spherical(target: Tensor, radius: Tensor, azimuth: Tensor, elevation: Tensor) -> Tensor:
    """Points at ``radius`` from ``target``; azimuth 0 = canonical front (+z), positive towards +x."""
    return target + torch.stack(
        (
            radius * torch.cos(elevation) * torch.sin(azimuth),
            radius * torch.sin(elevation),
            radius * torch.cos(elevation) * torch.cos(azimuth),
        ),
        dim=-1,
    )


def intrinsics(fov_x_deg: float, height: int, width: int, num_frames: int) -> Tensor:
    """Pixel ``K [T, 3, 3]`` for a horizontal field of view, square pixels, principal point at the centre."""
    if not 0.0 < fov_x_deg < 180.0:
        raise ValueError(f"`fov_x_deg` must be in (0, 180), got {fov_x_deg}")
    focal = (width / 2.0) / math.tan(math.radians(fov_x_deg) / 2.0)
    K = torch.tensor(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    return K.repeat(num_frames, 1, 1)


def sample_camera_path(
    kind: str,
    num_frames: int,
    rng: int | str | random.Random | None = None,
    *,
    height: int = 64,
    width: int = 64,
    target: tuple[float, float, float] = (0.0, 0.5, 0.0),
    scene_radius: float = 1.5,
    fov_range: tuple[float, float] = (40.0, 60.0),
    start_azimuth_jitter: float = 25.0,
    target_jitter: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """A random camera path of ``kind`` (one of :data:`CAMERA_PATH_KINDS`) over ``num_frames`` frames.

    Args:
        kind: "orbit" (full 360°), "partial_orbit" (90-240°), "arc" (30-90° with a small change of height),
            "dolly_in"/"dolly_out" (along the view direction), "pan" (fixed position, the view turns by up to
            a third of the field of view), "aerial_descend"/"aerial_rise" (circling while the elevation goes
            from 50-70° to 15-25° or back).
        rng: seed or ``random.Random``; the path is a pure function of it.
        height, width: image size the intrinsics are for (pixels).
        target: scene centre (world); each path looks at a point within ``target_jitter * scene_radius``.
        scene_radius: radius of a sphere around ``target`` holding the scene; the distance is chosen so it
            roughly fills the field of view (0.85-1.25x the distance at which it just fits), never inside it.
        fov_range: horizontal field of view range in degrees; one value per path.
        start_azimuth_jitter: the first frame is within this many degrees of the canonical front view.

    Returns:
        ``(w2c [T, 4, 4], K [T, 3, 3])``, float64, OpenCV world-to-camera and pixel intrinsics.
    """
    if kind not in CAMERA_PATH_KINDS:
        raise ValueError(f"`kind` must be one of {CAMERA_PATH_KINDS}, got {kind!r}")
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be >= 1, got {num_frames}")
    if scene_radius <= 0:
        raise ValueError(f"`scene_radius` must be > 0, got {scene_radius}")
    if not 0.0 < fov_range[0] <= fov_range[1] < 180.0:
        raise ValueError(f"`fov_range` must satisfy 0 < low <= high < 180 degrees, got {fov_range}")
    rng = make_rng(rng)
    fov = rng.uniform(*fov_range)
    half_fov_x = math.radians(fov) / 2.0
    half_fov = min(half_fov_x, math.atan(math.tan(half_fov_x) * height / width))  # the narrower one
    fit = scene_radius / math.sin(half_fov)
    radius0 = fit * rng.uniform(0.85, 1.25)
    centre = torch.tensor(target, dtype=torch.float64)
    jitter = torch.tensor([rng.uniform(-1, 1) for _ in range(3)], dtype=torch.float64)
    look = centre + target_jitter * scene_radius * jitter / max(1.0, float(jitter.norm()))
    az0 = math.radians(rng.uniform(-start_azimuth_jitter, start_azimuth_jitter))
    el0 = math.radians(rng.uniform(12.0, 35.0))
    direction = rng.choice((-1.0, 1.0))
    T = num_frames
    s = torch.linspace(0.0, 1.0, T, dtype=torch.float64)  # path parameter
    radius = torch.full((T,), radius0, dtype=torch.float64)
    azimuth = torch.full((T,), az0, dtype=torch.float64)
    elevation = torch.full((T,), el0, dtype=torch.float64)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    if kind == "orbit":
        azimuth = az0 + direction * 2.0 * math.pi * torch.arange(T, dtype=torch.float64) / T
    elif kind == "partial_orbit":
        azimuth = az0 + direction * math.radians(rng.uniform(90.0, 240.0)) * s
    elif kind == "arc":
        azimuth = az0 + direction * math.radians(rng.uniform(30.0, 90.0)) * s
        elevation = el0 + math.radians(rng.uniform(-10.0, 10.0)) * s
    elif kind in ("dolly_in", "dolly_out"):
        far, near = radius0 * rng.uniform(1.1, 1.3), fit * rng.uniform(0.85, 1.0)
        near = max(near, scene_radius * 1.3)
        start, end = (far, near) if kind == "dolly_in" else (near, far)
        radius = start + (end - start) * s
    elif kind in ("aerial_descend", "aerial_rise"):
        high, low = math.radians(rng.uniform(50.0, 70.0)), math.radians(rng.uniform(15.0, 25.0))
        start, end = (high, low) if kind == "aerial_descend" else (low, high)
        elevation = start + (end - start) * s
        azimuth = az0 + direction * math.radians(rng.uniform(45.0, 120.0)) * s
        radius = radius0 * (1.0 + (0.1 if kind == "aerial_descend" else -0.1) * (0.5 - s))
    eye = _spherical(look, radius, azimuth, elevation)
    if kind == "pan":
        # fixed eye, the view turns about the vertical axis through the eye by up to ±fov/6
        sweep = math.radians(fov) / 3.0 * rng.uniform(0.5, 1.0)
        angles = direction * sweep * (s - 0.5)
        fwd = look - eye[0]
        cos, sin = torch.cos(angles), torch.sin(angles)
        turned = torch.stack((cos * fwd[0] + sin * fwd[2], fwd[1].expand(T), -sin * fwd[0] + cos * fwd[2]), dim=-1)
        w2c = look_at_w2c(eye, eye + turned, up)
    else:
        w2c = look_at_w2c(eye, look.expand(T, 3), up)
    return w2c, intrinsics(fov, height, width, T)
