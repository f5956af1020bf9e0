"""GLB: trimesh reads back the point cloud (y-up glTF axes) and one 11-segment frustum per camera."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_helpers import scene_data

from vist3a.exports.glb import frustum_segments, save_glb
from vist3a.splats import sh_dc_to_rgb

trimesh = pytest.importorskip("trimesh")


def test_glb_points_and_frustums_read_by_trimesh(tmp_path):
    data = scene_data()
    data.gaussians.opacities[:] = 0.5
    path = save_glb(data, tmp_path / "scene.glb")
    scene = trimesh.load(path, file_type="glb")
    points, cameras = scene.geometry["points"], scene.geometry["cameras"]
    assert isinstance(points, trimesh.PointCloud) and isinstance(cameras, trimesh.path.Path3D)
    g = data.gaussians
    # glTF is y up: OpenCV (x, y, z) -> (x, -y, -z). Compare as sets (the exporter orders by opacity).
    expected = g.means.numpy() * np.array([1, -1, -1])
    got = np.asarray(points.vertices)
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(expected, axis=0), atol=1e-6)
    rgb = (sh_dc_to_rgb(g.sh[:, 0]).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    match = np.argmin(np.abs(got[:, None] - expected[None]).sum(-1), axis=1)
    np.testing.assert_array_equal(np.asarray(points.colors)[:, :3], rgb[match])
    # every frustum apex is a camera centre (4 edges start there)
    centres = np.linalg.inv(data.w2c)[:, :3, 3] * np.array([1, -1, -1])
    verts = np.asarray(cameras.vertices)
    for centre in centres:
        assert np.isclose(verts, centre, atol=1e-6).all(1).sum() >= 1


def test_frustum_corners_project_to_the_image_corners():
    data = scene_data()
    segments = frustum_segments(data.w2c, data.K, data.width, data.height, depth=0.7)
    assert segments.shape == (4, 11, 2, 3)
    for cam in range(4):
        corners = segments[cam, :4, 1]  # ends of the 4 edges from the centre
        x = corners @ data.w2c[cam, :3, :3].T + data.w2c[cam, :3, 3]
        np.testing.assert_allclose(x[:, 2], 0.7)
        uv = x[:, :2] / x[:, 2:] * np.diag(data.K[cam])[:2] + data.K[cam, :2, 2]
        np.testing.assert_allclose(uv, [[-0.5, -0.5], [39.5, -0.5], [39.5, 29.5], [-0.5, 29.5]], atol=1e-9)
