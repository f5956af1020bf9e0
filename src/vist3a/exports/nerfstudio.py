"""nerfstudio's ``transforms.json`` with the decoded frames in ``images/`` and initial points in
``sparse_pc.ply``: ``ns-train splatfacto --data FOLDER`` refines the scene.

- ``frames[i].transform_matrix``: camera-to-world with **OpenGL/Blender camera axes** (x right, y up, z back),
  i.e. vist3a's OpenCV ``c2w`` times ``diag(1, -1, -1, 1)``. The world frame is vist3a's (OpenCV, y down),
  unchanged; nerfstudio re-orients and re-centres the world itself when loading.
- Intrinsics per frame (``fl_x fl_y cx cy w h``, ``camera_model`` ``OPENCV`` with zero distortion) for the frames'
  size. nerfstudio puts pixel centres at +0.5, so ``cx = cx_vist3a + 0.5``.
- ``ply_file_path``: ``sparse_pc.ply``, binary ``x y z red green blue`` in the same world frame (the pointmap
  points or the splat centres), which splatfacto uses to initialise its Gaussians.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from vist3a.exports.colmap import write_frames
from vist3a.exports.source import SceneData
from vist3a.io_utils import atomic_dir
from vist3a.splats.ply import save_point_ply

logger = logging.getLogger(__name__)

OPENCV_TO_OPENGL_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])


def save_nerfstudio(data: SceneData, folder: str | os.PathLike) -> Path:
    """Write ``folder/transforms.json``, ``folder/images/*.png`` and ``folder/sparse_pc.ply`` (atomically)."""
    folder = Path(folder)
    K, width, height = data.frame_intrinsics()
    c2w = np.linalg.inv(data.w2c) @ OPENCV_TO_OPENGL_CAMERA
    xyz, rgb = data.point_cloud()
    with atomic_dir(folder) as tmp:
        names = write_frames(data, tmp / "images", "frame_{:05d}.png")
        save_point_ply(tmp / "sparse_pc.ply", xyz, rgb)
        frames = [
            {
                "file_path": f"images/{name}",
                "transform_matrix": c2w[i].tolist(),
                "fl_x": float(K[i, 0, 0]),
                "fl_y": float(K[i, 1, 1]),
                "cx": float(K[i, 0, 2] + 0.5),
                "cy": float(K[i, 1, 2] + 0.5),
                "w": int(width),
                "h": int(height),
            }
            for i, name in enumerate(names)
        ]
        doc = {
            "camera_model": "OPENCV",
            "w": int(width),
            "h": int(height),
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
            "ply_file_path": "sparse_pc.ply",
            "frames": frames,
        }  # fmt: skip
        (tmp / "transforms.json").write_text(json.dumps(doc, indent=1))
    logger.info("wrote nerfstudio data (%d frames, %d points) to %s", len(names), len(xyz), folder)
    return folder

