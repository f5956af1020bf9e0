"""Read a scene folder written by :func:`vist3a.scene.save_scene` back into a :class:`~vist3a.scene.Scene`.

Evaluation reuses scenes already on disk (``vist3a generate`` output, or an interrupted ``vist3a eval text3d``)
and ``vist3a refine`` works on them. The decoded frames come from ``frames.mp4``, so they carry the video codec's
loss (about 40 dB at the nano size); everything else is exact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vist3a.errors import UserInputError

REQUIRED_FILES = ("meta.json", "cameras.json", "frames.mp4")


def is_scene_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a complete saved scene (``save_scene`` writes folders atomically)."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def read_frames_video(path: Path) -> torch.Tensor:
    """All frames of a video -> ``[T, 3, H, W]`` float32 in ``[0, 1]``."""
    from vist3a.data.media import count_video_frames, read_video_frames

    return read_video_frames(path, range(count_video_frames(path)))


def load_scene_folder(folder: str | os.PathLike, splat_file: str = "scene.ply"):
    """The :class:`~vist3a.scene.Scene` saved in ``folder`` (Gaussians from ``splat_file``, if present; a pointmap
    scene's folder has ``points.ply`` instead, whose points come back as the very splats the scene rendered with,
    :func:`~vist3a.splats.points.point_cloud_splats` at the saved cameras, since the pointmaps are not saved)."""
    from vist3a.cameras import load_cameras_json
    from vist3a.scene import Scene
    from vist3a.splats import load_gaussians

    folder = Path(folder)
    if not is_scene_folder(folder):
        missing = [n for n in REQUIRED_FILES if not (folder / n).is_file()]
        raise UserInputError(f"'{folder}' is not a vist3a scene folder (missing {', '.join(missing)}); make one with "
                             "`vist3a generate`")
    meta = json.loads((folder / "meta.json").read_text())
    w2c, K, width, height = load_cameras_json(folder / "cameras.json")
    frames = read_frames_video(folder / "frames.mp4")
    if frames.shape[0] != w2c.shape[0]:
        raise UserInputError(f"'{folder}': frames.mp4 has {frames.shape[0]} frames but cameras.json {w2c.shape[0]}")
    splats = folder / splat_file
    gaussians = load_gaussians(splats) if splats.is_file() else None
    if gaussians is None and (folder / "points.ply").is_file():
        from vist3a.splats.ply import read_point_ply
        from vist3a.splats.points import point_cloud_splats

        xyz, rgb, _ = read_point_ply(folder / "points.ply")
        gaussians = point_cloud_splats(torch.from_numpy(xyz), torch.from_numpy(rgb), w2c.float(), K.float())
    return Scene(prompt=str(meta.get("prompt", "")), frames=frames, w2c=w2c.float(), K=K.float(),
                 image_size=(height, width), gaussians=gaussians, settings=dict(meta.get("settings", {})),
                 timings=dict(meta.get("timings_s", {})))
