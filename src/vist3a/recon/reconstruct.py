"""Standalone reconstruction: image folder or video -> VGGT / AnySplat -> files on disk.

Preprocessing follows VGGT's ``load_and_preprocess_images(mode="crop")``: each frame is resized (bicubic)
to width ``size`` with the height scaled to keep the aspect ratio and rounded to a multiple of the patch
size, then centre-cropped to at most ``size`` rows; frames of different shapes are padded with white to the
largest one. Outputs (written atomically into one folder):

* AnySplat: ``scene.ply`` (3DGS PLY), ``cameras.json``, ``depth/NNN.png``, ``meta.json``;
* VGGT: ``points.ply`` (xyz + rgb point cloud fused from the point maps, keeping the most confident
  pixels), ``cameras.json``, ``depth/NNN.png``, ``meta.json``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v")
DEFAULT_SIZE = {"vggt": 518, "anysplat": 448}
PAD_VALUE = 1.0  # white, as the official preprocessing pads


# ----------------------------------------------------------------------------- inputs
def _evenly_spaced(count: int, keep: int) -> list[int]:
    if count <= keep:
        return list(range(count))
    return [round(i * (count - 1) / (keep - 1)) for i in range(keep)] if keep > 1 else [0]


def read_frames(source: str | os.PathLike, max_views: int = 32) -> list[np.ndarray]:
    """RGB ``uint8 [H, W, 3]`` frames of an image folder (sorted by name) or a video, at most ``max_views``
    (evenly spaced over the input when there are more)."""
    import imageio.v3 as iio

    source = Path(source)
    if max_views < 1:
        raise UserInputError(f"--max-views must be at least 1, got {max_views}")
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserInputError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        picked = [files[i] for i in _evenly_spaced(len(files), max_views)]
        frames = [iio.imread(p) for p in picked]
    elif source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        try:
            all_frames = list(iio.imiter(source))
        except Exception as exc:  # imageio raises many types for unreadable videos
            raise UserInputError(f"{source}: cannot read video ({type(exc).__name__}: {exc})") from None
        if not all_frames:
            raise UserInputError(f"{source}: the video has no frames")
        frames = [all_frames[i] for i in _evenly_spaced(len(all_frames), max_views)]
    elif source.exists():
        raise UserInputError(f"{source}: expected a folder of images or a video ({', '.join(VIDEO_SUFFIXES)})")
    else:
        raise UserInputError(f"{source}: no such file or folder")
    if len(frames) < max(1, min(2, max_views)):
        logger.warning(
            "only %d view(s) found in %s; reconstruction from a single view is ill-posed", len(frames), source
        )
    return [_to_rgb(f, source) for f in frames]


def _to_rgb(frame: np.ndarray, source: Path) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, -1)
    if frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        raise UserInputError(f"{source}: unsupported image layout {frame.shape}")
    if frame.shape[-1] == 4:  # composite onto white, as the official loader does
        alpha = frame[..., 3:].astype(np.float32) / 255.0
        frame = (frame[..., :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    if frame.dtype != np.uint8:
        frame = np.clip(frame.astype(np.float32) / max(float(frame.max()), 1.0) * 255.0, 0, 255).astype(np.uint8)
    return frame


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


# ----------------------------------------------------------------------------- outputs
def fuse_point_maps(
    points: torch.Tensor, conf: torch.Tensor, colors: torch.Tensor, keep_fraction: float = 0.5,
    return_conf: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Keep the ``keep_fraction`` most confident finite pixels of point maps.

    ``points [V, H, W, 3]``, ``conf [V, H, W]``, ``colors [V, 3, H, W]`` in [0, 1] ->
    ``(xyz [M, 3], rgb [M, 3] uint8)``, most confident first; with ``return_conf`` also ``conf [M]``.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"`keep_fraction` must be in (0, 1], got {keep_fraction}")
    xyz = points.reshape(-1, 3).float()
    c = conf.reshape(-1).float()
    rgb = (colors.permute(0, 2, 3, 1).reshape(-1, 3).clamp(0, 1) * 255).round().to(torch.uint8)
    finite = torch.isfinite(xyz).all(-1) & torch.isfinite(c)
    xyz, c, rgb = xyz[finite], c[finite], rgb[finite]
    if xyz.shape[0] == 0:
        raise ValueError("the point maps have no finite points")
    keep = max(1, round(keep_fraction * xyz.shape[0]))
    order = torch.argsort(c, descending=True)[:keep]
    return (xyz[order], rgb[order], c[order]) if return_conf else (xyz[order], rgb[order])


def save_point_ply(
    path: str | os.PathLike, xyz: torch.Tensor, rgb: torch.Tensor, conf: torch.Tensor | None = None
) -> Path:
    """Binary PLY point cloud with ``x y z`` (float32) and ``red green blue`` (uint8), plus ``confidence``
    (float32) when ``conf [M]`` is given (``vist3a view`` filters points by it)."""
    from plyfile import PlyData, PlyElement

    from vist3a.io_utils import atomic_path

    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    dtype += [("confidence", "<f4")] if conf is not None else []
    table = np.empty(xyz.shape[0], dtype=dtype)
    if conf is not None:
        table["confidence"] = conf.detach().cpu().float().numpy()
    xyz_np, rgb_np = xyz.detach().cpu().float().numpy(), rgb.detach().cpu().numpy()
    for i, name in enumerate(("x", "y", "z")):
        table[name] = xyz_np[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        table[name] = rgb_np[:, i]
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(table, "vertex")], text=False, byte_order="<").write(str(tmp))
    return path


def save_depth_pngs(folder: str | os.PathLike, depth: torch.Tensor) -> tuple[float, float]:
    """Colour-mapped depth ``[V, H, W]`` -> ``folder/000.png ...``; returns the (near, far) range used
    (2nd / 98th percentile over all views, so outliers do not flatten the colours)."""
    import imageio.v3 as iio
    from matplotlib import colormaps

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = depth.detach().float().cpu()
    finite = d[torch.isfinite(d)]
    if finite.numel() == 0:
        near, far = 0.0, 1.0
    else:
        near, far = (float(x) for x in torch.quantile(finite[:1_000_000], torch.tensor([0.02, 0.98])))
    span = max(far - near, 1e-12)
    cmap = colormaps["turbo"]
    for i, view in enumerate(d):
        normed = ((view - near) / span).clamp(0, 1).nan_to_num(0.0).numpy()
        iio.imwrite(folder / f"{i:03d}.png", (cmap(normed)[..., :3] * 255).astype(np.uint8))
    return near, far


# ----------------------------------------------------------------------------- orchestration
@dataclass
class ReconstructionSummary:
    """What :func:`reconstruct` wrote."""

    out_dir: Path
    num_views: int
    image_hw: tuple[int, int]
    num_primitives: int
    files: list[str]


def load_model(kind: str, weights: str | None, device: torch.device) -> torch.nn.Module:
    """``weights``: Hub repo id or folder (``None``: the official release), or ``"random-tiny"``."""
    from vist3a.recon import anysplat_from_pretrained, random_tiny_model, vggt_from_pretrained

    if kind not in DEFAULT_SIZE:
        raise UserInputError(f"--model must be one of {sorted(DEFAULT_SIZE)}, got {kind!r}")
    if weights == "random-tiny":
        logger.warning("using a tiny *random* %s model: the output is meaningless (for tests and demos)", kind)
        return random_tiny_model(kind).to(device)
    loader = vggt_from_pretrained if kind == "vggt" else anysplat_from_pretrained
    return loader(weights, device=device) if weights else loader(device=device)


def _write_flythrough(path: Path, gaussians, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int,
                      num_frames: int) -> None:
    """Render ``gaussians`` along a smooth path through the predicted cameras and write a video."""
    from vist3a.cameras import K_from_edge_convention, interpolate_poses, invert_rigid, to_homogeneous
    from vist3a.media import write_video
    from vist3a.splats.flythrough import render_frames

    c2w = to_homogeneous(invert_rigid(w2c.float().cpu()))
    path_w2c = to_homogeneous(invert_rigid(interpolate_poses(c2w, num_frames)))
    K_path = K_from_edge_convention(K.float().cpu().mean(0))
    frames = render_frames(gaussians, path_w2c.to(gaussians.device), K_path.to(gaussians.device), width, height,
                           batch_size=num_frames if gaussians.device.type == "cuda" else 1, progress=False)
    write_video(path, frames.colors, fps=12.0)


def reconstruct(
    model: torch.nn.Module,
    views: torch.Tensor,
    out_dir: str | os.PathLike,
    autocast_dtype: torch.dtype | None = None,
    keep_fraction: float = 0.5,
    extra_meta: dict | None = None,
    flythrough_frames: int = 24,
    sh_degree: int | None = 3,
) -> ReconstructionSummary:
    """Run ``model`` (:class:`~vist3a.recon.VGGT` or :class:`~vist3a.recon.AnySplat`) on ``views [V, 3, H, W]``
    in ``[0, 1]`` and write the outputs to ``out_dir`` (replaced atomically); AnySplat also gets
    ``flythrough.mp4``, a smooth path through the predicted cameras (``flythrough_frames = 0`` skips it).
    ``scene.ply`` keeps SH bands up to ``sh_degree`` (``None``: all; AnySplat predicts 4, which current viewers
    reject); ``meta.json["sh"]`` reports what was dropped."""
    from vist3a.cameras import save_cameras_json
    from vist3a.io_utils import atomic_dir
    from vist3a.recon import VGGT, AnySplat

    if not isinstance(model, VGGT | AnySplat):
        raise ValueError(f"`model` must be a VGGT or AnySplat model, got {type(model).__name__}")
    device = next(model.parameters()).device
    images = views.to(device)[None]
    height, width = views.shape[-2:]
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None),
    ):
        out = model(images)
    meta = {
        "model": type(model).__name__,
        "num_views": int(views.shape[0]),
        "width": int(width),
        "height": int(height),
        **(extra_meta or {}),
    }
    with atomic_dir(out_dir) as tmp:
        cams = out.cameras
        save_cameras_json(tmp / "cameras.json", cams.w2c[0].float(), cams.K[0].float(), width, height)
        near, far = save_depth_pngs(tmp / "depth", out.depth[0])
        meta["depth_png_range"] = [near, far]
        if isinstance(model, AnySplat):
            from vist3a.splats.ply import save_ply
            from vist3a.splats.sh import resolve_sh_degree, sh_truncation_report

            gaussians = out.gaussians[0].detach().to(device="cpu", dtype=torch.float32)
            keep = gaussians.is_finite()
            if not bool(keep.all()):
                logger.warning("dropping %d non-finite Gaussians", int((~keep).sum()))
                gaussians = gaussians[keep]
            degree = resolve_sh_degree(sh_degree, gaussians.sh_degree)
            save_ply(gaussians, tmp / "scene.ply", sh_degree=degree)
            meta["sh"] = sh_truncation_report(gaussians.sh, degree)
            count, main_file = len(gaussians), "scene.ply"
            if flythrough_frames > 0:
                _write_flythrough(tmp / "flythrough.mp4", gaussians.to(device), cams.w2c[0], cams.K[0],
                                  int(width), int(height), flythrough_frames)
        else:
            xyz, rgb, conf = fuse_point_maps(
                out.world_points[0], out.world_points_conf[0], views, keep_fraction, return_conf=True
            )
            save_point_ply(tmp / "points.ply", xyz, rgb, conf)
            count, main_file = xyz.shape[0], "points.ply"
            meta["keep_fraction"] = keep_fraction
        meta["num_primitives"] = int(count)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    logger.info("wrote %s (%d primitives) and %d other files to %s", main_file, count, len(files) - 1, out_dir)
    return ReconstructionSummary(Path(out_dir), int(views.shape[0]), (int(height), int(width)), int(count), files)
