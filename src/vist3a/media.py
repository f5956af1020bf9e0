"""Writing videos and colourising depth maps (rendered fly-throughs, previews).

Videos are H.264 ``.mp4`` through imageio-ffmpeg (``yuv420p``, which players expect and which needs even
frame sizes: odd sizes are padded by one edge row/column). Without an ffmpeg binary, or when asked for a
``.gif``, an animated GIF is written instead. Writes are atomic (:mod:`vist3a.io_utils`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from vist3a.io_utils import atomic_path

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif")


def ffmpeg_available() -> bool:
    """True if imageio-ffmpeg can find an ffmpeg executable."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def to_uint8_frames(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[T, H, W, 3]`` uint8, or float in [0, 1] (clipped), -> contiguous uint8 numpy array."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape [T, H, W, 3], got {list(frames.shape)}")
    if frames.shape[0] == 0:
        raise ValueError("frames must contain at least one frame, got 0")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames must be uint8 or float in [0, 1], got dtype {frames.dtype}")
    return np.ascontiguousarray((np.clip(np.nan_to_num(frames), 0.0, 1.0) * 255.0).round().astype(np.uint8))


def _pad_even(frames: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        logger.info(
            "H.264 needs even frame sizes: padding %dx%d -> %dx%d (edge pixels repeated)",
            frames.shape[2],
            frames.shape[1],
            frames.shape[2] + pad_w,
            frames.shape[1] + pad_h,
        )
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def write_video(path: str | os.PathLike, frames: torch.Tensor | np.ndarray, fps: float = 24.0) -> Path:
    """Write ``frames [T, H, W, 3]`` (uint8, or float in [0, 1]) as a video; returns the path written.

    ``.mp4`` -> H.264 via imageio-ffmpeg; if no ffmpeg is available a warning is logged and a ``.gif`` is
    written next to it instead (the returned path says which). ``.gif`` -> animated GIF.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"video path must end in one of {VIDEO_SUFFIXES}, got {str(path)!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    data = to_uint8_frames(frames)
    if suffix == ".mp4" and not ffmpeg_available():
        gif = path.with_suffix(".gif")
        logger.warning("no ffmpeg executable found (imageio-ffmpeg); writing %s instead of %s", gif, path)
        path, suffix = gif, ".gif"

    import imageio.v2 as imageio

    with atomic_path(path) as tmp:
        if suffix == ".mp4":
            writer = imageio.get_writer(
                str(tmp),
                format="FFMPEG",
                mode="I",
                fps=fps,
                codec="libx264",
                pixelformat="yuv420p",
                quality=8,
                macro_block_size=1,
                ffmpeg_log_level="error",
            )
            try:
                for frame in _pad_even(data):
                    writer.append_data(frame)
            finally:
                writer.close()
        else:
            imageio.mimwrite(str(tmp), list(data), format="GIF", duration=1000.0 / fps, loop=0)
    logger.info("wrote %d frames (%dx%d, %.3g fps) to %s", data.shape[0], data.shape[2], data.shape[1], fps, path)
    return path


def depth_to_colormap(
    depth: torch.Tensor | np.ndarray,
    *,
    valid: torch.Tensor | np.ndarray | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
    depth_range: tuple[float, float] | None = None,
    cmap: str = "turbo",
    near_is_bright: bool = True,
) -> np.ndarray:
    """Colourise depth ``[..., H, W]`` -> uint8 ``[..., H, W, 3]`` with one shared range for all images.

    The range is ``depth_range`` if given, else the ``percentiles`` of the valid depths (robust to a few
    far-away splats). Pixels are valid where depth is finite and > 0 (and ``valid``, e.g. ``alpha > 0.5``,
    is true); invalid pixels are black. By default near is mapped to the bright end of the colour map.
    """
    import matplotlib

    if isinstance(depth, torch.Tensor):
        depth = depth.detach().cpu().numpy()
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim < 2:
        raise ValueError(f"depth must have shape [..., H, W], got {list(depth.shape)}")
    mask = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        if isinstance(valid, torch.Tensor):
            valid = valid.detach().cpu().numpy()
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != depth.shape:
            raise ValueError(f"valid must have the shape of depth {list(depth.shape)}, got {list(valid.shape)}")
        mask &= valid
    if depth_range is not None:
        lo, hi = depth_range
    elif mask.any():
        lo, hi = np.percentile(depth[mask], percentiles)
    else:
        lo, hi = 0.0, 1.0
    if not hi > lo:
        hi = lo + 1e-6
    t = np.clip((np.where(mask, depth, lo) - lo) / (hi - lo), 0.0, 1.0)
    if near_is_bright:
        t = 1.0 - t
    rgb = matplotlib.colormaps[cmap](t)[..., :3]
    rgb = np.where(mask[..., None], rgb, 0.0)
    return (rgb * 255.0).round().astype(np.uint8)
