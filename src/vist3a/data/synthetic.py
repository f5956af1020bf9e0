"""``SyntheticClips``: captioned, posed clips with exact depth, rendered on the fly from the nano world."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from vist3a.data.clip import MultiViewClip
from vist3a.data.sampling import check_frame_choices, derive_rng, split_key
from vist3a.world import (
    CAMERA_PATH_KINDS,
    MarchSettings,
    Scene,
    caption_for_scene,
    describe_composition,
    render_clip,
    render_clips,
    sample_camera_path,
    sample_scene,
)
from vist3a.world.splits import SPLITS, sample_composition


@dataclass
class _Item:
    index: int
    scene: Scene
    kind: str
    w2c: torch.Tensor
    K: torch.Tensor
    caption: str


class SyntheticClips(Dataset):
    """``num_clips`` procedural clips; item ``i`` is a pure function of ``(seed, split, i)`` (and ``T``).

    For each item: a scene of ``split`` ("train" never shows a held-out composition, "heldout" shows only
    those; see :mod:`vist3a.world.splits`), a camera path of a kind drawn from ``camera_kinds`` looking
    at the scene, the rendered frames and z-depth, and a caption (with a camera-motion phrase with
    probability ``camera_phrase_prob``). The scene is drawn before the path, so asking for another frame
    count (an ``(index, T)`` key) changes the path's sampling but not the scene. A DataLoader fetches a batch
    through :meth:`__getitems__`, which renders its clips together when ``device`` is a GPU.

    Args:
        num_clips: dataset length.
        num_frames: frames per clip (4n+1) or candidate counts drawn per item.
        size: square image size in pixels.
        seed: base seed.
        split: "train" or "heldout".
        device: where to render; clips come back on it ("cuda" needs ``num_workers=0`` in a DataLoader).
        camera_kinds: path kinds to draw from (:data:`~vist3a.world.CAMERA_PATH_KINDS`).
        fov_range: horizontal field of view range (degrees).
        ssaa: supersampling factor per axis (odd).
        shadows: trace soft shadows.
        camera_phrase_prob: probability that the caption names the camera motion.
        direction_focus: probability that an item's scene has two objects related by "left of"/"right of" (a
            curriculum for the relation); 0 keeps every item as it was.
        settings: ray-marching settings.
        render_batch_size: most clips rendered in one call by :meth:`__getitems__`.
        batch_render: whether :meth:`__getitems__` renders clips together; None = only off the CPU (on a CPU
            one scene at a time is cheaper: a batch evaluates every shape present in an object slot).

    Items: :class:`MultiViewClip` with ``frames [T, 3, S, S]``, ``depth [T, S, S]`` (``+inf`` = background),
    ``w2c``, ``K`` (float32), ``caption``, and ``meta`` holding ``scene_json``
    (:meth:`~vist3a.world.Scene.from_json` restores it), ``composition`` (canonical wording),
    ``camera_kind``, ``split``, ``seed`` and ``index``.
    """

    def __init__(
        self,
        num_clips: int,
        num_frames: int | Sequence[int] = 13,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        device: str | torch.device = "cpu",
        camera_kinds: Sequence[str] = CAMERA_PATH_KINDS,
        fov_range: tuple[float, float] = (40.0, 60.0),
        ssaa: int = 1,
        shadows: bool = True,
        camera_phrase_prob: float = 0.5,
        direction_focus: float = 0.0,
        settings: MarchSettings | None = None,
        render_batch_size: int = 32,
        batch_render: bool | None = None,
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"`num_clips` must be >= 1, got {num_clips}")
        if size < 1:
            raise ValueError(f"`size` must be >= 1 pixel, got {size}")
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}")
        unknown = [k for k in camera_kinds if k not in CAMERA_PATH_KINDS]
        if unknown or not camera_kinds:
            raise ValueError(f"`camera_kinds` must be a non-empty subset of {CAMERA_PATH_KINDS}, got {camera_kinds}")
        self.num_clips, self.size, self.seed, self.split = num_clips, size, seed, split
        self.num_frames = check_frame_choices(num_frames)
        self.device = torch.device(device)
        self.camera_kinds = tuple(camera_kinds)
        self.fov_range, self.ssaa, self.shadows = fov_range, ssaa, shadows
        self.camera_phrase_prob = camera_phrase_prob
        if not 0.0 <= direction_focus <= 1.0:
            raise ValueError(f"`direction_focus` must be in [0, 1], got {direction_focus}")
        self.direction_focus = direction_focus
        self.settings = settings
        if render_batch_size < 1:
            raise ValueError(f"`render_batch_size` must be >= 1, got {render_batch_size}")
        self.render_batch_size = render_batch_size
        self.batch_render = self.device.type != "cpu" if batch_render is None else batch_render

    def __len__(self) -> int:
        return self.num_clips

    def _prepare(self, key: int | tuple[int, int]) -> _Item:
        """Everything of an item but its pixels: scene, path, caption (one seeded RNG, in this order)."""
        index = key[0] if isinstance(key, tuple) else key
        index, num_frames = split_key(
            key, self.num_frames, derive_rng(self.seed, "num_frames", self.split, index % len(self)), len(self)
        )
        rng = derive_rng(self.seed, "synthetic", self.split, index)
        composition = None
        if self.direction_focus > 0.0 and rng.random() < self.direction_focus:
            composition = sample_composition(rng, self.split, num_objects=2, require_direction=True)
        scene = sample_scene(rng, composition, split=self.split)
        kind = rng.choice(self.camera_kinds)
        w2c, K = sample_camera_path(
            kind, num_frames, rng, height=self.size, width=self.size, target=scene.centre,
            scene_radius=scene.radius, fov_range=self.fov_range,
        )
        caption = caption_for_scene(scene, rng, camera_kind=kind, camera_phrase_prob=self.camera_phrase_prob)
        return _Item(index, scene, kind, w2c, K, caption)

    def _finish(self, item: _Item, frames: torch.Tensor, depth: torch.Tensor) -> MultiViewClip:
        return MultiViewClip(
            frames=frames,
            w2c=item.w2c.to(device=self.device, dtype=torch.float32),
            K=item.K.to(device=self.device, dtype=torch.float32),
            depth=depth,
            caption=item.caption,
            meta={
                "source": "synthetic",
                "index": item.index,
                "seed": self.seed,
                "split": self.split,
                "camera_kind": item.kind,
                "composition": describe_composition(item.scene.composition),
                "scene_json": item.scene.to_json(),
            },
        )

    def _render_kwargs(self) -> dict:
        return {"device": self.device, "ssaa": self.ssaa, "shadows": self.shadows, "settings": self.settings}

    def __getitem__(self, key: int | tuple[int, int]) -> MultiViewClip:
        item = self._prepare(key)
        frames, depth = render_clip(item.scene, item.w2c, item.K, self.size, self.size, **self._render_kwargs())
        return self._finish(item, frames, depth)

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[MultiViewClip]:
        """Items for a DataLoader batch. With ``batch_render`` (default off the CPU), clips of equal length are
        rendered together, up to ``render_batch_size`` per call (a lone clip leaves a GPU idle); the clips equal
        those of :meth:`__getitem__` up to float rounding."""
        items = [self._prepare(k) for k in keys]
        if not self.batch_render:
            return [
                self._finish(it, *render_clip(it.scene, it.w2c, it.K, self.size, self.size, **self._render_kwargs()))
                for it in items
            ]
        out: list[MultiViewClip | None] = [None] * len(items)
        by_length: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            by_length.setdefault(it.w2c.shape[0], []).append(i)
        for group in by_length.values():
            for start in range(0, len(group), self.render_batch_size):
                chunk = group[start : start + self.render_batch_size]
                frames, depth = render_clips(
                    [items[i].scene for i in chunk],
                    torch.stack([items[i].w2c for i in chunk]),
                    torch.stack([items[i].K for i in chunk]),
                    self.size,
                    self.size,
                    **self._render_kwargs(),
                )
                for j, i in enumerate(chunk):
                    out[i] = self._finish(items[i], frames[j], depth[j])
        return out
