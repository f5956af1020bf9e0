"""COLMAP and nerfstudio camera files: read back by pycolmap / parsed by nerfstudio's conventions, they project
world points onto the same pixels as vist3a's own cameras (pixel-centre shift and frame rescaling included)."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from export_helpers import scene_data

from vist3a.errors import UserInputError
from vist3a.exports.colmap import save_colmap
from vist3a.exports.nerfstudio import save_nerfstudio


def vist3a_pixels(data, points: np.ndarray, cam: int, scale: float = 1.0) -> np.ndarray:
    """Project with vist3a's convention (integer pixel centres), then move to the +0.5-centre convention of COLMAP
    and nerfstudio and to an image ``scale`` times larger: ``u' = (u + 0.5) * scale``."""
    x = points @ data.w2c[cam, :3, :3].T + data.w2c[cam, :3, 3]
    uv = x[:, :2] / x[:, 2:] * np.diag(data.K[cam])[:2] + data.K[cam, :2, 2]
    return (uv + 0.5) * scale


@pytest.mark.parametrize("frame_scale", [1, 2])
def test_colmap_model_read_by_pycolmap_projects_like_vist3a(tmp_path, frame_scale):
    pycolmap = pytest.importorskip("pycolmap")
    data = scene_data(frame_scale=frame_scale)
    folder = save_colmap(data, tmp_path / "colmap")
    rec = pycolmap.Reconstruction()
    rec.read_text(str(folder / "sparse" / "0"))
    visible = int((data.gaussians.opacities >= 0.05).sum())  # splats fainter than 0.05 give no initial point
    assert rec.num_images() == 4 and rec.num_cameras() == 4 and rec.num_points3D() == visible
    points = np.random.default_rng(1).normal(size=(20, 3)) * 0.5
    for image_id, image in rec.images.items():
        cam = image_id - 1
        np.testing.assert_allclose(image.cam_from_world().matrix(), data.w2c[cam, :3], atol=1e-12)
        camera = rec.cameras[image.camera_id]
        assert (camera.model_name, camera.width, camera.height) == ("PINHOLE", 40 * frame_scale, 30 * frame_scale)
        x_cam = points @ data.w2c[cam, :3, :3].T + data.w2c[cam, :3, 3]
        theirs = np.array([camera.img_from_cam(p) for p in x_cam])
        np.testing.assert_allclose(theirs, vist3a_pixels(data, points, cam, frame_scale), atol=1e-9)
        frame = iio.imread(folder / "images" / image.name)
        np.testing.assert_array_equal(frame, data.frames[cam])


@pytest.mark.parametrize("frame_scale", [1, 2])
def test_nerfstudio_transforms_project_like_vist3a(tmp_path, frame_scale):
    data = scene_data(frame_scale=frame_scale)
    folder = save_nerfstudio(data, tmp_path / "ns")
    doc = json.loads((folder / "transforms.json").read_text())
    assert doc["camera_model"] == "OPENCV" and len(doc["frames"]) == 4
    points = np.random.default_rng(2).normal(size=(20, 3)) * 0.5
    for cam, frame in enumerate(doc["frames"]):
        # nerfstudio: c2w with OpenGL camera axes (x right, y up, looking along -z), pixel centres at +0.5
        c2w = np.array(frame["transform_matrix"])
        x = (points - c2w[:3, 3]) @ c2w[:3, :3]  # camera coordinates, OpenGL axes
        u = frame["fl_x"] * x[:, 0] / -x[:, 2] + frame["cx"]
        v = frame["fl_y"] * -x[:, 1] / -x[:, 2] + frame["cy"]
        np.testing.assert_allclose(np.stack([u, v], 1), vist3a_pixels(data, points, cam, frame_scale), atol=1e-9)
        image = iio.imread(folder / frame["file_path"])
        assert image.shape == (30 * frame_scale, 40 * frame_scale, 3) == (frame["h"], frame["w"], 3)
    from plyfile import PlyData

    vertex = PlyData.read(str(folder / doc["ply_file_path"]))["vertex"]
    assert vertex.count == int((data.gaussians.opacities >= 0.05).sum())
    assert {"x", "red"} <= {p.name for p in vertex.properties}


def test_camera_exports_need_frames(tmp_path):
    data = scene_data()
    data.frames = None
    for save in (save_colmap, save_nerfstudio):
        with pytest.raises(UserInputError, match="decoded frames"):
            save(data, tmp_path / save.__name__)
        assert not (tmp_path / save.__name__).exists()  # nothing half-written
