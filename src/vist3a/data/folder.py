"""``FolderClips``: clips from a folder of videos and/or image-sequence subfolders, without cameras."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from vist3a.data.clip import MultiViewClip
from vist3a.data.media import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    count_video_frames,
    list_images,
    natural_key,
    read_images,
    read_video_frames,
)
from vist3a.data.sampling import FrameSampledClips
from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)


class FolderClips(FrameSampledClips):
    """One item per video file (mp4, mov, webm, mkv, avi) or image-sequence subfolder (png/jpg frames in
    natural order) directly under ``root``; if ``root`` itself holds images, it is the single sequence.

    Each item is a :class:`MultiViewClip` of ``num_frames`` frames with ``w2c``/``K``/``depth`` None.

    Args:
        root: the folder.
        num_frames: frames per clip (4n+1), or candidate counts drawn per item; an ``(index, T)`` key (see
            :class:`~vist3a.data.sampling.EqualLengthBatchSampler`) overrides it.
        stride: frame step (or candidate steps) of a "window"; see
            :func:`~vist3a.data.sampling.sample_frame_indices`.
        mode: "window" (a random run of frames ``stride`` apart) or "spread" (evenly over the whole video).
        size: if given, every clip is centre-cropped and resized to ``size x size``.
        seed: the frames drawn for item ``i`` depend only on ``(seed, epoch, i)``.
        captions: optional ``{item name: caption}``; the name is the video's file name or the subfolder's name.
    """

    rng_stream = "folder"

    def __init__(
        self,
        root: str | Path,
        num_frames: int | Sequence[int] = 13,
        stride: int | Sequence[int] = 1,
        mode: str = "window",
        size: int | None = None,
        seed: int = 0,
        captions: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(num_frames, stride, mode, size, seed, captions)
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserInputError(f"clip folder {self.root} does not exist or is not a folder")
        # (name, path, image files or None for a video)
        self.items: list[tuple[str, Path, list[Path] | None]] = []
        for path in sorted(self.root.iterdir(), key=natural_key):
            if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                self.items.append((path.name, path, None))
            elif path.is_dir():
                images = list_images(path)
                if images:
                    self.items.append((path.name, path, images))
        own_images = list_images(self.root)
        if own_images and not self.items:
            self.items.append((self.root.name, self.root, own_images))
        if not self.items:
            raise UserInputError(
                f"{self.root} holds no videos ({', '.join(VIDEO_SUFFIXES)}) and no subfolders of images "
                f"({', '.join(IMAGE_SUFFIXES)})"
            )
        self._video_lengths: dict[int, int] = {}
        logger.info("FolderClips: %d sequences under %s", len(self.items), self.root)

    def __len__(self) -> int:
        return len(self.items)

    def sequence_path(self, index: int) -> Path:
        return self.items[index][1]

    def num_available(self, index: int) -> int:
        """Frame count of item ``index`` (decodes a video once, then cached)."""
        _, path, images = self.items[index]
        if images is not None:
            return len(images)
        if index not in self._video_lengths:
            self._video_lengths[index] = count_video_frames(path)
        return self._video_lengths[index]

    def __getitem__(self, key: int | tuple[int, int]) -> MultiViewClip:
        index, picked = self.pick_frames(key)
        name, path, images = self.items[index]
        frames = read_images([images[i] for i in picked]) if images is not None else read_video_frames(path, picked)
        clip = MultiViewClip(
            frames=frames,
            caption=self.captions.get(name),
            meta={"source": "folder", "name": name, "path": str(path), "frame_indices": picked},
        )
        return self.resized(clip)
