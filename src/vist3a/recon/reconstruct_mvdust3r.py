"""Standalone reconstruction with MV-DUSt3R / MV-DUSt3R+: frames -> Gaussians, point cloud, cameras, depth.

Preprocessing follows the release's ``load_images(size=224)``: each frame is resized so that its short side is
``size`` (Lanczos when shrinking, bicubic when enlarging) and centre-cropped to ``size x size``; the model sees
``2 * rgb - 1``. MV-DUSt3R+ gets the views reordered as the release's demo does (its reference views 0..3 spread
over the sequence); every file is written back in input order.

Files (one folder, replaced atomically): ``scene.ply`` (one Gaussian per pixel of path 0, coloured by the input
pixels as the release's renderer colours them, see :attr:`~vist3a.recon.mvdust3r.MVDust3rOutput.gaussians`),
``points.ply`` (the ``keep_fraction`` most confident points), ``cameras.json`` (recovered from the pointmaps:
:mod:`vist3a.recon.pointmap_cameras`), ``depth/NNN.png``, ``flythrough.mp4`` and ``meta.json`` (with the weights'
licence, CC BY-NC 4.0 for the release).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

MIN_VIEWS = 2


def preprocess_square(frames: list[np.ndarray], size: int, patch_size: int = 16) -> torch.Tensor:
    """Frames ``uint8 [H, W, 3]`` -> ``[V, 3, size, size]`` float32 in ``[0, 1]`` (short side to ``size``, centre
    crop)."""
    from PIL import Image

    if size <= 0 or size % patch_size:
        raise UserInputError(f"--size must be a positive multiple of {patch_size} for MV-DUSt3R, got {size}")
    out = []
    for frame in frames:
        height, width = frame.shape[:2]
        scale = size / min(height, width)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        method = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        img = Image.fromarray(frame).resize((new_w, new_h), method)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out)


def reference_spread_order(num_views: int) -> list[int]:
    """The release demo's view order for MV-DUSt3R+ (``order[i]`` = input index of model view ``i``): with fewer
    than 12 views swap 1<->3 (more than 3 views) and 2<->6 (more than 6), else swap 1<->n//4+1, 2<->2n//4+1,
    3<->3n//4+1, so that the reference views 0..3 spread over the sequence."""
    order = list(range(num_views))
    if num_views < 12:
        swaps = [(1, 3)] * (num_views > 3) + [(2, 6)] * (num_views > 6)
    else:
        swaps = [(k, k * num_views // 4 + 1) for k in (1, 2, 3)]
    for a, b in swaps:
        order[a], order[b] = order[b], order[a]
    return order


def reconstruct_mvdust3r(
    model: torch.nn.Module,
    views: torch.Tensor,
    out_dir: str | os.PathLike,
    autocast_dtype: torch.dtype | None = None,
    keep_fraction: float = 0.5,
    extra_meta: dict | None = None,
    flythrough_frames: int = 24,
):
    """Run an :class:`~vist3a.recon.MVDust3r` on ``views [V, 3, H, W]`` in ``[0, 1]`` and write the files of the
    module docstring to ``out_dir``. Returns a :class:`~vist3a.recon.reconstruct.ReconstructionSummary`."""
    from vist3a.cameras import save_cameras_json
    from vist3a.io_utils import atomic_dir
    from vist3a.recon.reconstruct import (
        ReconstructionSummary,
        _write_flythrough,
        fuse_point_maps,
        save_depth_pngs,
        save_point_ply,
    )
    from vist3a.splats.ply import save_ply

    num_views = int(views.shape[0])
    if num_views < MIN_VIEWS:
        raise UserInputError(f"MV-DUSt3R needs at least {MIN_VIEWS} views, the input has {num_views}: add images "
                             f"(or raise --max-views)")
    patch = model.config.patch_size
    height, width = (int(s) for s in views.shape[-2:])
    if height % patch or width % patch:
        raise UserInputError(f"MV-DUSt3R input size must be a multiple of {patch}, got {width}x{height}")
    order = reference_spread_order(num_views) if model.config.multi_path else list(range(num_views))
    back = torch.argsort(torch.tensor(order)).tolist()  # input index -> model view
    device = next(model.parameters()).device
    images = (views.to(device)[order] * 2 - 1)[None]
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None),
    ):
        out = model(images)
    with torch.no_grad():
        cams, pcams = out.cameras, out.pointmap_cameras
        w2c, K = cams.w2c[0, back].float(), cams.K[0, back].float()
        depth = out.depth[0, back]
        gaussians = out.gaussians[0].detach().to("cpu") if out.gaussians is not None else None
        xyz, rgb = fuse_point_maps(out.world_points[0, back], out.world_points_conf[0, back], views, keep_fraction)
    meta = {
        "model": "MV-DUSt3R+" if model.config.multi_path else "MV-DUSt3R",
        "num_views": num_views,
        "width": width,
        "height": height,
        "paths": int(out.points.shape[1]),
        "reference_view": order[int(out.reference_views[0])],
        "view_order_in_model": order,
        "cameras": "recovered from the pointmaps (shared focal by least squares, poses by orthogonal-iteration PnP)",
        "camera_reprojection_rms_px": [float(r) for r in pcams.residual[0, back]],
        "gaussian_colours": "input image pixels (as the release renders its Gaussians)",
        "keep_fraction": keep_fraction,
        "weights_licence": "CC BY-NC 4.0 (MV-DUSt3R release weights; non-commercial use only)",
        **(extra_meta or {}),
    }
    with atomic_dir(out_dir) as tmp:
        save_cameras_json(tmp / "cameras.json", pcams.w2c[0, back].float(), pcams.K[0, back].float(), width, height)
        near, far = save_depth_pngs(tmp / "depth", depth)
        meta["depth_png_range"] = [near, far]
        save_point_ply(tmp / "points.ply", xyz, rgb)
        count = 0
        if gaussians is not None:
            keep = gaussians.is_finite()
            if not bool(keep.all()):
                logger.warning("dropping %d non-finite Gaussians", int((~keep).sum()))
                gaussians = gaussians[keep]
            save_ply(gaussians, tmp / "scene.ply")
            count = len(gaussians)
            if flythrough_frames > 0:
                _write_flythrough(tmp / "flythrough.mp4", gaussians.to(device), w2c, K, width, height,
                                  flythrough_frames)
        meta["num_primitives"] = count or int(xyz.shape[0])
        meta["num_points"] = int(xyz.shape[0])
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    logger.info("wrote %d Gaussians, %d points and %d other files to %s", count, xyz.shape[0], len(files) - 2,
                out_dir)
    return ReconstructionSummary(Path(out_dir), num_views, (height, width), meta["num_primitives"], files)
