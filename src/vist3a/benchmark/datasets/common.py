"""Pieces shared by the native loaders of the pointmap / pose benchmarks: which frames a clip shows, depth PNGs,
pose text files, and the assembly of a :class:`~vist3a.data.clip.MultiViewClip`.

Frame selection (:func:`pick_frames`): the public evaluation protocols take *keyframes* of a sequence, every
``stride``-th frame of its first ``span`` frames (e.g. Spann3R every 20th frame of a 7-Scenes test sequence, CUT3R
every 200th; MonST3R / CUT3R's ScanNet pose set every 3rd of the first 270). vist3a's video-latent decoders need
exactly ``num_frames = 4k + 1`` views, so a clip shows ``num_frames`` keyframes spread evenly over all of them
(first and last included). When a protocol's keyframe count is already ``4k + 1`` (CUT3R's 5 keyframes of a
1000-frame 7-Scenes sequence), ``stride`` and ``num_frames`` reproduce its selection exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vist3a.cameras import invert_rigid
from vist3a.data.clip import MultiViewClip, resize_and_crop
from vist3a.errors import UserInputError
from vist3a.evaluation.views import evenly_spaced

logger = logging.getLogger(__name__)


def keyframes(total: int, stride: int = 1, span: int | None = None) -> list[int]:
    """Frame indices ``0, stride, 2 stride, ...`` below ``min(total, span)`` (the protocols' keyframes)."""
    if stride < 1:
        raise UserInputError(f"the keyframe stride must be >= 1, got {stride}")
    return list(range(0, min(total, span) if span is not None else total, stride))


def pick_frames(total: int, num_frames: int, stride: int = 1, span: int | None = None) -> list[int] | None:
    """``num_frames`` of the :func:`keyframes` of a ``total``-frame sequence, evenly spaced, first and last
    included; None when there are fewer keyframes than ``num_frames`` (the caller skips the sequence)."""
    candidates = keyframes(total, stride, span)
    if len(candidates) < num_frames:
        return None
    return [candidates[i] for i in evenly_spaced(len(candidates), num_frames)]


def read_depth_png(path: Path, scale: float = 1000.0, invalid: int | None = None,
                   max_depth: float | None = None) -> Tensor:
    """A 16-bit depth PNG -> z-depth ``[H, W]`` float32 in metres (value / ``scale``).

    Pixels holding 0, the sensor's ``invalid`` code (7-Scenes: 65535) or more than ``max_depth`` metres become 0,
    which :func:`~vist3a.data.clip.valid_depth` reads as "no geometry".
    """
    import imageio.v3 as iio

    try:
        raw = np.asarray(iio.imread(path))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot read depth image {path}: {exc}") from exc
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise UserInputError(f"{path}: expected a 16-bit single-channel depth PNG, got {raw.dtype} {raw.shape}")
    bad = raw == 0
    if invalid is not None:
        bad |= raw == invalid
    depth = torch.from_numpy(raw.astype(np.float32) / scale)
    if max_depth is not None:
        bad |= depth.numpy() > max_depth
    return depth.masked_fill(torch.from_numpy(bad), 0.0)


def read_matrix(path: Path, rows: int = 4, cols: int = 4) -> Tensor:
    """A whitespace-separated ``rows x cols`` matrix text file (a pose or intrinsics file) as float64."""
    try:
        values = [float(v) for v in path.read_text().split()]
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot read the matrix in {path}: {exc}") from exc
    if len(values) != rows * cols:
        raise UserInputError(f"{path}: expected a {rows}x{cols} matrix ({rows * cols} numbers), got {len(values)}")
    return torch.tensor(values, dtype=torch.float64).reshape(rows, cols)


def rigid_c2w(c2w: Tensor, source: Path, atol: float = 1e-2) -> Tensor:
    """A camera-to-world ``[4, 4]`` with its rotation snapped to the nearest rotation matrix (pose files store a few
    digits); UserInputError if it is not finite or not a rotation within ``atol``."""
    if not bool(torch.isfinite(c2w).all()):
        raise UserInputError(f"{source}: the pose is not finite")
    rot = c2w[:3, :3]
    error = float((rot @ rot.T - torch.eye(3, dtype=rot.dtype)).abs().max())
    if error > atol or float(torch.det(rot)) <= 0:
        raise UserInputError(f"{source}: the pose's rotation is not a rotation (max |R R^T - I| = {error:.3g})")
    u, _, vt = torch.linalg.svd(rot)
    out = c2w.clone()
    out[:3, :3] = u @ vt
    out[3] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype)
    return out


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> Tensor:
    """Pixel intrinsics ``[3, 3]`` float64 (pixel centres at integer coordinates, vist3a's convention)."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def make_clip(frames: Tensor, c2w: Tensor, K: Tensor, depth: Tensor | None, size: int | None,
              meta: dict) -> MultiViewClip:
    """A clip from ``frames [T, 3, H, W]``, camera-to-world ``c2w [T, 4, 4]``, ``K [T, 3, 3]`` and z-``depth
    [T, H, W]`` (or None), centre-cropped and resized to ``size`` (None: as read)."""
    clip = MultiViewClip(frames=frames, w2c=invert_rigid(c2w).float(), K=K.float(),
                         depth=None if depth is None else depth.float(), meta=meta)
    return resize_and_crop(clip, size) if size is not None else clip


def reproject_depth(depth: Tensor, K_from: Tensor, K_to: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Z-depth ``[H, W]`` seen through ``K_from`` re-seen through ``K_to`` by a camera at the same place and
    orientation, on an ``out_hw`` grid: each valid pixel's point is projected and the nearest one per target pixel
    kept (a z-buffer); target pixels no point lands on are 0. Depth values are unchanged (same optical axis)."""
    height, width = depth.shape
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    ok = depth > 0
    z = depth.double()[ok]
    pix = torch.stack([u[ok], v[ok], torch.ones_like(z)], -1)
    rays = pix @ torch.linalg.inv(K_from.double()).T  # z = 1
    proj = rays @ K_to.double().T
    col, row = proj[:, 0].round().long(), proj[:, 1].round().long()
    inside = (col >= 0) & (col < out_hw[1]) & (row >= 0) & (row < out_hw[0])
    flat = torch.full((out_hw[0] * out_hw[1],), float("inf"), dtype=torch.float64)
    flat.scatter_reduce_(0, row[inside] * out_hw[1] + col[inside], z[inside], reduce="amin")
    return torch.where(torch.isfinite(flat), flat, torch.zeros_like(flat)).reshape(out_hw).float()


def first_clips(items: list[Path], pick: Callable[[Path], list[int] | None],
                load: Callable[[Path, list[int]], MultiViewClip], num_clips: int) -> list[MultiViewClip]:
    """Up to ``num_clips`` clips, one per item in order: ``load(item, pick(item))``; an item whose ``pick`` is None
    (too few keyframes) is skipped and logged. The one loop of the three dataset loaders."""
    clips: list[MultiViewClip] = []
    for item in items:
        picks = pick(item)
        if picks is None:
            logger.info("skipping %s: too few keyframes for the clip", item)
            continue
        clips.append(load(item, picks))
        if len(clips) == num_clips:
            break
    return clips


def no_sequences(kind: str, root: Path, layout: str, detail: str = "") -> UserInputError:
    """The one-line error of a ``--data KIND:DIR`` folder that holds nothing usable, naming the expected layout."""
    return UserInputError(f"--data {kind}:{root}: {detail or 'no sequence found'}; expected {layout}")
