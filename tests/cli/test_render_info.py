"""``vist3a render`` and ``vist3a info`` end to end: outputs exist and read back, bad input is one line."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from vist3a.cameras import load_cameras_json
from vist3a.cli.main import main
from vist3a.splats import Gaussians, save_ply


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


def _scene(n=400, seed=0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen) * 0.5 + torch.tensor([0.0, 0.0, 3.0]),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        scales=0.02 + 0.05 * torch.rand(n, 3, generator=gen),
        opacities=0.3 + 0.7 * torch.rand(n, generator=gen),
        sh=0.5 * torch.randn(n, 4, 3, generator=gen),
    )


@pytest.fixture
def vist3a_ply(tmp_path):
    return save_ply(_scene(), tmp_path / "scene.ply")


@pytest.fixture
def foreign_ply(tmp_path):
    """Degree-1 splats as another tool might write them: no normals, other order, an extra property, float64."""
    rng = np.random.default_rng(1)
    n = 150
    names = ["opacity", "rot_3", "rot_2", "rot_1", "rot_0", "f_dc_2", "f_dc_1", "f_dc_0", "z", "y", "x"]
    names += [f"f_rest_{i}" for i in range(9)] + ["scale_2", "scale_1", "scale_0", "segment_id"]
    arr = np.empty(n, dtype=[(name, "<f8") for name in names])
    for name in names:
        arr[name] = rng.normal(size=n) * 0.3
    arr["z"] += 3.0
    for i in range(3):
        arr[f"scale_{i}"] = np.log(0.03 + 0.03 * rng.random(n))
    arr["rot_0"] += 2.0  # unnormalised quaternions
    path = tmp_path / "foreign.ply"
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))
    return path, arr


def test_info_on_vist3a_ply(vist3a_ply, capsys):
    code, out, err = run_cli(["info", str(vist3a_ply)], capsys)
    assert code == 0, err
    assert "400" in out and "SH degree" in out and "1 (4 coefficients" in out
    code, out, _ = run_cli(["info", str(vist3a_ply), "--json"], capsys)
    summary = json.loads(out)
    xyz = np.stack([PlyData.read(str(vist3a_ply))["vertex"][c] for c in "xyz"], 1)
    assert summary["count"] == 400 and summary["sh_degree"] == 1
    np.testing.assert_allclose(summary["bbox_min"], xyz.min(0), rtol=1e-6)
    np.testing.assert_allclose(summary["bbox_max"], xyz.max(0), rtol=1e-6)


def test_info_on_foreign_ply(foreign_ply, capsys):
    path, arr = foreign_ply
    code, out, err = run_cli(["info", str(path), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["count"] == 150 and summary["sh_degree"] == 1
    opacity = 1 / (1 + np.exp(-arr["opacity"]))
    assert summary["opacity"]["median"] == pytest.approx(float(np.median(opacity)), rel=1e-5)
    assert summary["scale_max"]["max"] == pytest.approx(
        float(np.exp(np.stack([arr[f"scale_{i}"] for i in range(3)])).max())
    )


def _bad_files(tmp_path, good) -> dict[str, tuple]:
    text = tmp_path / "notes.ply"
    text.write_text("these are my notes\n")
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(good.read_bytes()[:-64])
    arr = PlyData.read(str(good))["vertex"].data.copy()[:5]
    arr["y"][3] = np.nan
    nan = tmp_path / "nan.ply"
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(nan))
    empty = tmp_path / "empty.ply"
    PlyData([PlyElement.describe(arr[:0], "vertex")]).write(str(empty))
    return {
        "missing": (tmp_path / "missing.ply", "does not exist"),
        "not a ply": (text, "not a PLY file"),
        "truncated": (truncated, "truncated"),
        "nan": (nan, "NaN"),
        "empty": (empty, "zero splats"),
    }


@pytest.mark.parametrize("command", ["info", "render"])
def test_bad_input_is_a_one_line_error(tmp_path, vist3a_ply, capsys, command):
    for _, (path, message) in _bad_files(tmp_path, vist3a_ply).items():
        extra = ["--out", str(tmp_path / "never.mp4")] if command == "render" else []
        code, _, err = run_cli([command, str(path), *extra], capsys)
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], err
        assert message in lines[0]
        assert "Traceback" not in err
    assert not (tmp_path / "never.mp4").exists()


def test_render_vist3a_ply_writes_video_depth_and_cameras(tmp_path, vist3a_ply, capsys):
    out_path, depth_path, cams_path = tmp_path / "fly.mp4", tmp_path / "depth.mp4", tmp_path / "cams.json"
    args = ["render", str(vist3a_ply), "--out", str(out_path), "--frames", "3", "--size", "32", "--fps", "8"]
    args += ["--depth-out", str(depth_path), "--cameras-out", str(cams_path), "--backend", "torch", "--device", "cpu"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "rendered 3 frames" in out
    video = np.stack(list(iio.imiter(out_path)))
    assert video.shape == (3, 32, 32, 3)
    assert video.mean() > 5  # the scene is in view, not a black video
    assert np.stack(list(iio.imiter(depth_path))).shape == (3, 32, 32, 3)
    w2c, K, width, height = load_cameras_json(cams_path)
    assert w2c.shape == (3, 4, 4) and (width, height) == (32, 32)
    # every camera looks at the scene: the splat centroid is in front of it and near the image centre
    centroid = torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
    cam = (w2c[:, :3, :3] @ centroid + w2c[:, :3, 3]).numpy()
    assert (cam[:, 2] > 0).all()
    uv = K[0, 0, 0].item() * cam[:, :2] / cam[:, 2:] + K[0, 0, 2].item()
    assert np.abs(uv - 15.5).max() < 6


def test_render_foreign_ply_to_gif(tmp_path, foreign_ply, capsys):
    path, _ = foreign_ply
    out_path = tmp_path / "spin.gif"
    code, _, err = run_cli(["render", str(path), "--out", str(out_path), "--frames", "2", "--size", "24"], capsys)
    assert code == 0, err
    frames = iio.imread(out_path, index=None)
    assert frames.shape[:3] == (2, 24, 24)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "fly.avi"], "--out must end in .mp4 or .gif"),
        (["--out", "fly.mp4", "--background", "purple"], "--background must be"),
        (["--out", "fly.mp4", "--radius", "-3"], "--radius must be"),
        (["--out", "fly.mp4", "--up", "x"], "--up must be one of"),
        (["--out", "fly.mp4", "--frames", "0"], "--frames must be >= 1"),
        (["--out", "fly.mp4", "--sh-degree", "3"], "--sh-degree must be in [0, 1]"),
    ],
)
def test_render_bad_options(tmp_path, vist3a_ply, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["render", str(vist3a_ply), *extra], capsys)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "fly.mp4").exists()


def test_help_teaches_with_examples(capsys):
    for command in ("render", "info"):
        code, out, _ = run_cli([command, "--help"], capsys)
        assert code == 0 and "Examples" in out and f"vist3a {command} " in out


@pytest.fixture
def point_cloud_ply(tmp_path):
    """Two square grids of points 0.02 apart, red at x < 0 and blue at x > 0, 3 units in front of the origin:
    what a pointmap preset's points.ply holds (colours and a confidence per point)."""
    from vist3a.splats import save_point_ply

    u, v = torch.meshgrid(torch.arange(20) * 0.02, torch.arange(20) * 0.02, indexing="ij")
    square = torch.stack([u.flatten(), v.flatten(), torch.zeros(400)], 1)
    xyz = torch.cat([square + torch.tensor([-0.6, -0.2, 3.0]), square + torch.tensor([0.2, -0.2, 3.0])])
    rgb = torch.cat([torch.tensor([[230, 20, 20]]).expand(400, 3), torch.tensor([[20, 20, 230]]).expand(400, 3)])
    return save_point_ply(tmp_path / "points.ply", xyz, rgb.to(torch.uint8), torch.ones(800))


def test_info_on_a_point_cloud(point_cloud_ply, capsys):
    code, out, err = run_cli(["info", str(point_cloud_ply), "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["kind"] == "point cloud" and info["count"] == 800 and info["colours"] and info["confidence"]
    assert info["spacing_median"] == pytest.approx(0.02, rel=1e-3)  # the grid's step
    assert info["bbox_min"] == pytest.approx([-0.6, -0.2, 3.0]) and info["bbox_max"] == pytest.approx([0.58, 0.18, 3.0])
    code, out, _ = run_cli(["info", str(point_cloud_ply)], capsys)
    assert code == 0 and "point cloud" in out and "800" in out


def test_render_a_point_cloud_shows_its_points(tmp_path, point_cloud_ply, capsys):
    """A points.ply renders (each point a round splat about as wide as the spacing): both colours are in view,
    and with the camera at the start of the turn in front of the grids red is on one side of blue."""
    from vist3a.evaluation.relations import colour_centroid_x

    out_path = tmp_path / "orbit.gif"
    args = ["render", str(point_cloud_ply), "--out", str(out_path), "--frames", "4", "--size", "64",
            "--backend", "torch", "--device", "cpu", "--elevation", "1"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "rendered 4 frames of 800 points" in out
    first = torch.from_numpy(np.asarray(iio.imread(out_path, index=0))[..., :3]).permute(2, 0, 1).float() / 255
    red, blue = colour_centroid_x(first, "red"), colour_centroid_x(first, "blue")
    assert red is not None and blue is not None and abs(red - blue) > 10
