"""``vist3a reconstruct --model mvdust3r|mvdust3r-plus`` end to end with tiny random models, and its helpers."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from plyfile import PlyData
from typer.testing import CliRunner

from vist3a.cli.main import app, main
from vist3a.recon.reconstruct_mvdust3r import preprocess_square, reference_spread_order


def _image_dir(tmp_path, count, height=30, width=40):
    folder = tmp_path / f"views{count}"
    folder.mkdir()
    rng = np.random.default_rng(count)
    for i in range(count):
        iio.imwrite(folder / f"{i:02d}.png", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return folder


def test_preprocess_square_short_side_and_centre_crop():
    frame = np.zeros((40, 80, 3), dtype=np.uint8)
    frame[:, 20:60] = 255  # the middle half, exactly the centre crop
    out = preprocess_square([frame], 32)
    assert out.shape == (1, 3, 32, 32)
    assert float(out[0, :, :, 2:-2].mean()) > 0.95


def test_reference_spread_order_matches_the_demo():
    assert reference_spread_order(3) == [0, 1, 2]
    assert reference_spread_order(8) == [0, 3, 6, 1, 4, 5, 2, 7]
    order = reference_spread_order(13)  # swap 1<->4, 2<->7, 3<->10
    assert order[:4] == [0, 4, 7, 10] and sorted(order) == list(range(13))


@pytest.mark.parametrize("model", ["mvdust3r", "mvdust3r-plus"])
def test_cli_mvdust3r_tiny_random_writes_every_file(tmp_path, model):
    from vist3a.cameras import load_cameras_json
    from vist3a.splats.ply import load_ply

    out = tmp_path / "scene"
    views = 5
    args = ["reconstruct", str(_image_dir(tmp_path, views)), "--model", model, "--weights", "tiny-random", "--size",
            "32", "--out", str(out), "--device", "cpu", "--keep", "0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["num_views"] == views and "CC BY-NC" in meta["weights_licence"]
    assert meta["paths"] == (4 if model == "mvdust3r-plus" else 1)
    assert len(load_ply(out / "scene.ply")) == views * 32 * 32 == meta["num_primitives"]
    assert PlyData.read(str(out / "points.ply"))["vertex"].count == views * 32 * 32 // 2
    w2c, K, width, height = load_cameras_json(out / "cameras.json")
    assert w2c.shape == (views, 4, 4) and (width, height) == (32, 32)
    assert float(K[0, 0, 2]) == pytest.approx(15.5)  # integer pixel centres: the centre of a 32 px image
    assert np.allclose(w2c[0].numpy(), np.eye(4), atol=1e-6)  # world = the reference (first) camera
    assert sorted(p.name for p in (out / "depth").iterdir()) == [f"{i:03d}.png" for i in range(views)]
    assert iio.imread(out / "flythrough.mp4").shape[1:3] == (32, 32)
    assert not list(tmp_path.glob(".scene*"))  # no temporary folder left


def test_cli_mvdust3r_user_errors(tmp_path):
    one = _image_dir(tmp_path, 1)
    three = _image_dir(tmp_path, 3)
    for args in (
        ["reconstruct", str(one), "--out", str(tmp_path / "o"), "--model", "mvdust3r", "--weights", "tiny-random",
         "--size", "32"],
        ["reconstruct", str(three), "--out", str(tmp_path / "o"), "--model", "mvdust3r-plus", "--weights",
         "tiny-random", "--size", "40"],
        ["reconstruct", str(three), "--out", str(tmp_path / "o"), "--model", "mvdust3r", "--weights",
         str(tmp_path / "none.pth")],
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
    assert not (tmp_path / "o").exists()
