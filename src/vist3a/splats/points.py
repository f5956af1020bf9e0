"""Point clouds from per-pixel pointmaps (VGGT / MV-DUSt3R): the one fusion rule behind ``points.ply`` and every
export of a pointmap scene, so a file and its exports hold the same points; and the splats that render such a
point cloud (:func:`points_to_gaussians`, :func:`point_cloud_splats`: the fly-through of a pointmap scene and the
held-out score of ``--direction mirror-select`` for pointmap decoders)."""

from __future__ import annotations

import torch

from vist3a.cameras import invert_rigid
from vist3a.splats.gaussians import Gaussians, rgb_to_sh_dc

#: Standard deviation of a point's splat in a pointmap scene's fly-through, in pointmap pixels at its depth.
POINT_SPLAT_FOOTPRINT = 0.6


def fuse_point_maps(
    points: torch.Tensor, conf: torch.Tensor | None, colors: torch.Tensor, keep_fraction: float = 0.5,
    return_conf: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Keep the ``keep_fraction`` most confident finite pixels of point maps (all finite ones without ``conf``).

    ``points [V, H, W, 3]``, ``conf [V, H, W]``, ``colors [V, 3, h, w]`` in [0, 1] (e.g. the decoded frames; area-
    resized to ``H x W`` when their size differs) -> ``(xyz [M, 3], rgb [M, 3] uint8)``, most confident first; with
    ``return_conf`` also ``conf [M]``.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"`keep_fraction` must be in (0, 1], got {keep_fraction}")
    if tuple(colors.shape[-2:]) != tuple(points.shape[1:3]):
        colors = torch.nn.functional.interpolate(colors.float(), size=tuple(points.shape[1:3]), mode="area")
    xyz = points.reshape(-1, 3).float()
    c = conf.reshape(-1).float() if conf is not None else torch.ones(xyz.shape[0])
    rgb = (colors.permute(0, 2, 3, 1).reshape(-1, 3).clamp(0, 1) * 255).round().to(torch.uint8)
    finite = torch.isfinite(xyz).all(-1) & torch.isfinite(c)
    xyz, c, rgb = xyz[finite], c[finite], rgb[finite]
    if xyz.shape[0] == 0:
        raise ValueError("the point maps have no finite points")
    keep = max(1, round(keep_fraction * xyz.shape[0]))
    order = torch.argsort(c, descending=True, stable=True)[:keep]
    return (xyz[order], rgb[order], c[order]) if return_conf else (xyz[order], rgb[order])


def points_to_gaussians(xyz: torch.Tensor, rgb: torch.Tensor, radius: torch.Tensor, opacity: float = 1.0
                        ) -> Gaussians:
    """Round, view-independent splats for a coloured point cloud (to render it with :func:`vist3a.splats.render`).

    ``xyz [M, 3]`` world points, ``rgb [M, 3]`` uint8 (as :func:`fuse_point_maps` gives) or float in [0, 1],
    ``radius [M]`` (or a scalar) the splats' standard deviation in world units, ``opacity`` in [0, 1]. SH degree 0.
    """
    if xyz.ndim != 2 or xyz.shape[-1] != 3 or rgb.shape != xyz.shape:
        raise ValueError(f"`xyz` and `rgb` must both be [M, 3], got {list(xyz.shape)} and {list(rgb.shape)}")
    xyz = xyz.float()
    colour = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
    radius = torch.as_tensor(radius, dtype=torch.float32, device=xyz.device).expand(xyz.shape[0])
    quats = torch.zeros(xyz.shape[0], 4, device=xyz.device)
    quats[:, 0] = 1.0  # wxyz identity
    return Gaussians(means=xyz, quats=quats, scales=radius[:, None].expand(-1, 3).clone(),
                     opacities=torch.full((xyz.shape[0],), float(opacity), device=xyz.device),
                     sh=rgb_to_sh_dc(colour)[:, None, :])


def point_cloud_splats(xyz: torch.Tensor, rgb: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor,
                       footprint: float = POINT_SPLAT_FOOTPRINT) -> Gaussians:
    """Splats that render a pointmap's point cloud as a surface: each point a round splat whose standard deviation
    is ``footprint`` x the size of one pointmap pixel at its distance from the nearest camera (``distance /
    focal``), so neighbouring pixels' points close the gaps between them without blurring edges.

    ``xyz [M, 3]`` and ``rgb [M, 3]`` as :func:`fuse_point_maps` gives; ``w2c [V, 3 or 4, 4]`` world-to-camera
    (OpenCV) and ``K [V, 3, 3]`` pixel intrinsics *of the pointmaps* (their pixel size sets the splats').
    """
    centres = invert_rigid(w2c[:, :3].float().to(xyz.device))[:, :3, 3]  # [V, 3]
    distance = torch.cdist(xyz.float(), centres).amin(1)
    focal = K[:, 0, 0].float().to(xyz.device).mean().clamp_min(1e-6)
    return points_to_gaussians(xyz, rgb, footprint * distance / focal)


def point_spacing(xyz: torch.Tensor, sample: int = 4096, seed: int = 0) -> float:
    """Median distance from a point to its nearest neighbour (over a random sample of ``sample`` points, against
    all points in chunks): the scale of a point cloud's gaps, for splats that close them."""
    xyz = xyz.float()
    if xyz.shape[0] < 2:
        return 1.0
    picks = torch.randperm(xyz.shape[0], generator=torch.Generator().manual_seed(seed))[:sample]
    nearest = torch.full((picks.numel(),), float("inf"))
    for chunk in xyz.split(65536):
        d = torch.cdist(xyz[picks], chunk)
        d[d == 0] = float("inf")  # the point itself (and exact duplicates)
        nearest = torch.minimum(nearest, d.amin(1))
    finite = nearest[torch.isfinite(nearest)]
    return float(finite.median()) if finite.numel() else 1.0


def point_file_splats(xyz: torch.Tensor, rgb: torch.Tensor, footprint: float = 0.75) -> Gaussians:
    """Round splats for a point cloud without cameras (a ``points.ply`` given to ``vist3a render``): each point's
    standard deviation is ``footprint`` x the cloud's :func:`point_spacing`, so neighbours overlap a little."""
    return points_to_gaussians(xyz, rgb, footprint * point_spacing(xyz))
