"""DL3DVClips on a tiny fake DL3DV scene written by the test.

The fake scene uses the nerfstudio conventions written out independently here: OpenGL camera-to-world
poses (x right, y up, camera looking along -z), intrinsics for the full-resolution ``w x h`` images with
pixel centres at half-integers, and ``images_4/`` frames at a quarter of that size. Each frame marks the
pixel where one world point lands; the loader's OpenCV ``w2c``/``K`` must project the point there.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from vist3a.data import DL3DVClips, opengl_c2w_to_opencv_w2c
from vist3a.errors import UserInputError

FULL_W, FULL_H, DOWN = 160, 96, 4
INTR = {"fl_x": 120.0, "fl_y": 118.0, "cx": 81.3, "cy": 47.1}
POINT = np.array([0.1, -0.2, 0.3])


def _c2w_gl(position: np.ndarray, target=np.zeros(3), up=np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """OpenGL camera-to-world: columns are the camera's right, up and backward axes, then its centre."""
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, -forward, position
    return c2w


def _gl_project(c2w: np.ndarray, intr: dict, point: np.ndarray) -> tuple[float, float]:
    """nerfstudio pinhole: full-resolution image coordinates with pixel *edges* at integers."""
    p = c2w[:3, :3].T @ (point - c2w[:3, 3])  # camera (OpenGL) coordinates, visible points have z < 0
    assert p[2] < 0
    return intr["cx"] + intr["fl_x"] * p[0] / -p[2], intr["cy"] - intr["fl_y"] * p[1] / -p[2]


def _write_scene(scene, n=13, image_dir="images_4", per_frame_override=True):
    import imageio.v3 as iio

    (scene / image_dir).mkdir(parents=True)
    frames, truth = [], {}
    for i in range(n):
        angle = 2 * math.pi * i / n
        c2w = _c2w_gl(np.array([3.0 * math.cos(angle), 3.0 * math.sin(angle), 1.0 + 0.1 * i]))
        intr = dict(INTR)
        entry = {"file_path": f"images/frame_{i + 1:05d}.png", "transform_matrix": c2w.tolist()}
        if per_frame_override and i == 3:
            intr["fl_x"] = entry["fl_x"] = 140.0
        x, y = _gl_project(c2w, intr, POINT)
        img = np.zeros((FULL_H // DOWN, FULL_W // DOWN, 3), dtype=np.uint8)
        img[int(y / DOWN), int(x / DOWN)] = 255
        img[0, 0, 0] = 10 * i  # frame id, to check the order
        iio.imwrite(scene / image_dir / f"frame_{i + 1:05d}.png", img)
        frames.append(entry)
        truth[i] = (c2w, intr, x / DOWN, y / DOWN)
    random.Random(0).shuffle(frames)  # JSON order is not temporal order
    meta = {"w": FULL_W, "h": FULL_H, "k1": 0.01, "k2": 0.0, "p1": 0.0, "p2": 0.0, **INTR, "frames": frames}
    (scene / "transforms.json").write_text(json.dumps(meta))
    return truth


def test_loader_projects_the_marked_point_where_it_was_drawn(tmp_path):
    scene = tmp_path / "1K" / "0a1b2c"
    truth = _write_scene(scene)
    ds = DL3DVClips(tmp_path, num_frames=5, stride=(1, 2), seed=0)
    assert len(ds) == 1 and ds.scene_name(0) == "1K/0a1b2c"
    for key in (0, (0, 9), (0, 13)):
        clip = ds[key]
        T = clip.num_frames
        assert clip.frames.shape == (T, 3, FULL_H // DOWN, FULL_W // DOWN) and clip.depth is None
        for t, i in enumerate(clip.meta["frame_indices"]):
            assert round(clip.frames[t, 0, 0, 0].item() * 255) == 10 * i  # frame order follows file names
            _, intr, x_edge, y_edge = truth[i]
            w2c, K = clip.w2c[t].double(), clip.K[t].double()
            cam = w2c[:3, :3] @ torch.tensor(POINT) + w2c[:3, 3]
            assert cam[2] > 0  # OpenCV: in front of the camera is +z
            u = K[0, 0] * cam[0] / cam[2] + K[0, 2]
            v = K[1, 1] * cam[1] / cam[2] + K[1, 2]
            # vist3a puts pixel centres at integers: edge coordinate = u + 0.5
            assert abs(u + 0.5 - x_edge) < 1e-4 and abs(v + 0.5 - y_edge) < 1e-4
            row, col = torch.nonzero(clip.frames[t, 1] > 0.5)[0].tolist()  # the marked pixel (green channel)
            assert (row, col) == (math.floor(v + 0.5), math.floor(u + 0.5))
            assert clip.K[t, 0, 0] == pytest.approx(intr["fl_x"] / DOWN)


def test_opengl_to_opencv_keeps_centre_and_flips_axes():
    c2w = _c2w_gl(np.array([1.0, -2.0, 0.5]))
    w2c = opengl_c2w_to_opencv_w2c(torch.tensor(c2w))
    centre = -(w2c[:3, :3].T @ w2c[:3, 3])
    assert torch.allclose(centre, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    forward = -torch.tensor(c2w[:3, 2])
    assert torch.allclose(w2c[2, :3], forward)  # OpenCV z = viewing direction
    assert torch.allclose(w2c[1, :3], -torch.tensor(c2w[:3, 1]))  # OpenCV y = down = -(OpenGL up)
    bad = torch.tensor(c2w).clone()
    bad[:3, :3] *= 2.0
    with pytest.raises(ValueError, match="orthonormal"):
        opengl_c2w_to_opencv_w2c(bad)


def test_full_resolution_folder_resize_and_errors(tmp_path):
    scene = tmp_path / "scene"
    _write_scene(scene, n=6, image_dir="images", per_frame_override=False)
    ds = DL3DVClips(scene, num_frames=5, size=16)  # no images_4: falls back to images/
    clip = ds[0]
    assert clip.frames.shape == (5, 3, 16, 16) and ds.scene_name(0) == "."
    side = FULL_H // DOWN
    assert clip.K[0, 0, 0] == pytest.approx(INTR["fl_x"] / DOWN * 16 / side)
    with pytest.raises(ValueError, match="only 6"):
        DL3DVClips(scene, num_frames=9)[0]
    with pytest.raises(UserInputError, match="no scene"):
        DL3DVClips(tmp_path / "scene" / "images")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "transforms.json").write_text("{not json")
    (tmp_path / "broken" / "images_4").mkdir()
    with pytest.raises(UserInputError, match="cannot read"):
        DL3DVClips(tmp_path / "broken")[0]
