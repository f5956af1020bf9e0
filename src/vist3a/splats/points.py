"""Point clouds from per-pixel pointmaps (VGGT / MV-DUSt3R): the one fusion rule behind ``points.ply`` and every
export of a pointmap scene, so a file and its exports hold the same points."""

from __future__ import annotations

import torch


def fuse_point_maps(
    points: torch.Tensor, conf: torch.Tensor | None, colors: torch.Tensor, keep_fraction: float = 0.5,
    return_conf: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Keep the ``keep_fraction`` most confident finite pixels of point maps (all finite ones without ``conf``).

    ``points [V, H, W, 3]``, ``conf [V, H, W]``, ``colors [V, 3, H, W]`` in [0, 1] ->
    ``(xyz [M, 3], rgb [M, 3] uint8)``, most confident first; with ``return_conf`` also ``conf [M]``.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"`keep_fraction` must be in (0, 1], got {keep_fraction}")
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
