"""``vist3a export`` on scene folders and ``save_scene(formats=...)``: every format written, errors are user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from export_helpers import arc_cameras, random_gaussians
from typer.testing import CliRunner

from vist3a.cli.main import app
from vist3a.errors import UserInputError
from vist3a.exports import FORMATS, parse_formats
from vist3a.exports.spz import load_spz
from vist3a.scene import Scene, save_scene


def _scene(points: bool = False) -> Scene:
    w2c = arc_cameras(3).float()
    K = torch.tensor([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]).expand(3, 3, 3)
    frames = torch.rand(3, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    if points:
        pts = torch.randn(3, 24, 32, 3, generator=torch.Generator().manual_seed(1))
        return Scene("p", frames, w2c, K, (24, 32), points=pts, points_conf=torch.rand(3, 24, 32))
    return Scene("p", frames, w2c, K, (24, 32), gaussians=random_gaussians(200, 4).to(dtype=torch.float32))


def _invoke(*args):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def test_export_all_formats_from_a_scene_folder(tmp_path):
    folder = save_scene(_scene(), tmp_path / "scene", flythrough_frames=0)
    result = _invoke(folder, "--format", "all", "--out", tmp_path / "exports")
    assert result.exit_code == 0, result.output
    for spec in FORMATS.values():
        assert (tmp_path / "exports" / spec.target).exists(), spec.target
    assert load_spz(tmp_path / "exports" / "scene.spz").sh_degree == 3  # from the degree-3 scene.ply
    assert sorted(p.name for p in (tmp_path / "exports" / "colmap" / "images").iterdir())[:1] == ["00000.png"]


def test_save_scene_writes_formats_inside_the_atomic_folder(tmp_path):
    out = save_scene(_scene(), tmp_path / "s", flythrough_frames=0, formats=["spz", "colmap,glb"])
    names = {p.name for p in out.iterdir()}
    assert {"scene.spz", "scene.glb", "colmap", "scene.ply", "meta.json"} <= names
    assert "nerfstudio" not in names
    # images come from the frames before video compression
    import imageio.v3 as iio

    first = iio.imread(out / "colmap" / "images" / "00000.png")
    expected = (_scene().frames[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(first, expected)


def test_pointmap_scene_skips_splat_formats_for_all_and_refuses_them_by_name(tmp_path):
    folder = save_scene(_scene(points=True), tmp_path / "pts", flythrough_frames=0)
    result = _invoke(folder, "-f", "all")
    assert result.exit_code == 0, result.output
    assert (folder / "scene.glb").exists() and (folder / "nerfstudio" / "transforms.json").exists()
    assert not (folder / "scene.spz").exists()
    result = _invoke(folder, "-f", "spz")
    assert isinstance(result.exception, UserInputError) and "only a point cloud" in str(result.exception)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "obj"], "unknown export format"),
        (["-f", "spz", "--sh-degree", "6"], "--sh-degree"),
    ],
)
def test_user_errors(tmp_path, args, message):
    folder = save_scene(_scene(), tmp_path / "scene", flythrough_frames=0)
    result = _invoke(folder, *args)
    assert isinstance(result.exception, UserInputError) and message in str(result.exception)


def test_missing_or_foreign_folders_are_user_errors(tmp_path):
    for target, message in ((tmp_path / "none", "not a folder"), (tmp_path, "no cameras.json")):
        result = _invoke(target, "-f", "spz")
        assert isinstance(result.exception, UserInputError) and message in str(result.exception)


def test_parse_formats():
    assert parse_formats(["glb,spz", "SPZ"]) == ["spz", "glb"]
    assert parse_formats(["all"]) == list(FORMATS)
    assert parse_formats([]) == []


def test_meta_of_a_scene_with_formats_is_still_valid_json(tmp_path):
    out = save_scene(_scene(), tmp_path / "s", flythrough_frames=0, formats=["spz"])
    assert json.loads((out / "meta.json").read_text())["sh"]["sh_degree_out"] == 3


@pytest.mark.slow
def test_generate_formats_end_to_end(tmp_path):
    """``vist3a generate --formats`` with the embedded nano preset writes the exports beside scene.ply."""
    out = tmp_path / "g"
    args = ["generate", "a red cube", "--out", str(out), "--flythrough-frames", "0", "--formats", "spz,nerfstudio"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_spz(out / "scene.spz").sh_degree <= 3
    doc = json.loads((out / "nerfstudio" / "transforms.json").read_text())
    assert len(doc["frames"]) == len(json.loads((out / "cameras.json").read_text())["frames"])


def test_export_never_replaces_files_of_a_foreign_folder_without_overwrite(tmp_path):
    folder = save_scene(_scene(), tmp_path / "scene", flythrough_frames=0)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "scene.spz").write_bytes(b"user data")
    result = _invoke(folder, "-f", "spz", "--out", mine)
    assert isinstance(result.exception, UserInputError) and "--overwrite" in str(result.exception)
    assert (mine / "scene.spz").read_bytes() == b"user data"
    result = _invoke(folder, "-f", "spz", "--out", mine, "--overwrite")
    assert result.exit_code == 0, result.output
    assert load_spz(mine / "scene.spz").sh_degree == 3
    assert _invoke(folder, "-f", "spz").exit_code == 0  # the scene folder's own exports are replaced freely
    assert _invoke(folder, "-f", "spz").exit_code == 0


def test_pointmap_exports_hold_the_points_of_points_ply(tmp_path):
    """points.ply (with its confidence column) and the exports come from the one fusion of the pointmaps."""
    from plyfile import PlyData

    folder = save_scene(_scene(points=True), tmp_path / "pts", flythrough_frames=0, formats=["nerfstudio"])
    points = PlyData.read(str(folder / "points.ply"))["vertex"].data
    sparse = PlyData.read(str(folder / "nerfstudio" / "sparse_pc.ply"))["vertex"].data
    assert "confidence" in points.dtype.names and np.all(np.diff(points["confidence"]) <= 0)
    np.testing.assert_array_equal(np.sort(points["x"]), np.sort(sparse["x"]))
