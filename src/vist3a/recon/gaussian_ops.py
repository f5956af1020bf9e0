"""AnySplat's tensor operations between the network heads and the Gaussians (pure functions).

- :func:`unproject_depth`: per-pixel depth + decoded cameras -> world points (``pts_all``),
- :func:`flatten_pixels`: one scene's per-pixel tensors -> rows in (view, row, column) order,
- :func:`voxel_fuse`: confidence-weighted fusion of the per-pixel points/features into voxels,
- :func:`anysplat_gaussians_from_raw`: raw Gaussian-head channels -> activated Gaussians (official layout),
- :func:`official_to_gaussians`: official layout -> :class:`vist3a.splats.Gaussians`,
- :func:`scene_scale`, :func:`voxelize_ratio`: the two diagnostics AnySplat reports.

Conventions are those of the official AnySplat code (``src/model/encoder/anysplat.py``,
``common/gaussian_adapter.py``): OpenCV cameras with world-to-camera extrinsics, pixel centres at integer
coordinates, quaternions **(x, y, z, w)** in the official dictionaries (vist3a's :class:`Gaussians` uses
``(w, x, y, z)``). Everything is differentiable except the (integer) voxel assignment.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vist3a.cameras import invert_rigid, quat_to_rotmat
from vist3a.splats.gaussians import Gaussians

GAUSSIAN_KEYS = ("means", "covariances", "harmonics", "opacities", "scales", "rotations")
"""Keys of the official Gaussians dictionary (``gaussians.<key>`` in the oracles)."""

SCALE_FACTOR = 0.001
"""AnySplat's scale activation: ``SCALE_FACTOR · softplus(x)`` clamped at :data:`MAX_SCALE`."""
MAX_SCALE = 0.3
QUAT_EPS = 1e-8
"""Added to the quaternion norm before dividing (official adapter)."""
FUSION_EPS = 1e-6
"""Added to the per-voxel sum of confidence weights (official voxel fusion)."""


def raw_gaussian_dim(sh_degree: int) -> int:
    """Channels of the raw Gaussian head output: density 1 + scales 3 + rotation 4 + ``3·(sh_degree+1)²`` SH."""
    if sh_degree < 0:
        raise ValueError(f"sh_degree must be >= 0, got {sh_degree}")
    return 1 + 3 + 4 + 3 * (sh_degree + 1) ** 2


def sh_mask(sh_degree: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
    """Per-coefficient SH damping ``[(sh_degree+1)²]``: 1 for degree 0, ``0.1·0.25^l`` for degree ``l``."""
    mask = torch.ones((sh_degree + 1) ** 2, dtype=dtype, device=device)
    for degree in range(1, sh_degree + 1):
        mask[degree**2 : (degree + 1) ** 2] = 0.1 * 0.25**degree
    return mask


# ---------------------------------------------------------------------------- geometry
def unproject_depth(depth: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Per-pixel depth -> world points.

    Args:
        depth: ``[..., H, W]`` z-depth along the camera's +z axis (squeeze a trailing 1 first).
        w2c: ``[..., 3|4, 4]`` world-to-camera extrinsics (OpenCV).
        K: ``[..., 3, 3]`` pixel intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.

    Returns:
        ``[..., H, W, 3]`` world points ``c2w · (depth · K⁻¹ [u, v, 1])`` with ``u`` the column index
        ``0…W−1`` and ``v`` the row index ``0…H−1`` (no +0.5), ``c2w`` the closed-form rigid inverse.
    """
    if depth.ndim < 2:
        raise ValueError(f"depth must have shape [..., H, W], got {list(depth.shape)}")
    if w2c.shape[-2:] not in ((3, 4), (4, 4)) or K.shape[-2:] != (3, 3):
        raise ValueError(f"w2c must be [..., 3|4, 4] and K [..., 3, 3], got {list(w2c.shape)} and {list(K.shape)}")
    if w2c.shape[:-2] != depth.shape[:-2] or K.shape[:-2] != depth.shape[:-2]:
        raise ValueError(
            f"depth {list(depth.shape)}, w2c {list(w2c.shape)} and K {list(K.shape)} must share the leading dims"
        )
    height, width = depth.shape[-2:]
    u = torch.arange(width, dtype=depth.dtype, device=depth.device)
    v = torch.arange(height, dtype=depth.dtype, device=depth.device)[:, None]

    def k(i: int, j: int) -> torch.Tensor:
        return K[..., i, j, None, None]

    # inverse of the upper-triangular K, written out so the skew-free case keeps the official rounding
    y_cam = (v - k(1, 2)) * depth / k(1, 1)
    x_cam = (u - k(0, 2) - k(0, 1) * (v - k(1, 2)) / k(1, 1)) * depth / k(0, 0)
    cam = torch.stack((x_cam, y_cam, depth), dim=-1)  # [..., H, W, 3]
    c2w = invert_rigid(w2c[..., :3, :4])
    rot, trans = c2w[..., None, None, :3, :3], c2w[..., None, None, :3, 3]
    return (rot @ cam[..., None])[..., 0] + trans


def scene_scale(points: torch.Tensor) -> torch.Tensor:
    """AnySplat's ``scene_scale``: mean L2 norm of all points ``[..., 3]``, at least 1e-8 (scalar)."""
    return points.norm(dim=-1).mean().clamp_min(1e-8)


def voxelize_ratio(num_gaussians: int, num_pixels: int) -> float:
    """AnySplat's ``voxelize_ratio``: Gaussians kept per input pixel (``N / (V·H·W)``)."""
    if num_pixels <= 0:
        raise ValueError(f"num_pixels must be positive, got {num_pixels}")
    return num_gaussians / num_pixels


def flatten_pixels(
    anchor_feats: torch.Tensor, points: torch.Tensor, conf: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One scene's per-pixel tensors -> rows in (view, row, column) order.

    Args:
        anchor_feats: ``[V, C, H, W]`` raw Gaussian-head channels.
        points: ``[V, H, W, 3]`` world points.
        conf: optional ``[V, H, W]`` Gaussian-head confidence.

    Returns:
        ``(points [V·H·W, 3], feats [V·H·W, C], conf [V·H·W] or None)``.
    """
    if anchor_feats.ndim != 4 or points.ndim != 4 or points.shape[-1] != 3:
        raise ValueError(
            f"anchor_feats must be [V, C, H, W] and points [V, H, W, 3], got {list(anchor_feats.shape)} and "
            f"{list(points.shape)}"
        )
    v, c, h, w = anchor_feats.shape
    if points.shape[:3] != (v, h, w) or (conf is not None and conf.shape != (v, h, w)):
        raise ValueError(
            f"points {list(points.shape)} and conf {None if conf is None else list(conf.shape)} must match the "
            f"pixels of anchor_feats {list(anchor_feats.shape)}"
        )
    feats = anchor_feats.permute(0, 2, 3, 1).reshape(v * h * w, c)
    return points.reshape(v * h * w, 3), feats, None if conf is None else conf.reshape(v * h * w)


# ---------------------------------------------------------------------------- voxel fusion
def voxel_inverse(voxel_index: torch.Tensor) -> torch.Tensor:
    """``torch.unique(voxel_index, dim=0, return_inverse=True)[1]`` for integer voxel indices ``[P, 3]``: the
    voxel number of each point, voxels numbered in lexicographic order of their indices.

    Row-wise ``unique`` sorts rows and is ~50x slower on CPUs (0.7 s for 13 views of 112 px) than ``unique``
    of one integer per row; offsetting each axis to start at 0 and reading the indices as digits of a mixed
    radix number keeps the lexicographic order. Grids too large for an int64 key use the row-wise ``unique``.
    """
    lo = voxel_index.amin(0)
    span = (voxel_index.amax(0) - lo + 1).tolist()
    if math.prod(span) >= 2**62:
        return torch.unique(voxel_index, dim=0, return_inverse=True)[1]
    digits = voxel_index - lo
    key = (digits[:, 0] * span[1] + digits[:, 1]) * span[2] + digits[:, 2]
    return torch.unique(key, return_inverse=True)[1]


def voxel_fuse(
    points: torch.Tensor, feats: torch.Tensor, conf: torch.Tensor, voxel_size: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse points and features that fall in the same voxel, weighted by a softmax of the confidence.

    The voxel of a point is ``round(p / voxel_size)`` (round half to even) as integers; output rows follow the
    lexicographic order of those integer indices (the order of ``torch.unique(dim=0)``). Inside a voxel the
    weights are ``exp(conf − max conf) / (Σ exp(conf − max conf) + 1e-6)``. Pure PyTorch (``scatter_reduce``,
    ``index_add``): CPU and CUDA, differentiable w.r.t. ``points``, ``feats`` and ``conf``; on CUDA the sums
    use atomics, so the last bits are not deterministic.

    Args:
        points: ``[P, 3]`` world points.
        feats: ``[P, C]`` per-point features.
        conf: ``[P]`` confidence logits.
        voxel_size: edge length of a voxel (world units, > 0).

    Returns:
        ``(points [M, 3], feats [M, C])`` for the ``M`` occupied voxels.
    """
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape [P, 3], got {list(points.shape)}")
    num = points.shape[0]
    if feats.ndim != 2 or feats.shape[0] != num or conf.shape != (num,):
        raise ValueError(
            f"feats must be [P={num}, C] and conf [P={num}], got {list(feats.shape)} and {list(conf.shape)}"
        )
    if not (math.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be a positive finite number, got {voxel_size}")
    if num == 0:
        return points.new_zeros(0, 3), feats.new_zeros(0, feats.shape[1])

    voxel_index = torch.round(points.detach() / voxel_size).to(torch.int64)
    inverse = voxel_inverse(voxel_index)
    num_voxels = int(inverse.max()) + 1

    conf_max = conf.new_zeros(num_voxels).scatter_reduce(0, inverse, conf, reduce="amax", include_self=False)
    expo = torch.exp(conf - conf_max[inverse])
    denom = expo.new_zeros(num_voxels).index_add(0, inverse, expo)
    weights = (expo / (denom[inverse] + FUSION_EPS))[:, None]
    fused_points = points.new_zeros(num_voxels, 3).index_add(0, inverse, points * weights)
    fused_feats = feats.new_zeros(num_voxels, feats.shape[1]).index_add(0, inverse, feats * weights)
    return fused_points, fused_feats


# ---------------------------------------------------------------------------- Gaussians
def anysplat_gaussians_from_raw(raw: torch.Tensor, means: torch.Tensor, sh_degree: int) -> dict[str, torch.Tensor]:
    """Activate raw Gaussian-head channels the way AnySplat's (pose-free) adapter does.

    Args:
        raw: ``[..., N, 1 + 7 + 3·(sh_degree+1)²]``: density, 3 scale, 4 rotation (x, y, z, w), then SH with the
            colour channel major (``rgb·K + k``).
        means: ``[..., N, 3]`` Gaussian centres (per-pixel or voxel-fused world points), passed through.
        sh_degree: SH degree of the head.

    Returns:
        The official dictionary: ``means [..., N, 3]``, ``opacities [..., N]`` = sigmoid(density),
        ``scales [..., N, 3]`` = ``0.001·softplus`` clamped at 0.3, ``rotations [..., N, 4]`` (x, y, z, w) over
        (norm + 1e-8), ``harmonics [..., N, 3, K]`` times :func:`sh_mask`, ``covariances [..., N, 3, 3]`` =
        ``R diag(s)² Rᵀ``.
    """
    expected = raw_gaussian_dim(sh_degree)
    if raw.shape[-1] != expected:
        raise ValueError(
            f"raw must have {expected} channels (1 + 7 + 3·(sh_degree+1)²) for sh_degree={sh_degree}, "
            f"got {raw.shape[-1]}"
        )
    if means.shape != raw.shape[:-1] + (3,):
        raise ValueError(f"means must have shape {list(raw.shape[:-1]) + [3]}, got {list(means.shape)}")
    num_sh = (sh_degree + 1) ** 2
    density, scale_raw, quat_raw, sh_raw = raw.split((1, 3, 4, 3 * num_sh), dim=-1)

    scales = (SCALE_FACTOR * F.softplus(scale_raw)).clamp_max(MAX_SCALE)
    rotations = quat_raw / (quat_raw.norm(dim=-1, keepdim=True) + QUAT_EPS)
    harmonics = sh_raw.unflatten(-1, (3, num_sh)) * sh_mask(sh_degree, raw.dtype, raw.device)
    # a zero quaternion means "no rotation" (the official formula yields the identity there)
    identity = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=raw.dtype, device=raw.device)
    safe = torch.where((rotations.square().sum(-1, keepdim=True) > 0), rotations, identity)
    rot = quat_to_rotmat(safe, scalar_first=False)
    covariances = (rot * scales.square()[..., None, :]) @ rot.transpose(-1, -2)
    return {
        "means": means,
        "covariances": covariances,
        "harmonics": harmonics,
        "opacities": torch.sigmoid(density[..., 0]),
        "scales": scales,
        "rotations": rotations,
    }


def official_to_gaussians(d: dict[str, torch.Tensor]) -> Gaussians:
    """Official Gaussians dictionary of **one** scene (``[N, ...]`` tensors) -> :class:`Gaussians`.

    Rotations go from (x, y, z, w) to (w, x, y, z), harmonics from ``[N, 3, K]`` to ``sh [N, K, 3]``;
    covariances are dropped (the container derives them from quats and scales).
    """
    missing = [key for key in ("means", "rotations", "scales", "opacities", "harmonics") if key not in d]
    if missing:
        raise ValueError(f"official Gaussians dict lacks {missing}; it has {sorted(d)}")
    if d["means"].ndim != 2:
        raise ValueError(
            f"official_to_gaussians takes one scene ([N, 3] means); got means {list(d['means'].shape)} "
            "(index the batch first, e.g. {k: v[0] for k, v in d.items()})"
        )
    return Gaussians(
        means=d["means"],
        quats=d["rotations"][..., [3, 0, 1, 2]],
        scales=d["scales"],
        opacities=d["opacities"],
        sh=d["harmonics"].transpose(-1, -2),
    )
