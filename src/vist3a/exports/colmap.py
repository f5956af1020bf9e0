"""COLMAP's text model (``sparse/0/cameras.txt, images.txt, points3D.txt``) with the decoded frames in ``images/``:
the layout gsplat's trainer, nerfstudio's ``colmap`` data parser and COLMAP itself read, to refine a scene.

- ``cameras.txt``: one ``PINHOLE`` camera per frame (the predicted intrinsics may differ per view):
  ``CAMERA_ID PINHOLE WIDTH HEIGHT fx fy cx cy`` for the frames' size. COLMAP puts pixel *centres* at +0.5 (the
  image spans [0, W]), so ``cx = cx_vist3a + 0.5``.
- ``images.txt``: ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` then an empty line of 2D points. ``(Q, T)`` is
  the world-to-camera rotation (Hamilton quaternion, ``QW >= 0``) and translation with OpenCV camera axes: exactly
  vist3a's ``w2c``, no axis change.
- ``points3D.txt``: ``POINT3D_ID X Y Z R G B ERROR`` with empty tracks (no feature matches exist): the pointmap
  points or the splat centres, as initial points for 3DGS training. ``ERROR`` is 0.

World frame and units: vist3a's (OpenCV, y down; the model's own scale).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from vist3a.errors import UserInputError
from vist3a.exports.source import SceneData
from vist3a.io_utils import atomic_dir

logger = logging.getLogger(__name__)


def write_frames(data: SceneData, folder: Path, pattern: str) -> list[str]:
    """Write ``data.frames`` as PNGs named ``pattern.format(i)`` into ``folder``; returns the names."""
    import imageio.v3 as iio

    if data.frames is None:
        raise UserInputError(
            "this export needs the decoded frames (frames.mp4, one per camera), which the scene folder lacks"
        )
    folder.mkdir(parents=True, exist_ok=True)
    names = [pattern.format(i) for i in range(len(data.frames))]
    for name, frame in zip(names, data.frames, strict=True):
        iio.imwrite(folder / name, frame)
    return names


def save_colmap(data: SceneData, folder: str | os.PathLike) -> Path:
    """Write ``folder/images/*.png`` and ``folder/sparse/0/*.txt`` (the folder is replaced atomically)."""
    from vist3a.cameras import rotmat_to_quat

    folder = Path(folder)
    K, width, height = data.frame_intrinsics()
    quats = rotmat_to_quat(torch.from_numpy(data.w2c[:, :3, :3])).numpy()  # (w, x, y, z), w >= 0
    xyz, rgb = data.point_cloud()
    with atomic_dir(folder) as tmp:
        names = write_frames(data, tmp / "images", "{:05d}.png")
        sparse = tmp / "sparse" / "0"
        sparse.mkdir(parents=True)
        cams = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
        imgs = ["# Image list with two lines of data per image:",
                "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
        for i, name in enumerate(names):
            fx, fy, cx, cy = K[i, 0, 0], K[i, 1, 1], K[i, 0, 2] + 0.5, K[i, 1, 2] + 0.5
            cams.append(f"{i + 1} PINHOLE {width} {height} {fx:.17g} {fy:.17g} {cx:.17g} {cy:.17g}")
            q, t = quats[i], data.w2c[i, :3, 3]
            imgs.append(f"{i + 1} " + " ".join(f"{v:.17g}" for v in (*q, *t)) + f" {i + 1} {name}")
            imgs.append("")
        (sparse / "cameras.txt").write_text("\n".join(cams) + "\n")
        (sparse / "images.txt").write_text("\n".join(imgs) + "\n")
        lines = ["# 3D point list with one line of data per point:",
                 "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
        lines += [f"{j + 1} {p[0]:.9g} {p[1]:.9g} {p[2]:.9g} {c[0]} {c[1]} {c[2]} 0" for j, (p, c) in
                  enumerate(zip(xyz.tolist(), rgb.tolist(), strict=True))]
        (sparse / "points3D.txt").write_text("\n".join(lines) + "\n")
    logger.info("wrote a COLMAP model (%d images, %d points) to %s", len(names), len(xyz), folder)
    return folder
