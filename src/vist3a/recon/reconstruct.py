"""Standalone reconstruction: image folder or video -> VGGT / AnySplat -> a :class:`~vist3a.scene.Scene` on disk.

Preprocessing follows VGGT's ``load_and_preprocess_images(mode="crop")``: each frame is resized (bicubic)
to width ``size`` with the height scaled to keep the aspect ratio and rounded to a multiple of the patch
size, then centre-cropped to at most ``size`` rows; frames of different shapes are padded with white to the
largest one. Frames are read by :mod:`vist3a.data.media` (the one frame reader). Outputs are written by
:func:`vist3a.scene.save_scene` (the one export path, atomically): ``cameras.json`` (pixel centres at integer
coordinates), ``frames.mp4`` (the input views), ``depth/NNN.png``, ``meta.json``, and

* AnySplat: ``scene.ply`` (3DGS PLY), ``scene.splat``, ``flythrough.mp4``;
* VGGT: ``points.ply`` (xyz + rgb point cloud fused from the point maps, keeping the most confident pixels);
* MV-DUSt3R(+): both, with its own square preprocessing (:mod:`vist3a.recon.reconstruct_mvdust3r`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

DEFAULT_SIZE = {"vggt": 518, "anysplat": 448, "mvdust3r": 224, "mvdust3r-plus": 224}
MVDUST3R_KINDS = ("mvdust3r", "mvdust3r-plus")
PAD_VALUE = 1.0  # white, as the official preprocessing pads


# ----------------------------------------------------------------------------- inputs
def _evenly_spaced(count: int, keep: int) -> list[int]:
    if count <= keep:
        return list(range(count))
    return [round(i * (count - 1) / (keep - 1)) for i in range(keep)] if keep > 1 else [0]


def read_frames(source: str | os.PathLike, max_views: int = 32) -> list[np.ndarray]:
    """RGB ``uint8 [H, W, 3]`` frames of an image folder (natural name order) or a video, at most ``max_views``
    (evenly spaced over the input when there are more)."""
    from vist3a.data.media import (
        IMAGE_SUFFIXES,
        VIDEO_SUFFIXES,
        count_video_frames,
        list_images,
        read_image,
        read_video_frames,
        to_uint8,
    )

    source = Path(source)
    if max_views < 1:
        raise UserInputError(f"--max-views must be at least 1, got {max_views}")
    if source.is_dir():
        files = list_images(source)
        if not files:
            raise UserInputError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        frames = [read_image(files[i]) for i in _evenly_spaced(len(files), max_views)]
    elif source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        count = count_video_frames(source)
        if count == 0:
            raise UserInputError(f"{source}: the video has no frames")
        frames = list(read_video_frames(source, _evenly_spaced(count, max_views)))
    elif source.exists():
        raise UserInputError(f"{source}: expected a folder of images or a video ({', '.join(VIDEO_SUFFIXES)})")
    else:
        raise UserInputError(f"{source}: no such file or folder")
    if len(frames) < max(1, min(2, max_views)):
        logger.warning(
            "only %d view(s) found in %s; reconstruction from a single view is ill-posed", len(frames), source
        )
    return [to_uint8(f) for f in frames]


def fixed_input_size(model: torch.nn.Module) -> int | None:
    """The one square input side a model takes, or None: a camera head that reads a fixed grid of patch tokens
    (``camera_config["patch_pool_tokens"]``, the nano AnySplat's 8 x 8) needs exactly that many patches."""
    config = getattr(model, "config", None)
    tokens = dict(getattr(config, "camera_config", None) or {}).get("patch_pool_tokens", 0)
    if not tokens:
        return None
    side = round(tokens**0.5)
    return side * int(dict(getattr(config, "aggregator_config", None) or {}).get("patch_size", 14))


def views_for(model: torch.nn.Module, kind: str, frames: list[np.ndarray], size: int | None = None) -> torch.Tensor:
    """:func:`preprocess_for_model` at the size the loaded ``model`` takes: its :func:`fixed_input_size` when it has
    one (``size`` must then be None or that size, and the views must come out square), else ``size``."""
    fixed = fixed_input_size(model)
    if fixed is not None and size is not None and size != fixed:
        raise UserInputError(f"--size must be {fixed} for these weights (their camera head reads a fixed grid of "
                             f"patches), got {size}; leave --size out")
    views = preprocess_for_model(kind, frames, size or fixed)
    if fixed is not None and tuple(views.shape[-2:]) != (fixed, fixed):
        raise UserInputError(f"these weights take square {fixed} px views, but the frames give "
                             f"{views.shape[-1]}x{views.shape[-2]}: crop them square first")
    return views


def direction_for(preset: dict[str, Any]) -> str:
    """The turning-direction rule for reconstructing with the 3D model of ``preset`` (a resolved preset, as
    :func:`vist3a.components.resolve_preset` gives it): "motion" where the preset says so (the nano presets: models
    trained on views that turn one way), else "as-is"."""
    return "motion" if preset.get("defaults", {}).get("direction") == "motion" else "as-is"


def preprocess_for_model(kind: str, frames: list[np.ndarray], size: int | None = None) -> torch.Tensor:
    """The preprocessing of model ``kind`` (``size``: its default input size if ``None``)."""
    if kind in MVDUST3R_KINDS:
        from vist3a.recon.reconstruct_mvdust3r import preprocess_square

        return preprocess_square(frames, size or DEFAULT_SIZE[kind])
    return preprocess_frames(frames, size or DEFAULT_SIZE[kind])


def preprocess_frames(frames: list[np.ndarray], size: int, patch_size: int = 14) -> torch.Tensor:
    """Frames -> ``[V, 3, H, W]`` float32 in ``[0, 1]`` ("crop" mode, see the module docstring)."""
    from PIL import Image

    if size <= 0 or size % patch_size:
        raise UserInputError(f"--size must be a positive multiple of the patch size {patch_size}, got {size}")
    tensors = []
    for frame in frames:
        height, width = frame.shape[:2]
        new_h = max(patch_size, round(height * (size / width) / patch_size) * patch_size)
        img = Image.fromarray(frame).resize((size, new_h), Image.Resampling.BICUBIC)
        t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
        if new_h > size:
            top = (new_h - size) // 2
            t = t[:, top : top + size]
        tensors.append(t)
    max_h = max(t.shape[1] for t in tensors)
    if any(t.shape[1] != max_h for t in tensors):
        logger.warning("frames have different aspect ratios; padding them with white to height %d", max_h)
        padded = []
        for t in tensors:
            pad = max_h - t.shape[1]
            padded.append(torch.nn.functional.pad(t, (0, 0, pad // 2, pad - pad // 2), value=PAD_VALUE))
        tensors = padded
    return torch.stack(tensors)


# ----------------------------------------------------------------------------- orchestration
@dataclass
class ReconstructionSummary:
    """What :func:`reconstruct` wrote."""

    out_dir: Path
    num_views: int
    image_hw: tuple[int, int]
    num_primitives: int
    files: list[str]


def reconstruct(
    model: torch.nn.Module,
    views: torch.Tensor,
    out_dir: str | os.PathLike,
    autocast_dtype: torch.dtype | None = None,
    keep_fraction: float = 0.5,
    extra_meta: dict | None = None,
    flythrough_frames: int = 24,
    sh_degree: int | None = 3,
    formats: tuple[str, ...] | list[str] = (),
    direction: str = "as-is",
) -> ReconstructionSummary:
    """Run ``model`` (:class:`~vist3a.recon.VGGT`, :class:`~vist3a.recon.AnySplat` or
    :class:`~vist3a.recon.MVDust3r`) on ``views [V, 3, H, W]`` in ``[0, 1]`` and write the outputs to ``out_dir``
    (replaced atomically); Gaussian models also get ``flythrough.mp4``, a smooth path through the predicted
    cameras (``flythrough_frames = 0`` skips it). ``scene.ply`` keeps SH bands up to ``sh_degree`` (``None``: all;
    AnySplat predicts 4, which current viewers reject); ``meta.json["sh"]`` reports what was dropped. ``formats``:
    extra exports into ``out_dir`` (:mod:`vist3a.exports`; splat formats are skipped for point clouds).
    ``direction``: "as-is", or "motion" for models trained on views that turn one way (the nano ones): views that
    turn clockwise by their image motion (:func:`vist3a.recon.direction.image_motion_turn`) go through the model
    as their mirror image and the scene comes back mirrored (:meth:`vist3a.scene.Scene.mirrored`), in the views'
    own frame; ``meta.json["direction_choice"]`` records it."""
    from vist3a.recon import VGGT, AnySplat, MVDust3r
    from vist3a.scene import save_scene

    if direction not in ("as-is", "motion"):
        raise ValueError(f"`direction` must be 'as-is' or 'motion', got {direction!r}")
    choice = None
    if direction == "motion" and views.shape[0] >= 2:
        from vist3a.recon.direction import image_motion_turn

        turn = float(image_motion_turn(views[None].float())[0])
        choice = {"decoded": "mirror image" if turn < 0 else "as is", "image_motion_turn": turn}
    seen = views.flip(-1) if choice is not None and choice["decoded"] == "mirror image" else views
    if isinstance(model, MVDust3r):
        from vist3a.recon.reconstruct_mvdust3r import mvdust3r_scene

        scene, meta = mvdust3r_scene(model, seen, autocast_dtype, keep_fraction)
    elif isinstance(model, VGGT | AnySplat):
        scene, meta = _scene(model, seen, autocast_dtype, keep_fraction)
    else:
        raise ValueError(f"`model` must be a VGGT, AnySplat or MVDust3r model, got {type(model).__name__}")
    if seen is not views:
        scene = scene.mirrored()
    if choice is not None:
        meta["direction_choice"] = choice
    height, width = scene.image_size
    meta = {"num_views": int(views.shape[0]), "width": width, "height": height, **meta, **(extra_meta or {})}
    if scene.gaussians is not None:
        count = len(scene.gaussians)
    else:  # what points.ply keeps (vist3a.splats.points.fuse_point_maps)
        finite = torch.isfinite(scene.points).all(-1)
        if scene.points_conf is not None:
            finite &= torch.isfinite(scene.points_conf)
        count = max(1, round(keep_fraction * int(finite.sum())))
    meta["num_primitives"] = int(count)
    out_dir = save_scene(scene, out_dir, flythrough_frames=flythrough_frames if scene.gaussians is not None else 0,
                         extra_meta=meta, depth_pngs=True, points_keep_fraction=keep_fraction, sh_degree=sh_degree,
                         formats=formats)
    files = sorted(str(p.relative_to(out_dir)) for p in Path(out_dir).rglob("*") if p.is_file())
    logger.info("wrote %d primitives and %d files to %s", count, len(files), out_dir)
    return ReconstructionSummary(Path(out_dir), int(views.shape[0]), (height, width), int(count), files)


def _scene(model: torch.nn.Module, views: torch.Tensor, autocast_dtype: torch.dtype | None,
           keep_fraction: float) -> tuple[Any, dict[str, Any]]:
    """VGGT / AnySplat on ``views`` -> ``(Scene, meta)``."""
    from vist3a.cameras import K_from_edge_convention, to_homogeneous
    from vist3a.recon import AnySplat
    from vist3a.recon.outputs import scene_pointmap
    from vist3a.scene import Scene

    device = next(model.parameters()).device
    images = views.to(device)[None]
    height, width = (int(s) for s in views.shape[-2:])
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None),
    ):
        out = model(images)
    cams = out.cameras
    gaussians = None
    if isinstance(model, AnySplat):
        gaussians = out.gaussians[0].detach().to(device="cpu", dtype=torch.float32)
        keep = gaussians.is_finite()
        if not bool(keep.all()):
            logger.warning("dropping %d non-finite Gaussians", int((~keep).sum()))
            gaussians = gaussians[keep]
    points, points_conf = scene_pointmap(out)  # VGGT: its depth through its cameras (the demo's default branch)
    scene = Scene(
        prompt="",
        frames=views.float().cpu(),
        w2c=to_homogeneous(cams.w2c[0].float()).cpu(),
        K=K_from_edge_convention(cams.K[0].float()).cpu(),  # the models' c = size / 2 -> integer pixel centres
        image_size=(height, width),
        gaussians=gaussians,
        depth=out.depth[0].float().cpu() if out.depth is not None else None,
        points=points[0].float().cpu() if points is not None and gaussians is None else None,
        points_conf=points_conf[0].float().cpu() if points_conf is not None and gaussians is None else None,
        settings={"model": type(model).__name__, **({"keep_fraction": keep_fraction} if gaussians is None else {})},
    )
    return scene, {"model": type(model).__name__}
