"""What the exporters read: one scene as plain arrays, from a :class:`~vist3a.scene.Scene` or a scene folder.

vist3a's world frame (every scene file, ``scene.ply`` and ``cameras.json`` included) is the **OpenCV** one of
the predicted cameras: x right, y down, z forward (the first camera looks along +z), in the model's own units
(no metric scale). Each exporter states how it maps this frame onto its format's convention.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vist3a.errors import UserInputError
from vist3a.splats.gaussians import Gaussians, sh_dc_to_rgb
from vist3a.splats.ply import read_point_ply

logger = logging.getLogger(__name__)

SCENE_FILES = ("scene.ply", "points.ply", "cameras.json")


@dataclass
class SceneData:
    """One scene for the exporters.

    Attributes:
        gaussians: the splats (activated parameters), or ``None`` for pointmap-only scenes.
        points / colors: ``[M, 3]`` float32 world points and ``[M, 3]`` uint8 colours, or ``None``.
        w2c: ``[V, 4, 4]`` float64 world-to-camera (OpenCV axes).
        K: ``[V, 3, 3]`` float64 pixel intrinsics for ``width x height`` images, pixel centres at integer
            coordinates (vist3a's convention; COLMAP and nerfstudio put them at +0.5, their exporters shift).
        width / height: the image size ``K`` refers to.
        frames: ``[V, H', W', 3]`` uint8 decoded frames, one per camera, or ``None`` (any ``H' x W'``: exporters
            rescale ``K`` to the frames).
        confidence: ``[M]`` float32 confidence of each point (pointmap decoders), or ``None``.
    """

    gaussians: Gaussians | None
    points: np.ndarray | None
    colors: np.ndarray | None
    w2c: np.ndarray
    K: np.ndarray
    width: int
    height: int
    frames: np.ndarray | None = None
    confidence: np.ndarray | None = None

    def point_cloud(self, max_points: int = 200_000, min_opacity: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """``(xyz [M, 3] float32, rgb [M, 3] uint8)``: the pointmap points, else the splat centres with their DC
        colour (splats below ``min_opacity`` skipped; at most ``max_points``, the most opaque kept)."""
        if self.points is not None:
            xyz, rgb = self.points, self.colors
            if len(xyz) > max_points:
                keep = np.random.default_rng(0).choice(len(xyz), max_points, replace=False)
                xyz, rgb = xyz[np.sort(keep)], rgb[np.sort(keep)]
            return xyz, rgb
        if self.gaussians is None:
            raise ValueError("scene has neither points nor Gaussians")
        g = self.gaussians.detach().to(device="cpu", dtype=torch.float32)
        opacity = g.opacities.numpy()
        order = np.argsort(-opacity, kind="stable")
        order = order[opacity[order] >= min_opacity][:max_points]
        if len(order) == 0:
            order = np.argsort(-opacity, kind="stable")[:1]
        rgb = (sh_dc_to_rgb(g.sh[:, 0]).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        return g.means.numpy()[order], rgb[order]

    def frame_intrinsics(self) -> tuple[np.ndarray, int, int]:
        """``(K [V, 3, 3], W', H')``: the intrinsics rescaled to the frames (integer pixel centres kept)."""
        if self.frames is None:
            return self.K.copy(), self.width, self.height
        h, w = self.frames.shape[1:3]
        sx, sy = w / self.width, h / self.height
        K = self.K.copy()
        K[:, 0, 0] *= sx
        K[:, 1, 1] *= sy
        K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5
        K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5
        return K, w, h


def _frames_for(frames: np.ndarray | None, num_cameras: int) -> np.ndarray | None:
    if frames is None:
        return None
    if len(frames) != num_cameras:
        logger.warning("%d frames for %d cameras: images are not exported", len(frames), num_cameras)
        return None
    return np.ascontiguousarray(frames)


def scene_data_from_scene(scene) -> SceneData:
    """A :class:`~vist3a.scene.Scene` in memory -> :class:`SceneData` (the frames before video compression)."""
    from vist3a.media import to_uint8_frames
    from vist3a.splats.points import fuse_point_maps

    points = colors = confidence = None
    if scene.points is not None:  # the points of points.ply (same fusion, same share kept)
        conf = scene.points_conf.float().cpu() if scene.points_conf is not None else None
        keep_fraction = float(scene.settings.get("keep_fraction", 0.5))
        xyz, cols, kept_conf = fuse_point_maps(scene.points.float().cpu(), conf, scene.frames.float().cpu(),
                                               keep_fraction, return_conf=True)
        points, colors = xyz.numpy(), cols.numpy()
        confidence = kept_conf.numpy() if conf is not None else None
    height, width = scene.image_size
    return SceneData(
        gaussians=scene.gaussians,
        points=points,
        colors=colors,
        w2c=scene.w2c.double().cpu().numpy(),
        K=scene.K.double().cpu().numpy(),
        width=int(width),
        height=int(height),
        frames=_frames_for(to_uint8_frames(scene.frames.permute(0, 2, 3, 1).clamp(0, 1).cpu()), scene.w2c.shape[0]),
        confidence=confidence,
    )


def _read_frames(folder: Path) -> np.ndarray | None:
    import imageio.v3 as iio

    for name in ("frames.mp4", "frames.gif"):
        if (folder / name).is_file():
            frames = np.stack([f[..., :3] for f in iio.imiter(folder / name)])
            return frames.astype(np.uint8)
    return None


def load_scene_dir(folder: str | os.PathLike) -> SceneData:
    """Read a folder written by ``vist3a generate`` / ``reconstruct``: ``scene.ply`` and/or ``points.ply``,
    ``cameras.json`` and, when present, ``frames.mp4`` (decoded again, so H.264-compressed)."""
    from vist3a.cameras import load_cameras_json
    from vist3a.splats.ply import load_ply

    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{folder}: not a folder (expected the output folder of `vist3a generate`)")
    if not (folder / "cameras.json").is_file():
        raise UserInputError(f"{folder}: no cameras.json, so it is not a vist3a scene folder")
    gaussians = load_ply(folder / "scene.ply") if (folder / "scene.ply").is_file() else None
    points = colors = confidence = None
    if (folder / "points.ply").is_file():
        points, colors, confidence = read_point_ply(folder / "points.ply")
    if gaussians is None and points is None:
        raise UserInputError(f"{folder}: has neither scene.ply nor points.ply")
    w2c, K, width, height = load_cameras_json(folder / "cameras.json")
    return SceneData(
        gaussians=gaussians,
        points=points,
        colors=colors,
        w2c=w2c.numpy(),
        K=K.numpy(),
        width=width,
        height=height,
        frames=_frames_for(_read_frames(folder), w2c.shape[0]),
        confidence=confidence,
    )
