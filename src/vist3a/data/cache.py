"""Training data of the nano recipes: synthetic clips rendered once into an in-memory cache on the device.

A 10-minute GPU run cannot afford to wait for the ray-caster at every step, so every stage renders
``num_clips`` clips of :class:`vist3a.data.SyntheticClips` up front (on the GPU when training there, with CPU
worker processes otherwise) and then samples random batches from memory. Frames are stored as uint8
(what a video file holds anyway), depth as float16 (``+inf`` = background survives the cast).

Any map-style dataset of :class:`vist3a.data.MultiViewClip` can replace the world (tests use a tiny analytic
scene); :func:`world_dataset` builds the default one.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from vist3a.data.clip import ClipBatch, MultiViewClip, collate_clips

logger = logging.getLogger(__name__)


def world_dataset(
    num_clips: int, num_frames: int, size: int, seed: int, split: str = "train", device: str | torch.device = "cpu",
    **kwargs: Any,
) -> Dataset:
    """The nano world as a dataset: :class:`vist3a.data.SyntheticClips` (``split`` "train" or "heldout").

    Held-out clips use a different seed stream *and* held-out compositions, so evaluation never sees a
    training scene. ``kwargs`` go to ``SyntheticClips`` (e.g. ``camera_phrase_prob=0.0`` for captions of the
    scene alone).
    """
    from vist3a.data import SyntheticClips

    return SyntheticClips(num_clips, num_frames=num_frames, size=size, seed=seed, split=split, device=device,
                          **kwargs)


@dataclass
class ClipCache:
    """``N`` clips held in memory (on one device).

    Attributes:
        frames: ``[N, T, 3, H, W]`` uint8 (RGB ``* 255``).
        depth: ``[N, T, H, W]`` float16 z-depth (``+inf`` / 0 = no geometry) or None.
        w2c: ``[N, T, 4, 4]`` float32 OpenCV world-to-camera, or None.
        K: ``[N, T, 3, 3]`` float32 pixel intrinsics (pixel centres at integer coordinates), or None.
        captions: N captions (``""`` where a clip has none).
        compositions: N canonical descriptions from the clips' meta (``""`` if absent), for evaluation prompts.
    """

    frames: torch.Tensor
    depth: torch.Tensor | None
    w2c: torch.Tensor | None
    K: torch.Tensor | None
    captions: list[str]
    compositions: list[str]

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def device(self) -> torch.device:
        return self.frames.device

    @classmethod
    def build(
        cls,
        dataset: Dataset,
        num_clips: int | None = None,
        device: str | torch.device = "cpu",
        chunk_size: int = 16,
        num_workers: int = 0,
        desc: str = "rendering clips",
        progress: bool = True,
    ) -> ClipCache:
        """Render the first ``num_clips`` items of ``dataset`` (all if None) into a cache on ``device``.

        ``num_workers > 0`` renders in background processes (CPU datasets only; a dataset that renders on CUDA
        must use 0).
        """
        total = len(dataset) if num_clips is None else int(num_clips)
        if total < 1 or total > len(dataset):
            raise ValueError(f"`num_clips` must be in [1, {len(dataset)}] (the dataset length), got {num_clips}")
        loader = DataLoader(
            Subset(dataset, range(total)),
            batch_size=chunk_size,
            num_workers=num_workers,
            collate_fn=collate_clips,
            persistent_workers=False,
        )
        parts: list[ClipBatch] = []
        with tqdm(total=total, desc=desc, unit="clip", disable=not progress, leave=False) as bar:
            for batch in loader:
                parts.append(_compact(batch, device))
                bar.update(batch.frames.shape[0])
        return cls._concat(parts)

    @classmethod
    def from_clips(cls, clips: Sequence[MultiViewClip], device: str | torch.device = "cpu") -> ClipCache:
        """A cache of already-made clips (tests, small evaluation sets)."""
        return cls._concat([_compact(collate_clips(list(clips)), device)])

    @classmethod
    def from_batches(cls, parts: Sequence[ClipBatch], device: str | torch.device = "cpu") -> ClipCache:
        """A cache on ``device`` of batches already in storage form (what a :class:`ClipStream` delivers)."""
        if not parts:
            raise ValueError("`parts` is empty: a clip cache needs at least one batch")
        if any(p.frames.dtype != torch.uint8 for p in parts):
            raise ValueError("`parts` must be in storage form (uint8 frames), as ClipStream.poll() returns them")
        return cls._concat([p.to(device) for p in parts])

    @classmethod
    def _concat(cls, parts: list[ClipBatch]) -> ClipCache:
        cat = lambda name: None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts])
        captions = [c or "" for p in parts for c in p.captions]
        compositions = [str(m.get("composition", "")) for p in parts for m in p.meta]
        return cls(cat("frames"), cat("depth"), cat("w2c"), cat("K"), captions, compositions)

    def batch(self, indices: Sequence[int] | torch.Tensor) -> ClipBatch:
        """Clips ``indices`` as a float :class:`ClipBatch` (frames in [0, 1], depth float32) on the cache device."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        pick = lambda t: None if t is None else t[index]
        rows = index.tolist()
        return ClipBatch(
            frames=self.frames[index].float() / 255.0,
            w2c=pick(self.w2c),
            K=pick(self.K),
            depth=None if self.depth is None else self.depth[index].float(),
            captions=[self.captions[i] for i in rows],
            meta=[{"composition": self.compositions[i], "cache_index": i} for i in rows],
        )

    def __getitem__(self, index: int) -> MultiViewClip:
        """Clip ``index`` as a :class:`MultiViewClip` (float frames), so the cache is a clip ``Sequence`` for
        code that takes datasets (e.g. the stitching search and fine-tuning)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip index {index} out of range for a cache of {len(self)} clips")
        batch = self.batch([index % len(self)])
        first = lambda t: None if t is None else t[0]
        return MultiViewClip(frames=batch.frames[0], w2c=first(batch.w2c), K=first(batch.K), depth=first(batch.depth),
                             caption=batch.captions[0], meta=batch.meta[0])

    def sample(self, batch_size: int, generator: torch.Generator) -> ClipBatch:
        """``batch_size`` distinct random clips (with replacement when the cache is smaller)."""
        n = len(self)
        if batch_size <= n:
            index = torch.randperm(n, generator=generator)[:batch_size]
        else:
            index = torch.randint(n, (batch_size,), generator=generator)
        return self.batch(index)


class ClipStream:
    """Clips ``start .. start + count - 1`` of ``dataset``, rendered by background worker processes while
    training runs; :meth:`poll` collects what has arrived without waiting.

    A 10-minute GPU run that renders its training set up front trains on a few thousand scenes over and
    over; a stream keeps adding unseen scenes at the rate the CPU cores can render them. Batches arrive in
    storage form (:class:`ClipCache`'s uint8 frames, float16 depth) on the CPU. Use as a context manager
    (or call :meth:`close`): the workers stop with it.
    """

    def __init__(self, dataset: Dataset, start: int, count: int, num_workers: int = 8, chunk_size: int = 16,
                 max_pending: int = 256) -> None:
        if count < 1 or start < 0 or start + count > len(dataset):
            raise ValueError(f"clips {start}..{start + count - 1} are not all in a dataset of {len(dataset)}")
        self._queue: queue.Queue[ClipBatch] = queue.Queue(maxsize=max_pending)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.received = 0
        loader = DataLoader(Subset(dataset, range(start, start + count)), batch_size=chunk_size,
                            num_workers=num_workers, collate_fn=collate_clips)
        self._thread = threading.Thread(target=self._produce, args=(loader,), name="clip-stream", daemon=True)
        self._thread.start()

    def _produce(self, loader: DataLoader) -> None:
        try:
            for batch in loader:
                item = _compact(batch, "cpu")
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as err:  # re-raised in the training process by poll()
            self._error = err

    def poll(self) -> list[ClipBatch]:
        """The batches rendered since the last call (possibly none); re-raises a worker's error."""
        if self._error is not None:
            raise RuntimeError(f"rendering streamed clips failed: {self._error}") from self._error
        batches = []
        while True:
            try:
                batches.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self.received += sum(b.frames.shape[0] for b in batches)
        return batches

    @property
    def finished(self) -> bool:
        """True once every clip was rendered (or the stream was closed) and nothing is left to poll."""
        return not self._thread.is_alive() and self._queue.empty()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30.0)

    def __enter__(self) -> ClipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mirror_batch(batch: ClipBatch) -> ClipBatch:
    """The left-right mirror image of every clip of ``batch``: frames and depth flipped along the width, cameras
    mirrored with them (``w2c' = S w2c S``, ``S = diag(-1, 1, 1, 1)``: a proper rotation again; principal point
    ``cx' = W - 1 - cx``), "left"/"right" swapped in captions and compositions
    (:func:`vist3a.world.captions.mirror_caption`). A world point mirrored across ``x = 0`` projects
    through the mirrored camera to the mirrored pixel, so the result is a valid clip of the mirrored scene.
    """
    from dataclasses import replace

    from vist3a.world.captions import mirror_caption

    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    w2c = None if batch.w2c is None else flip.to(batch.w2c) @ batch.w2c @ flip.to(batch.w2c)
    K = None
    if batch.K is not None:
        K = batch.K.clone()
        K[..., 0, 2] = batch.frames.shape[-1] - 1 - batch.K[..., 0, 2]
    meta = [dict(m, composition=mirror_caption(m["composition"])) if "composition" in m else dict(m)
            for m in batch.meta]
    return replace(batch, frames=batch.frames.flip(-1), depth=None if batch.depth is None else batch.depth.flip(-1),
                   w2c=w2c, K=K, captions=[None if c is None else mirror_caption(c) for c in batch.captions],
                   meta=meta)


def _compact(batch: ClipBatch, device: str | torch.device) -> ClipBatch:
    """Storage form of a batch: uint8 frames, float16 depth, float32 cameras, on ``device``."""
    frames = (batch.frames.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    depth = None if batch.depth is None else batch.depth.to(torch.float16)
    move = lambda t, dtype=None: None if t is None else t.to(device=device, dtype=dtype)
    return ClipBatch(
        frames=move(frames),
        w2c=move(batch.w2c, torch.float32),
        K=move(batch.K, torch.float32),
        depth=move(depth),
        captions=list(batch.captions),
        meta=list(batch.meta),
    )


def _usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def make_caches(
    num_train: int,
    num_eval: int,
    num_frames: int,
    size: int,
    seed: int,
    device: torch.device,
    num_workers: int = 0,
    render_device: str | torch.device = "cpu",
    train_dataset: Dataset | None = None,
    eval_dataset: Dataset | None = None,
    progress: bool = True,
) -> tuple[ClipCache, ClipCache]:
    """Train and held-out caches on ``device``. Datasets default to the world, rendered on ``render_device``
    (on CPU with ``num_workers`` processes, at most one per core: the ray-caster is CPU-bound, more only cost
    start-up and memory; on CUDA in this process); pass others to override (tests)."""
    render_device = torch.device(render_device)
    workers = 0 if render_device.type == "cuda" else min(num_workers, _usable_cores())
    if train_dataset is None:
        train_dataset = world_dataset(num_train, num_frames, size, seed, "train", render_device)
    if eval_dataset is None:
        eval_dataset = world_dataset(num_eval, num_frames, size, seed + 1_000_003, "heldout", render_device)
    train = ClipCache.build(train_dataset, num_train, device, num_workers=workers, desc="train clips",
                            progress=progress)
    held = ClipCache.build(eval_dataset, num_eval, device, num_workers=workers, desc="held-out clips",
                           progress=progress)
    logger.info("cached %d training and %d held-out clips on %s", len(train), len(held), device)
    return train, held
