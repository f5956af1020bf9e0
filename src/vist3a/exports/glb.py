"""A glTF binary (``.glb``): the scene's point cloud plus one wire frustum per predicted camera (trimesh).

Opens in any glTF viewer (Blender, three.js, gradio's ``Model3D``, macOS Quick Look). Contents:

- node ``points``: a ``POINTS`` primitive with vertex colours: the pointmap points, else the splat centres (splats
  with opacity >= 0.05, at most 200k, coloured by their DC colour). Splat shapes are not representable in glTF 2.0.
- node ``cameras``: a ``LINES`` primitive, each camera's pyramid (apex at the camera centre, base at the image
  corners) plus a small triangle over the image's top edge marking "up".

Axes: glTF is y up with cameras looking along -z, so vist3a's OpenCV world (x right, y down, z forward) is written
as ``(x, -y, -z)`` (a 180 degree turn about x, no mirroring): a scene appears upright. Units: the scene's own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from vist3a.exports.source import SceneData
from vist3a.io_utils import atomic_path

logger = logging.getLogger(__name__)

OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0])


def frustum_depth(data: SceneData, fraction: float = 0.15) -> float:
    """A frustum depth that reads well at the scene's scale: ``fraction`` of the median distance from the camera
    centres' mean to the points (the spread of the cameras when that is larger)."""
    centres = np.linalg.inv(data.w2c)[:, :3, 3]
    xyz, _ = data.point_cloud(max_points=20_000)
    spread = float(np.linalg.norm(centres - centres.mean(0), axis=1).max(initial=0.0))
    dist = float(np.median(np.linalg.norm(xyz - centres.mean(0), axis=1))) if len(xyz) else 1.0
    return max(fraction * max(dist, spread), 1e-6)


def frustum_segments(w2c: np.ndarray, K: np.ndarray, width: int, height: int, depth: float) -> np.ndarray:
    """Line segments ``[V, 11, 2, 3]`` (world, OpenCV frame) of each camera's frustum: 4 edges from the centre,
    the 4 sides of the image rectangle at z = ``depth`` and an "up" triangle above its top edge."""
    c2w = np.linalg.inv(w2c)
    u = np.array([-0.5, width - 0.5, width - 0.5, -0.5])  # image corners (pixel edges, integer centres)
    v = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
    segments = []
    for cam in range(len(w2c)):
        fx, fy, cx, cy = K[cam, 0, 0], K[cam, 1, 1], K[cam, 0, 2], K[cam, 1, 2]
        corners = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, np.full(4, depth)], 1)  # camera frame
        top_mid = (corners[0] + corners[1]) / 2
        half = (corners[1] - corners[0]) * 0.25
        tip = top_mid - np.array([0.0, 0.15 * (corners[2, 1] - corners[0, 1]), 0.0])
        local = [(np.zeros(3), corners[i]) for i in range(4)]
        local += [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
        local += [(top_mid - half, tip), (tip, top_mid + half), (top_mid + half, top_mid - half)]
        pts = np.array(local)  # [11, 2, 3]
        segments.append(pts @ c2w[cam, :3, :3].T + c2w[cam, :3, 3])
    return np.array(segments)


def save_glb(data: SceneData, path: str | os.PathLike, *, camera_color=(255, 120, 0)) -> Path:
    """Write the point cloud and camera frustums of ``data`` as a ``.glb`` (atomically); returns the path."""
    import trimesh

    path = Path(path)
    xyz, rgb = data.point_cloud()
    rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.PointCloud(xyz.astype(np.float64) @ OPENCV_TO_GLTF, colors=rgba), geom_name="points")
    segments = frustum_segments(data.w2c, data.K, data.width, data.height, frustum_depth(data))
    lines = trimesh.load_path(segments.reshape(-1, 2, 3) @ OPENCV_TO_GLTF)
    lines.colors = np.tile([*camera_color, 255], (len(lines.entities), 1)).astype(np.uint8)
    scene.add_geometry(lines, geom_name="cameras")
    with atomic_path(path) as tmp:
        tmp.write_bytes(scene.export(file_type="glb"))
    logger.info("wrote %d points and %d camera frustums to %s", len(xyz), len(data.w2c), path)
    return path
