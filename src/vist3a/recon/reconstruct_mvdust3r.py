"""Standalone reconstruction with MV-DUSt3R / MV-DUSt3R+: frames -> Gaussians, point cloud, cameras, depth.

Preprocessing follows the release's ``load_images(size=224)``: each frame is resized so that its short side is
``size`` (Lanczos when shrinking, bicubic when enlarging) and centre-cropped to ``size x size``; the model sees
``2 * rgb - 1``. MV-DUSt3R+ gets the views reordered as the release's demo does (its reference views 0..3 spread
over the sequence); every file is written back in input order.

The scene (written by :func:`vist3a.scene.save_scene`, the one export path): ``scene.ply`` / ``scene.splat`` (one
Gaussian per pixel of path 0, coloured by the input pixels as the release's renderer colours them, see
:attr:`~vist3a.recon.mvdust3r.MVDust3rOutput.gaussians`), ``points.ply`` (the ``keep_fraction`` most confident
points), ``cameras.json`` (recovered from the pointmaps: :mod:`vist3a.recon.pointmap_cameras`), ``depth/NNN.png``,
``flythrough.mp4``, ``frames.mp4`` and ``meta.json`` (with the weights' licence, CC BY-NC 4.0 for the release).
"""

from __future__ import annotations

import logging
from typing import Any

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


def mvdust3r_scene(
    model: torch.nn.Module,
    views: torch.Tensor,
    autocast_dtype: torch.dtype | None = None,
    keep_fraction: float = 0.5,
) -> tuple[Any, dict[str, Any]]:
    """Run an :class:`~vist3a.recon.MVDust3r` on ``views [V, 3, H, W]`` in ``[0, 1]`` -> ``(Scene, meta)`` in input
    order, for :func:`vist3a.recon.reconstruct.reconstruct` to write with the one export path
    (:func:`vist3a.scene.save_scene`): per-pixel Gaussians of path 0, its pointmaps and the cameras recovered from
    them, and the meta keys of the module docstring."""
    from vist3a.cameras import K_from_edge_convention, to_homogeneous
    from vist3a.scene import Scene

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
    gaussians = None
    if out.gaussians is not None:
        gaussians = out.gaussians[0].detach().to(device="cpu", dtype=torch.float32)
        keep = gaussians.is_finite()
        if not bool(keep.all()):
            logger.warning("dropping %d non-finite Gaussians", int((~keep).sum()))
            gaussians = gaussians[keep]
    cams = out.cameras
    name = "MV-DUSt3R+" if model.config.multi_path else "MV-DUSt3R"
    scene = Scene(
        prompt="",
        frames=views.float().cpu(),
        w2c=to_homogeneous(cams.w2c[0, back].float()).cpu(),
        K=K_from_edge_convention(cams.K[0, back].float()).cpu(),  # (W/2, H/2) -> integer pixel centres
        image_size=(height, width),
        gaussians=gaussians,
        depth=out.depth[0, back].float().cpu(),
        points=out.world_points[0, back].float().cpu(),
        points_conf=out.world_points_conf[0, back].float().cpu(),
        settings={"model": name, "keep_fraction": keep_fraction},
    )
    meta = {
        "model": name,
        "paths": int(out.points.shape[1]),
        "reference_view": order[int(out.reference_views[0])],
        "view_order_in_model": order,
        "cameras": "recovered from the pointmaps (shared focal by least squares, poses by orthogonal-iteration PnP)",
        "camera_reprojection_rms_px": [float(r) for r in out.pointmap_cameras.residual[0, back]],
        "gaussian_colours": "input image pixels (as the release renders its Gaussians)",
        "keep_fraction": keep_fraction,
        "weights_licence": "CC BY-NC 4.0 (MV-DUSt3R release weights; non-commercial use only)",
    }
    return scene, meta
