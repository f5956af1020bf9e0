"""7-Scenes (Microsoft RGB-D Dataset 7-Scenes) as posed clips with depth, in its release layout.

Layout (the release's ``SCENE.zip`` files unpacked, then each ``seq-XX.zip`` inside them)::

    ROOT/chess/TestSplit.txt            lines "sequence1", "sequence2" -> seq-01, seq-02 (TrainSplit.txt alike)
    ROOT/chess/seq-01/frame-000000.color.png   640x480 RGB
    ROOT/chess/seq-01/frame-000000.depth.png   640x480 uint16, millimetres, 65535 = no reading
    ROOT/chess/seq-01/frame-000000.pose.txt    4x4 camera-to-world (OpenCV axes), metres

``ROOT`` may also be one scene folder or one ``seq-XX`` folder. The depth is the Kinect depth camera's and is not
registered to the colour camera; the release gives the depth camera's intrinsics (focal 585 px, principal point
(320, 240)) and none for colour. The public pointmap protocols (Spann3R, CUT3R, Pi3) evaluate on SimpleRecon's
pre-processing instead: ``frame-XXXXXX.depth.proj.png``, the depth re-projected into the colour camera, whose
intrinsics they take as focal 525 px, principal point (320, 240). So:

- with ``.depth.proj.png`` files (SimpleRecon's ``7scenes_preprocessing.py`` run on the release) they are used, with
  ``K`` = (525, 525, 320, 240), as the protocols do;
- with the release's ``.depth.png`` only, vist3a registers it itself: every depth pixel is lifted with the depth
  intrinsics and projected with the colour intrinsics (z-buffered), which corrects the two cameras' different
  fields of view but, unlike SimpleRecon, not the ~2.5 cm depth-to-colour baseline (no calibration of it ships
  with the release).

Both ways depth values of 0 and 65535 and beyond 10 m are "no depth" (the protocols' 10 m cut also drops the
re-projected 65535 readings). Intrinsics are stated for 640x480 and scaled to the frames read.

Frames (:func:`~vist3a.benchmark.datasets.common.pick_frames`): the protocols use the test split's sequences and
every ``k``-th frame of each (Spann3R k = 20, Pi3 40 and 200, CUT3R 200); vist3a takes ``num_frames`` frames evenly
over a sequence's keyframes (default stride 1: over the whole sequence, about every 83rd frame of a 1000-frame
sequence for 13 views). ``stride=200, num_frames=5`` is CUT3R's sparse selection on 1000-frame sequences; the
500-frame sequences then have 3 keyframes and are skipped (CUT3R evaluates them with 3 views).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from vist3a.benchmark.datasets.common import (
    first_clips,
    intrinsics,
    make_clip,
    no_sequences,
    pick_frames,
    read_depth_png,
    read_matrix,
    reproject_depth,
    rigid_c2w,
)
from vist3a.data.clip import MultiViewClip
from vist3a.data.media import natural_key, read_images

logger = logging.getLogger(__name__)

LAYOUT = ("SCENE/TestSplit.txt and SCENE/seq-XX/frame-XXXXXX.color.png, .depth.png (or SimpleRecon's "
          ".depth.proj.png), .pose.txt (the 7-Scenes release)")
SPLIT_FILES = {"test": "TestSplit.txt", "train": "TrainSplit.txt"}
RELEASE_SIZE = (480, 640)  # (H, W) the intrinsics below are stated for
DEPTH_INTRINSICS = (585.0, 585.0, 320.0, 240.0)  # the release's depth camera
COLOR_INTRINSICS = (525.0, 525.0, 320.0, 240.0)  # the colour camera as SimpleRecon / Spann3R / CUT3R take it
INVALID_DEPTH = 65535
MAX_DEPTH = 10.0  # metres


def scaled_intrinsics(values: tuple[float, float, float, float], height: int, width: int) -> torch.Tensor:
    """``K`` of :data:`RELEASE_SIZE` intrinsics for frames of ``height x width`` (pixel centres at integers)."""
    sy, sx = height / RELEASE_SIZE[0], width / RELEASE_SIZE[1]
    fx, fy, cx, cy = values
    return intrinsics(fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5)


def _is_sequence(folder: Path) -> bool:
    return any(folder.glob("frame-*.color.png"))


def split_sequences(scene: Path, split: str) -> list[Path]:
    """The sequence folders of one scene in ``split`` ("test", "train" or "all"); all of them, logged, when the
    split file is missing."""
    folders = sorted((p for p in scene.glob("seq-*") if p.is_dir()), key=natural_key)
    split_file = scene / SPLIT_FILES.get(split, "")
    if split == "all" or not split_file.is_file():
        if split != "all":
            logger.info("%s has no %s: using all its sequences", scene, split_file.name)
        return folders
    wanted = []
    for line in split_file.read_text().split():
        digits = re.sub(r"\D", "", line)
        if digits:
            wanted.append(scene / f"seq-{int(digits):02d}")
    return [p for p in wanted if p.is_dir()]


def find_sequences(root: Path, split: str = "test") -> list[Path]:
    """Sequence folders under ``root`` (the dataset root, one scene or one sequence), in natural order."""
    if split not in ("test", "train", "all"):
        raise ValueError(f"`split` must be 'test', 'train' or 'all', got {split!r}")
    if _is_sequence(root):
        return [root]
    scenes = [root] if any(root.glob("seq-*")) else sorted((p for p in root.iterdir() if p.is_dir()), key=natural_key)
    return [seq for scene in scenes for seq in split_sequences(scene, split) if _is_sequence(seq)]


def load_sequence(folder: Path, picks: list[int], size: int | None) -> MultiViewClip:
    """The frames ``picks`` (positions in the sequence's frame list) of one 7-Scenes sequence folder."""
    colors = sorted(folder.glob("frame-*.color.png"), key=natural_key)
    stems = [colors[i].name[: -len(".color.png")] for i in picks]
    frames = read_images([folder / f"{s}.color.png" for s in stems])
    height, width = frames.shape[-2:]
    K_color = scaled_intrinsics(COLOR_INTRINSICS, height, width)
    c2w = torch.stack([rigid_c2w(read_matrix(folder / f"{s}.pose.txt"), folder / f"{s}.pose.txt") for s in stems])
    registered = (folder / f"{stems[0]}.depth.proj.png").is_file()
    depths = []
    for stem in stems:
        if registered:
            depth = read_depth_png(folder / f"{stem}.depth.proj.png", invalid=INVALID_DEPTH, max_depth=MAX_DEPTH)
        else:
            raw = read_depth_png(folder / f"{stem}.depth.png", invalid=INVALID_DEPTH, max_depth=MAX_DEPTH)
            K_depth = scaled_intrinsics(DEPTH_INTRINSICS, *raw.shape)
            depth = reproject_depth(raw, K_depth, K_color, (height, width))
        depths.append(depth)
    depth = torch.stack(depths)
    if depth.shape[-2:] != (height, width):
        raise ValueError(f"{folder}: depth maps are {tuple(depth.shape[-2:])} but frames {(height, width)}")
    meta = {"source": "7scenes", "sequence": f"{folder.parent.name}/{folder.name}", "frames": stems,
            "depth": "depth.proj.png" if registered else "depth.png, registered by vist3a"}
    return make_clip(frames, c2w, K_color.expand(len(picks), 3, 3), depth, size, meta)


def seven_scenes_clips(root: str | Path, num_clips: int, num_frames: int, size: int | None, stride: int = 1,
                       split: str = "test") -> list[MultiViewClip]:
    """Up to ``num_clips`` clips, one per sequence of ``split`` in natural order (chess/seq-03, ...), each of
    ``num_frames`` frames picked as the module docstring says; sequences with too few keyframes are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise no_sequences("7scenes", root, LAYOUT, "not a folder")
    sequences = find_sequences(root, split)
    clips = first_clips(sequences, lambda folder: pick_frames(len(list(folder.glob("frame-*.color.png"))), num_frames,
                                                              stride),
                        lambda folder, picks: load_sequence(folder, picks, size), num_clips)
    if not clips:
        detail = f"no {split}-split sequence" if not sequences else f"no sequence with {num_frames} keyframes"
        raise no_sequences("7scenes", root, LAYOUT, detail)
    return clips
