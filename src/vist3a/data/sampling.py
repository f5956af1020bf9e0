"""Seeded choices shared by the clip datasets: which frames, how many, and batches of equal length.

Datasets in :mod:`vist3a.data` accept either an index or an ``(index, num_frames)`` key, so that a batch
sampler can pick one frame count per batch (clips in a batch must have equal ``T``; the stitching fine-tune
draws it from {9, 13, 17, 21}). Every random choice comes from :func:`derive_rng` of (seed, epoch, index),
so an item is reproducible without any global RNG state, in any DataLoader worker.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence

from torch.utils.data import Dataset, Sampler

from vist3a.data.clip import MultiViewClip, check_num_frames, resize_and_crop

logger = logging.getLogger(__name__)

FRAME_MODES = ("window", "spread")


def derive_rng(seed: int | str, *keys: object) -> random.Random:
    """A ``random.Random`` seeded by ``"seed|key1|..."`` (string seeding is SHA-512 based: stable across
    runs, machines and ``PYTHONHASHSEED``)."""
    return random.Random("|".join(str(k) for k in (seed, *keys)))


def sample_frame_indices(
    num_available: int,
    num_frames: int,
    rng: random.Random,
    stride: int | Sequence[int] = 1,
    mode: str = "window",
) -> list[int]:
    """Indices of ``num_frames`` frames out of ``num_available``, in temporal order.

    ``mode="window"``: frames ``stride`` apart starting at a random frame; with several candidate strides one
    is drawn, and if it does not fit the largest candidate that fits is used (logged at debug level).
    ``mode="spread"``: evenly spaced over the whole sequence, first and last frame included (``stride``
    ignored). ValueError if even consecutive frames do not fit.
    """
    if mode not in FRAME_MODES:
        raise ValueError(f"`mode` must be one of {FRAME_MODES}, got {mode!r}")
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be >= 1, got {num_frames}")
    if num_available < num_frames:
        raise ValueError(f"need `num_frames` = {num_frames} frames but the sequence has only {num_available}")
    if mode == "spread":
        if num_frames == 1:
            return [0]
        return [round(i * (num_available - 1) / (num_frames - 1)) for i in range(num_frames)]
    strides = [stride] if isinstance(stride, int) else list(stride)
    if not strides or any(not isinstance(s, int) or s < 1 for s in strides):
        raise ValueError(f"`stride` must be a positive integer or a non-empty sequence of them, got {stride!r}")
    chosen = rng.choice(strides)
    span = lambda s: (num_frames - 1) * s + 1
    if span(chosen) > num_available:
        fitting = [s for s in strides if span(s) <= num_available] or [1]
        logger.debug("stride %d needs %d frames, only %d: using stride %d", chosen, span(chosen), num_available,
                     max(fitting))
        chosen = max(fitting)
    start = rng.randrange(num_available - span(chosen) + 1)
    return list(range(start, start + span(chosen), chosen))


def split_key(key: int | tuple[int, int], default_num_frames: int | Sequence[int], rng: random.Random,
              length: int) -> tuple[int, int]:
    """Resolve a dataset key to ``(index, num_frames)``: ``(i, T)`` as given, or ``i`` with ``T`` drawn from
    ``default_num_frames`` (an int, or candidates drawn with ``rng``). Negative indices count from the end."""
    if isinstance(key, tuple):
        index, num_frames = key
    else:
        index = key
        fixed = isinstance(default_num_frames, int)
        num_frames = default_num_frames if fixed else rng.choice(list(default_num_frames))
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    return index % length, check_num_frames(num_frames)


def check_frame_choices(num_frames: int | Sequence[int]) -> int | tuple[int, ...]:
    """Validate ``num_frames`` (an int or candidate counts, each 4n+1); returns it as int or tuple."""
    if isinstance(num_frames, int):
        return check_num_frames(num_frames)
    choices = tuple(num_frames)
    if not choices:
        raise ValueError("`num_frames` must be an int or a non-empty sequence of ints, got an empty sequence")
    return tuple(check_num_frames(n) for n in choices)


class FrameSampledClips(Dataset, ABC):
    """Base of the loaders that cut clips out of longer frame sequences (:class:`~vist3a.data.FolderClips`,
    :class:`~vist3a.data.DL3DVClips`): one place for which frames item ``i`` shows in an epoch and for the
    optional square resize, so that every loader draws its frames the same way.

    Subclasses set :attr:`rng_stream` (part of every item's seed: renaming it changes the frames drawn), and
    implement ``__len__``, :meth:`num_available` and :meth:`sequence_path`. Arguments as in the subclasses.
    """

    rng_stream: str = ""

    def __init__(
        self,
        num_frames: int | Sequence[int],
        stride: int | Sequence[int],
        mode: str,
        size: int | None,
        seed: int,
        captions: Mapping[str, str] | None,
    ) -> None:
        self.num_frames = check_frame_choices(num_frames)
        self.stride, self.mode, self.size, self.seed = stride, mode, size, seed
        self.captions = dict(captions or {})
        self.epoch = 0

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def num_available(self, index: int) -> int:
        """Frames in sequence ``index``."""

    @abstractmethod
    def sequence_path(self, index: int) -> object:
        """Where sequence ``index`` lives (named in errors)."""

    def set_epoch(self, epoch: int) -> None:
        """Draw different frames for every item in each epoch."""
        self.epoch = epoch

    def pick_frames(self, key: int | tuple[int, int]) -> tuple[int, list[int]]:
        """``(index, frame indices)`` for a key ``i`` or ``(i, T)``: a pure function of ``(seed, epoch, i)``."""
        index = key[0] if isinstance(key, tuple) else key
        rng = derive_rng(self.seed, self.rng_stream, self.epoch, index % len(self))
        index, num_frames = split_key(key, self.num_frames, rng, len(self))
        available = self.num_available(index)  # outside the try: its own errors name their file
        try:
            picked = sample_frame_indices(available, num_frames, rng, self.stride, self.mode)
        except ValueError as exc:
            raise ValueError(f"{self.sequence_path(index)}: {exc}") from exc
        return index, picked

    def resized(self, clip: MultiViewClip) -> MultiViewClip:
        """``clip`` centre-cropped and resized to ``size x size`` when ``size`` is set."""
        return resize_and_crop(clip, self.size) if self.size is not None else clip


class EqualLengthBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, num_frames)`` keys where every batch has one frame count drawn from ``choices``.

    Pass it as ``batch_sampler=`` to a ``DataLoader`` over any :mod:`vist3a.data` dataset. The order and the
    counts depend only on ``(seed, epoch)``; call :meth:`set_epoch` each epoch for a new order.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        choices: Sequence[int] = (9, 13, 17, 21),
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        if num_items < 1:
            raise ValueError(f"`num_items` must be >= 1, got {num_items}")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        self.choices = check_frame_choices(tuple(choices))
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.num_items, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = derive_rng(self.seed, "batches", self.epoch)
        order = list(range(self.num_items))
        if self.shuffle:
            rng.shuffle(order)
        for b in range(len(self)):
            chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
            num_frames = rng.choice(self.choices)
            yield [(i, num_frames) for i in chunk]
