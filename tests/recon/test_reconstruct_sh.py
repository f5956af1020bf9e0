"""``vist3a reconstruct`` writes SH degree 3 by default (AnySplat predicts 4); ``--sh-degree`` chooses."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from plyfile import PlyData
from typer.testing import CliRunner

from vist3a.cli.main import app
from vist3a.errors import UserInputError


@pytest.fixture
def views(tmp_path):
    folder = tmp_path / "views"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        iio.imwrite(folder / f"{i}.png", rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    return folder


def _run(views, out, *extra):
    args = ["reconstruct", str(views), "--model", "anysplat", "--weights", "tiny-random", "--size", "28",
            "--out", str(out), "--device", "cpu", *extra]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(("kwargs", "rest", "dropped"), [({}, 45, True), ({"sh_degree": 4}, 72, False)])
def test_reconstruct_sh_degree(tmp_path, kwargs, rest, dropped):
    from vist3a.recon import random_tiny_model
    from vist3a.recon.reconstruct import reconstruct

    model = random_tiny_model("anysplat", sh_degree=4)  # the release's degree
    views = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "scene"
    reconstruct(model, views, out, flythrough_frames=0, **kwargs)
    props = [p.name for p in PlyData.read(str(out / "scene.ply"))["vertex"].properties]
    assert sum(name.startswith("f_rest_") for name in props) == rest
    sh = json.loads((out / "meta.json").read_text())["sh"]
    assert sh["sh_degree_in"] == 4 and (sh["dropped_energy_fraction"] > 0) == dropped


def test_sh_degree_out_of_range_is_a_user_error(views, tmp_path):
    result = _run(views, tmp_path / "x", "--sh-degree", "5")
    assert isinstance(result.exception, UserInputError) and "--sh-degree" in str(result.exception)
    assert not (tmp_path / "x").exists()


def test_reconstruct_formats_use_the_chosen_sh_degree(views, tmp_path):
    from vist3a.exports.spz import load_spz

    out = tmp_path / "r"
    result = _run(views, out, "--formats", "spz,nerfstudio", "--sh-degree", "0")  # the tiny model predicts 1
    assert result.exit_code == 0, result.output
    assert load_spz(out / "scene.spz").sh_degree == 0
    props = [p.name for p in PlyData.read(str(out / "scene.ply"))["vertex"].properties]
    assert not any(name.startswith("f_rest_") for name in props)
    assert (out / "nerfstudio" / "transforms.json").is_file()


def test_reconstruct_unknown_format_is_a_user_error_before_any_work(views, tmp_path):
    result = _run(views, tmp_path / "y", "--formats", "obj")
    assert isinstance(result.exception, UserInputError) and "unknown export format" in str(result.exception)
    assert not (tmp_path / "y").exists()
