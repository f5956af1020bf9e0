"""``DL3DVClips``: posed clips from DL3DV-10K (960P release) scenes in nerfstudio format.

Layout (one folder per scene, anywhere below ``root``; the scene is the folder holding ``transforms.json``)::

    <scene>/transforms.json     nerfstudio camera file
    <scene>/images_4/frame_00001.png ...   (960P release; "images/" for full resolution)

``transforms.json`` holds intrinsics ``fl_x, fl_y, cx, cy, w, h`` (global, or per frame, which wins) for
images of ``w x h`` pixels (DL3DV's are for the original resolution: they are rescaled to the image files
actually read), distortion ``k1, k2, p1, p2`` (ignored: DL3DV's frames are nearly undistorted and vist3a
has no distortion model), and per frame ``file_path`` and ``transform_matrix``: a camera-to-world matrix in
the **OpenGL/Blender** camera convention (x right, y up, z backward; the camera looks along ``-z``).

Conversions to vist3a (OpenCV, pixel centres at integer coordinates):

- pose: ``c2w_cv = c2w_gl @ diag(1, -1, -1, 1)`` (flip the camera's y and z axes, keep its centre), then
  ``w2c = inverse(c2w_cv)``. The world frame is kept as is (``applied_transform`` is ignored: it is a
  fixed change of world frame already applied to every pose).
- intrinsics: nerfstudio (like COLMAP) puts pixel centres at half-integers, so ``cx_vist3a = cx * sx - 0.5``
  with ``sx = image width / w`` (same for y), and ``fx_vist3a = fx * sx``.

Frames are ordered by file name (natural order), not by their order in the JSON, which need not be temporal.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from vist3a.cameras import invert_rigid
from vist3a.data.clip import MultiViewClip, crop_resize_intrinsics
from vist3a.data.media import natural_key, read_images
from vist3a.data.sampling import FrameSampledClips
from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

TRANSFORMS_FILE = "transforms.json"
OPENGL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def opengl_c2w_to_opencv_w2c(c2w_gl: Tensor, atol: float = 1e-3) -> Tensor:
    """OpenGL/Blender camera-to-world ``[..., 4, 4]`` -> OpenCV world-to-camera ``[..., 4, 4]``.

    ValueError if the rotation part is not orthonormal within ``atol`` (a scaled pose has no camera meaning).
    """
    rot = c2w_gl[..., :3, :3]
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    error = (rot @ rot.transpose(-1, -2) - eye).abs().amax().item() if rot.numel() else 0.0
    if error > atol:
        raise ValueError(f"`c2w_gl` rotation is not orthonormal (max |R R^T - I| = {error:.3g} > {atol})")
    c2w_cv = c2w_gl @ OPENGL_TO_OPENCV.to(dtype=c2w_gl.dtype, device=c2w_gl.device)
    return invert_rigid(c2w_cv)


def nerfstudio_intrinsics(frame: Mapping, defaults: Mapping) -> tuple[float, float, float, float, float, float]:
    """``(fx, fy, cx, cy, w, h)`` of one frame in nerfstudio's pixel convention (per-frame keys win)."""
    get = lambda k: frame.get(k, defaults.get(k))
    w, h = get("w"), get("h")
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None and get("camera_angle_x") is not None and w is not None:
        fx = 0.5 * float(w) / math.tan(0.5 * float(get("camera_angle_x")))
    if fy is None and get("camera_angle_y") is not None and h is not None:
        fy = 0.5 * float(h) / math.tan(0.5 * float(get("camera_angle_y")))
    fy = fy if fy is not None else fx
    cx = get("cx") if get("cx") is not None else (None if w is None else float(w) / 2.0)
    cy = get("cy") if get("cy") is not None else (None if h is None else float(h) / 2.0)
    if None in (fx, fy, cx, cy, w, h):
        raise ValueError("a frame lacks intrinsics: need fl_x (or camera_angle_x), w and h; fl_y, cx, cy optional")
    return float(fx), float(fy), float(cx), float(cy), float(w), float(h)


@dataclass
class _SceneRecord:
    files: list[Path]
    c2w_gl: Tensor  # [N, 4, 4]
    intrinsics: Tensor  # [N, 6]: fx, fy, cx, cy, w, h (nerfstudio convention)


def find_scenes(root: Path) -> list[Path]:
    """Folders below ``root`` (``root`` included) holding ``transforms.json``, natural order; image folders
    (names starting with "images") are not searched."""
    found = []
    for folder, dirs, files in os.walk(root):
        if TRANSFORMS_FILE in files:
            found.append(Path(folder))
            dirs[:] = []
        else:
            dirs[:] = [d for d in dirs if not d.startswith("images")]
    return sorted(found, key=natural_key)


class DL3DVClips(FrameSampledClips):
    """Posed clips from DL3DV scenes (see the module docstring for the layout and conventions).

    Args:
        root: a DL3DV folder (e.g. ``DL3DV-10K/1K``), a folder of such, or one scene.
        num_frames: frames per clip (4n+1) or candidates drawn per item; an ``(index, T)`` key overrides it.
        stride, mode: frame selection, see :func:`~vist3a.data.sampling.sample_frame_indices`.
        size: if given, clips are centre-cropped and resized to ``size x size`` (``K`` follows).
        seed: frames of item ``i`` depend only on ``(seed, epoch, i)``.
        image_dirs: image folders to try, in order (``file_path``'s folder is replaced by the first that
            exists): the 960P release ships ``images_4``.
        captions: optional ``{scene path relative to root: caption}``.

    Items are :class:`MultiViewClip` with ``frames``, ``w2c`` and ``K`` (float32), no depth.
    """

    rng_stream = "dl3dv"

    def __init__(
        self,
        root: str | Path,
        num_frames: int | Sequence[int] = 13,
        stride: int | Sequence[int] = 1,
        mode: str = "window",
        size: int | None = None,
        seed: int = 0,
        image_dirs: Sequence[str] = ("images_4", "images"),
        captions: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(num_frames, stride, mode, size, seed, captions)
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserInputError(f"DL3DV folder {self.root} does not exist or is not a folder")
        self.scenes = find_scenes(self.root)
        if not self.scenes:
            raise UserInputError(f"no scene with a {TRANSFORMS_FILE} found under {self.root}")
        self.image_dirs = tuple(image_dirs)
        self._records: dict[int, _SceneRecord] = {}
        logger.info("DL3DVClips: %d scenes under %s", len(self.scenes), self.root)

    def __len__(self) -> int:
        return len(self.scenes)

    def num_available(self, index: int) -> int:
        """Frames of scene ``index`` (parses its ``transforms.json`` once)."""
        return len(self.record(index).files)

    def sequence_path(self, index: int) -> Path:
        return self.scenes[index]

    def scene_name(self, index: int) -> str:
        """Scene path relative to ``root`` ("." if ``root`` is the scene)."""
        return self.scenes[index].relative_to(self.root).as_posix()

    def _image_folder(self, scene: Path) -> Path:
        for name in self.image_dirs:
            if (scene / name).is_dir():
                return scene / name
        raise UserInputError(f"{scene} has none of the image folders {list(self.image_dirs)}")

    def record(self, index: int) -> _SceneRecord:
        """Parsed ``transforms.json`` of scene ``index`` (cached)."""
        if index in self._records:
            return self._records[index]
        scene = self.scenes[index]
        path = scene / TRANSFORMS_FILE
        try:
            meta = json.loads(path.read_text())
            frames = meta["frames"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise UserInputError(f"cannot read {path}: {exc}") from exc
        if not frames:
            raise UserInputError(f"{path} lists no frames")
        folder = self._image_folder(scene)
        entries = sorted(frames, key=lambda f: natural_key(Path(f["file_path"]).name))
        try:
            intr = [nerfstudio_intrinsics(f, meta) for f in entries]
        except ValueError as exc:
            raise UserInputError(f"{path}: {exc}") from exc
        if any(meta.get(k) for k in ("k1", "k2", "p1", "p2")):
            logger.debug("%s: ignoring lens distortion %s", path, {k: meta.get(k) for k in ("k1", "k2", "p1", "p2")})
        record = _SceneRecord(
            files=[folder / Path(f["file_path"]).name for f in entries],
            c2w_gl=torch.tensor([f["transform_matrix"] for f in entries], dtype=torch.float64),
            intrinsics=torch.tensor(intr, dtype=torch.float64),
        )
        self._records[index] = record
        return record

    def __getitem__(self, key: int | tuple[int, int]) -> MultiViewClip:
        index, picked = self.pick_frames(key)
        rec = self.record(index)
        frames = read_images([rec.files[i] for i in picked])
        height, width = frames.shape[-2:]
        fx, fy, cx, cy, w, h = rec.intrinsics[picked].unbind(-1)
        K = torch.zeros(len(picked), 3, 3, dtype=torch.float64)
        K[:, 0, 0], K[:, 1, 1], K[:, 2, 2] = fx, fy, 1.0
        K[:, 0, 2], K[:, 1, 2] = cx - 0.5, cy - 0.5  # half-integer -> integer pixel centres
        K = torch.stack(
            [crop_resize_intrinsics(K[i], (0, 0), (width / float(w[i]), height / float(h[i])))
             for i in range(len(picked))]
        )
        w2c = opengl_c2w_to_opencv_w2c(rec.c2w_gl[picked])
        name = self.scene_name(index)
        clip = MultiViewClip(
            frames=frames,
            w2c=w2c.float(),
            K=K.float(),
            caption=self.captions.get(name),
            meta={"source": "dl3dv", "scene": name, "frame_indices": picked,
                  "files": [rec.files[i].name for i in picked]},
        )
        return self.resized(clip)
