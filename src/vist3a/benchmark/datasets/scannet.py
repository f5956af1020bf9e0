"""ScanNet (v2) scenes as posed clips with depth, in the layout of the official SensReader export.

``python reader.py --filename SCENE.sens --output_path SCENE --export_color_images --export_depth_images
--export_poses --export_intrinsics`` (``ScanNet/SensReader/python``) writes::

    SCENE/color/0.jpg, 1.jpg, ...           colour frames (1296x968 in ScanNet v2)
    SCENE/depth/0.png, ...                  uint16 depth, millimetres (the .sens depth shift 1000), 0 = none
    SCENE/pose/0.txt, ...                   4x4 camera-to-world (OpenCV axes), metres; -inf rows: tracking lost
    SCENE/intrinsic/intrinsic_depth.txt     4x4, the depth camera's K in its top-left 3x3 (also _color, extrinsic_*)

``ROOT`` is one scene folder or a folder of them (searched recursively). As the public loaders (Spann3R, DUSt3R-style
datasets) do, the colour frames are resized to the depth maps' size and both use ``intrinsic_depth`` (pixel
centres at integer coordinates); without ``depth/`` the clips have cameras only, at the colour size with
``intrinsic_color``. Frames whose pose is not finite are left out.

Frames: the pose protocol of MonST3R and CUT3R (ATE / RPE-T / RPE-R) uses scenes ``scene0707_00`` ..
``scene0806_00`` and every 3rd of their first 270 frames (90 views). vist3a's defaults are that window (``span=270,
stride=3``), from which it takes ``num_frames`` evenly (first and last included): e.g. 13 of the 90.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from vist3a.benchmark.datasets.common import (
    first_clips,
    make_clip,
    no_sequences,
    read_depth_png,
    read_matrix,
    rigid_c2w,
)
from vist3a.data.clip import MultiViewClip
from vist3a.data.media import natural_key, read_image
from vist3a.errors import UserInputError
from vist3a.evaluation.views import evenly_spaced

logger = logging.getLogger(__name__)

LAYOUT = ("SCENE/color/N.jpg, SCENE/depth/N.png, SCENE/pose/N.txt and SCENE/intrinsic/intrinsic_depth.txt "
          "(ScanNet's SensReader export)")
PROTOCOL_SPAN = 270  # MonST3R / CUT3R: the first 90 * 3 frames ...
PROTOCOL_STRIDE = 3  # ... every 3rd of them


def find_scenes(root: Path) -> list[Path]:
    """Folders at or below ``root`` holding ``color/`` and ``pose/``, in natural order."""
    found = []
    for folder, dirs, _ in os.walk(root):
        if "color" in dirs and "pose" in dirs:
            found.append(Path(folder))
            dirs[:] = []
    return sorted(found, key=natural_key)


def frame_ids(scene: Path) -> list[int]:
    """The frame numbers of ``SCENE/color/N.jpg``, ascending."""
    return sorted(int(p.stem) for p in (scene / "color").glob("*.jpg") if p.stem.isdigit())


def pick_valid_frames(scene: Path, ids: list[int], num_frames: int, stride: int, span: int | None
                      ) -> list[tuple[int, torch.Tensor]] | None:
    """``num_frames`` ``(frame number, c2w)`` evenly over the keyframes ``ids[0:span:stride]`` whose pose is finite;
    None when too few have one."""
    window = ids[: span if span is not None else len(ids)][::stride]
    valid = []
    for frame in window:
        c2w = read_matrix(scene / "pose" / f"{frame}.txt")
        if bool(torch.isfinite(c2w).all()):
            valid.append((frame, c2w))
    if len(valid) < len(window):
        logger.info("%s: %d of %d keyframes have no pose (tracking lost), left out", scene, len(window) - len(valid),
                    len(window))
    if len(valid) < num_frames:
        return None
    return [valid[i] for i in evenly_spaced(len(valid), num_frames)]


def load_scene(scene: Path, picked: list[tuple[int, torch.Tensor]], size: int | None) -> MultiViewClip:
    """One clip of the frames ``picked`` (frame number, camera-to-world) of a ScanNet scene."""
    frames = torch.stack([read_image(scene / "color" / f"{frame}.jpg") for frame, _ in picked])
    c2w = torch.stack([rigid_c2w(c2w, scene / "pose" / f"{frame}.txt") for frame, c2w in picked])
    depth = None
    if (scene / "depth").is_dir():
        depth = torch.stack([read_depth_png(scene / "depth" / f"{frame}.png") for frame, _ in picked])
        K = read_matrix(scene / "intrinsic" / "intrinsic_depth.txt")[:3, :3]
        if frames.shape[-2:] != depth.shape[-2:]:
            antialias = frames.shape[-1] > depth.shape[-1]
            frames = F.interpolate(frames, size=tuple(depth.shape[-2:]), mode="bilinear", align_corners=False,
                                   antialias=antialias).clamp(0.0, 1.0)
    else:
        logger.info("%s has no depth/: cameras only", scene)
        K = read_matrix(scene / "intrinsic" / "intrinsic_color.txt")[:3, :3]
    if not bool(torch.isfinite(K).all()) or float(K[0, 0]) <= 0:
        raise UserInputError(f"{scene / 'intrinsic'}: the intrinsics are not a camera matrix")
    meta = {"source": "scannet", "scene": scene.name, "frames": [frame for frame, _ in picked]}
    return make_clip(frames, c2w, K.expand(len(picked), 3, 3), depth, size, meta)


def scannet_clips(root: str | Path, num_clips: int, num_frames: int, size: int | None, stride: int = PROTOCOL_STRIDE,
                  span: int | None = PROTOCOL_SPAN) -> list[MultiViewClip]:
    """Up to ``num_clips`` clips, one per scene in natural order, each of ``num_frames`` frames picked as the module
    docstring says; scenes with too few posed keyframes are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise no_sequences("scannet", root, LAYOUT, "not a folder")
    if stride < 1:
        raise UserInputError(f"the keyframe stride must be >= 1, got {stride}")
    scenes = find_scenes(root)
    clips = first_clips(scenes, lambda scene: pick_valid_frames(scene, frame_ids(scene), num_frames, stride, span),
                        lambda scene, picks: load_scene(scene, picks, size), num_clips)
    if not clips:
        raise no_sequences("scannet", root, LAYOUT, "no scene found" if not scenes else
                           f"no scene with {num_frames} posed keyframes")
    return clips
