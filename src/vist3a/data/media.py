"""Reading frames from image files and videos (imageio + its ffmpeg plugin) as float tensors in [0, 1].

The one frame reader of vist3a: the clip datasets and ``vist3a reconstruct`` both read through it (RGBA is
composited onto white, as the official VGGT / AnySplat loaders do; greyscale becomes RGB).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vist3a.errors import UserInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v", ".gif")


def natural_key(path: str | Path) -> list:
    """Sort key that orders ``frame_2`` before ``frame_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, in natural order."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                  key=natural_key)


def _to_tensor(array: np.ndarray, source: Path) -> Tensor:
    """``[H, W]``, ``[H, W, 3|4]`` uint8/uint16/float array -> ``[3, H, W]`` float32 in [0, 1] (alpha onto white)."""
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise UserInputError(f"{source}: expected an RGB(A) or greyscale image, got an array of shape {array.shape}")
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 65535.0
    else:
        scaled = array.astype(np.float32)
    if scaled.shape[-1] == 4:
        alpha = scaled[..., 3:]
        scaled = scaled[..., :3] * alpha + (1.0 - alpha)
    return torch.from_numpy(np.ascontiguousarray(scaled)).permute(2, 0, 1)


def to_uint8(frames: Tensor) -> np.ndarray:
    """``[..., 3, H, W]`` float in [0, 1] -> ``[..., H, W, 3]`` uint8 (exact for frames read from 8-bit files)."""
    return (frames.clamp(0, 1) * 255.0).round().to(torch.uint8).movedim(-3, -1).numpy()


def read_image(path: Path) -> Tensor:
    """One image file -> ``[3, H, W]`` float32 in [0, 1]."""
    import imageio.v3 as iio

    try:
        array = iio.imread(path)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot read image {path}: {exc}") from exc
    return _to_tensor(np.asarray(array), path)


def read_images(paths: Sequence[Path]) -> Tensor:
    """Image files of equal size -> ``[T, 3, H, W]``; UserInputError naming the first file of another size."""
    frames = [read_image(p) for p in paths]
    for p, f in zip(paths, frames, strict=True):
        if f.shape != frames[0].shape:
            raise UserInputError(f"{p} is {tuple(f.shape[1:])} but {paths[0]} is {tuple(frames[0].shape[1:])}; "
                                 "all frames of a clip must have one size")
    return torch.stack(frames)


def _open_video(path: Path):
    """An imageio FFMPEG reader of ``path`` (the caller closes it); UserInputError when it cannot be opened."""
    import imageio.v2 as iio2

    try:
        return iio2.get_reader(path, format="FFMPEG")
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserInputError(f"cannot open video {path}: {exc}") from exc


def count_video_frames(path: Path) -> int:
    """Number of decodable frames of a video file (decodes it: exact, unlike container metadata)."""
    with contextlib.closing(_open_video(path)) as reader:
        return int(reader.count_frames())


def read_video_frames(path: Path, indices: Sequence[int]) -> Tensor:
    """Frames ``indices`` (increasing or not) of a video -> ``[len(indices), 3, H, W]`` float32 in [0, 1].

    Decodes sequentially up to the largest index (no seeking: exact frames, at the cost of decoding the
    prefix). IndexError if the video is shorter than an index.
    """
    wanted = set(indices)
    last = max(wanted)
    got: dict[int, Tensor] = {}
    with contextlib.closing(_open_video(path)) as reader:
        for i, frame in enumerate(reader):
            if i in wanted:
                got[i] = _to_tensor(np.asarray(frame), path)
            if i >= last:
                break
    missing = sorted(wanted - got.keys())
    if missing:
        raise IndexError(f"{path} has fewer frames than needed: frame {missing[0]} is missing")
    return torch.stack([got[i] for i in indices])
