"""The multi-view clip: T frames of one static scene, with cameras, depth and a caption when known.

Every training stage of vist3a consumes :class:`MultiViewClip` (one sample) or :class:`ClipBatch` (a
stack of them). Conventions, as in :mod:`vist3a.cameras`:

- ``frames [T, 3, H, W]`` float RGB in [0, 1] (the Wan VAE wants [-1, 1]: convert at its door).
- ``w2c [T, 4, 4]`` OpenCV world-to-camera (x right, y down, z forward); ``K [T, 3, 3]`` pixel intrinsics
  with pixel centres at integer coordinates. Both None for clips without cameras (plain videos).
- ``depth [T, H, W]`` z-depth: the hit point's z in the camera frame (distance along the optical axis, not
  along the ray), same units as the ``w2c`` translation. Pixels without geometry (sky, background) hold
  ``+inf`` or ``0``: test validity with :func:`valid_depth`, never with a threshold of your own.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

WAN_TEMPORAL_COMPRESSION = 4  # Wan VAE `scale_factor_temporal`: T frames -> (T - 1) / 4 + 1 latent frames


def check_num_frames(num_frames: int, temporal_factor: int = WAN_TEMPORAL_COMPRESSION, round_up: bool = False,
                     name: str = "num_frames") -> int:
    """Return ``num_frames`` if a causal video VAE can encode it (``temporal_factor * k + 1``, k >= 0); else round
    it up to the next valid count (``round_up``, logged, never silent) or raise a ValueError naming ``name``.

    With Wan's factor 4 that is 1, 5, 9, 13, 17, 21, ... The one frame-count check of vist3a.
    """
    if isinstance(temporal_factor, bool) or not isinstance(temporal_factor, int) or temporal_factor < 1:
        raise ValueError(f"`temporal_factor` must be a positive int, got {temporal_factor!r}")
    t = temporal_factor
    head = (f"`{name}` must be {t}n+1 frames ({', '.join(str(t * k + 1) for k in range(5))}, ...) for a causal "
            f"video VAE with temporal compression {t}")
    try:
        count = operator.index(num_frames)
    except TypeError:
        count = None
    if isinstance(num_frames, bool) or count is None:
        raise ValueError(f"{head}: an int, got {num_frames!r}")
    if count < 1:
        raise ValueError(f"{head}: at least 1, got {count}")
    if (count - 1) % t == 0:
        return count
    valid = -(-(count - 1) // t) * t + 1
    if round_up:
        logger.warning("Adjusting %s %d -> %d (must be %dk+1)", name, count, valid, t)
        return valid
    raise ValueError(f"{head} ({t}k+1), got {count}; pass --round-frames (round_up=True) to use {valid}")


def valid_depth(depth: Tensor) -> Tensor:
    """Boolean mask of pixels with geometry: finite and > 0 (background is ``+inf`` or ``0``)."""
    return torch.isfinite(depth) & (depth > 0)


@dataclass
class MultiViewClip:
    """One clip; shapes and conventions in the module docstring. ``meta`` is JSON-friendly provenance
    (source, frame indices, scene description, ...)."""

    frames: Tensor
    w2c: Tensor | None = None
    K: Tensor | None = None
    depth: Tensor | None = None
    caption: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[1] != 3:
            raise ValueError(f"`frames` must be [T, 3, H, W], got {tuple(self.frames.shape)}")
        if not self.frames.is_floating_point():
            raise ValueError(f"`frames` must be a float tensor in [0, 1], got dtype {self.frames.dtype}")
        T, _, H, W = self.frames.shape
        if (self.w2c is None) != (self.K is None):
            raise ValueError("`w2c` and `K` must be given together (both or neither)")
        if self.w2c is not None and tuple(self.w2c.shape) != (T, 4, 4):
            raise ValueError(f"`w2c` must be [T, 4, 4] = {(T, 4, 4)}, got {tuple(self.w2c.shape)}")
        if self.K is not None and tuple(self.K.shape) != (T, 3, 3):
            raise ValueError(f"`K` must be [T, 3, 3] = {(T, 3, 3)}, got {tuple(self.K.shape)}")
        if self.depth is not None and tuple(self.depth.shape) != (T, H, W):
            raise ValueError(f"`depth` must be [T, H, W] = {(T, H, W)}, got {tuple(self.depth.shape)}")

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[2]

    @property
    def width(self) -> int:
        return self.frames.shape[3]

    @property
    def has_cameras(self) -> bool:
        return self.w2c is not None

    def to(self, device: str | torch.device) -> MultiViewClip:
        """A copy with every tensor on ``device``."""
        move = lambda t: None if t is None else t.to(device)
        return replace(self, frames=move(self.frames), w2c=move(self.w2c), K=move(self.K), depth=move(self.depth))

    def select(self, indices) -> MultiViewClip:
        """A clip of the frames ``indices`` (a list, range or 1-D index tensor), cameras and depth alike."""
        index = torch.as_tensor(list(indices) if not isinstance(indices, Tensor) else indices, dtype=torch.long)
        pick = lambda t: None if t is None else t[index.to(t.device)]
        return replace(self, frames=pick(self.frames), w2c=pick(self.w2c), K=pick(self.K), depth=pick(self.depth),
                       meta=dict(self.meta))


@dataclass
class ClipBatch:
    """``B`` clips of equal length and size: ``frames [B, T, 3, H, W]``, ``w2c [B, T, 4, 4]``,
    ``K [B, T, 3, 3]``, ``depth [B, T, H, W]`` (each None if the clips have none), per-clip captions and meta."""

    frames: Tensor
    w2c: Tensor | None
    K: Tensor | None
    depth: Tensor | None
    captions: list[str | None]
    meta: list[dict]

    def to(self, device: str | torch.device) -> ClipBatch:
        """A copy with every tensor on ``device``."""
        move = lambda t: None if t is None else t.to(device)
        return replace(self, frames=move(self.frames), w2c=move(self.w2c), K=move(self.K), depth=move(self.depth))


def collate_clips(clips: list[MultiViewClip]) -> ClipBatch:
    """Stack clips into a :class:`ClipBatch` (use as a DataLoader ``collate_fn``).

    All clips must have the same ``T, H, W``, and either all or none must have cameras (and depth); a
    ValueError names the first clip that differs. Group clips by length with
    :class:`~vist3a.data.sampling.EqualLengthBatchSampler` when the frame count varies.
    """
    if not clips:
        raise ValueError("`clips` is empty")
    ref = clips[0]
    for i, clip in enumerate(clips[1:], start=1):
        if clip.frames.shape != ref.frames.shape:
            raise ValueError(
                f"`clips` must share [T, 3, H, W]: clip 0 has {tuple(ref.frames.shape)}, clip {i} has "
                f"{tuple(clip.frames.shape)}; resize with resize_and_crop and group lengths with "
                "EqualLengthBatchSampler"
            )
        if clip.has_cameras != ref.has_cameras or (clip.depth is None) != (ref.depth is None):
            raise ValueError(f"`clips` must all have (or all lack) cameras and depth; clip {i} differs from clip 0")
    stack = lambda name: None if getattr(ref, name) is None else torch.stack([getattr(c, name) for c in clips])
    return ClipBatch(
        frames=stack("frames"),
        w2c=stack("w2c"),
        K=stack("K"),
        depth=stack("depth"),
        captions=[c.caption for c in clips],
        meta=[c.meta for c in clips],
    )


def crop_resize_intrinsics(K: Tensor, crop_xy: tuple[int, int], scale_xy: tuple[float, float]) -> Tensor:
    """Intrinsics ``[..., 3, 3]`` after cropping at pixel offset ``(x0, y0)`` and resizing by ``(sx, sy)``.

    Pixel centres sit at integer coordinates, so a pixel's *edge* coordinate is ``u + 0.5``; resizing scales
    edges: ``u' + 0.5 = (u - x0 + 0.5) * sx``. Hence ``cx' = (cx - x0 + 0.5) * sx - 0.5`` and ``fx' = fx * sx``.
    """
    x0, y0 = crop_xy
    sx, sy = scale_xy
    out = K.clone()
    out[..., 0, 0] = K[..., 0, 0] * sx
    out[..., 0, 1] = K[..., 0, 1] * sx
    out[..., 0, 2] = (K[..., 0, 2] - x0 + 0.5) * sx - 0.5
    out[..., 1, 1] = K[..., 1, 1] * sy
    out[..., 1, 2] = (K[..., 1, 2] - y0 + 0.5) * sy - 0.5
    return out


def resize_and_crop(clip: MultiViewClip, size: int) -> MultiViewClip:
    """Centre-crop ``clip`` to a square and resize it to ``size x size``, keeping ``K`` consistent.

    Used to make both the VAE input (e.g. 512) and the 3D model input (e.g. 448) from one clip. Frames are
    resized bilinearly with antialiasing; depth by nearest neighbour ("nearest-exact"), so z-values are never
    averaged across object edges and background stays background; depth values themselves are unchanged
    (cropping and resizing do not move the camera). ``w2c`` is unchanged. Returns a new clip; ``meta``
    gains ``"crop_resize": [x0, y0, crop_side, size]``.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"`size` must be a positive integer (pixels), got {size!r}")
    H, W = clip.height, clip.width
    side = min(H, W)
    y0, x0 = (H - side) // 2, (W - side) // 2
    frames = clip.frames[:, :, y0 : y0 + side, x0 : x0 + side]
    if side != size:
        antialias = size < side
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
        frames = frames.clamp(0.0, 1.0)
    depth = None
    if clip.depth is not None:
        depth = clip.depth[:, y0 : y0 + side, x0 : x0 + side]
        if side != size:
            depth = F.interpolate(depth[:, None], size=(size, size), mode="nearest-exact")[:, 0]
    K = None
    if clip.K is not None:
        scale = size / side
        K = crop_resize_intrinsics(clip.K, (x0, y0), (scale, scale))
    meta = dict(clip.meta)
    meta["crop_resize"] = [x0, y0, side, size]
    return replace(clip, frames=frames.contiguous(), depth=None if depth is None else depth.contiguous(), K=K,
                   meta=meta)
