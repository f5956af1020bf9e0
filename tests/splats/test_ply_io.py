"""3DGS PLY files: the INRIA layout written byte-exactly, lossless round trips, foreign layouts, rejections."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from vist3a.errors import UserInputError
from vist3a.splats import Gaussians, load_gaussians, load_ply, save_gaussians, save_ply


def random_gaussians(n: int, degree: int, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        scales=torch.exp(torch.randn(n, 3, generator=gen) - 3),
        opacities=torch.rand(n, generator=gen) * 0.98 + 0.01,
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=gen),
    )


@pytest.mark.parametrize("degree", [0, 1, 3, 4])
def test_round_trip_is_lossless_within_float32(tmp_path, degree):
    g = random_gaussians(50, degree)
    path = save_ply(g, tmp_path / "scene.ply", sh_degree=None)  # every band (degree 4 is not the default)
    back = load_ply(path)
    assert back.sh_degree == degree and len(back) == 50
    for name in ("means", "sh", "quats"):
        torch.testing.assert_close(getattr(back, name), getattr(g, name), rtol=0, atol=0 if name != "quats" else 2e-7)
    torch.testing.assert_close(back.scales, g.scales, rtol=1e-6, atol=0)
    torch.testing.assert_close(back.opacities, g.opacities, rtol=1e-6, atol=1e-7)


def test_file_layout_is_the_inria_one(tmp_path):
    g = random_gaussians(3, 1, seed=1)
    path = save_ply(g, tmp_path / "s.ply")
    raw = path.read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    lines = header.decode().splitlines()
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 3"]
    props = [line.split()[2] for line in lines if line.startswith("property")]
    assert all(line.split()[1] == "float" for line in lines if line.startswith("property"))
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(9)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    expected += ["rot_0", "rot_1", "rot_2", "rot_3"]
    assert props == expected
    assert len(body) == 3 * len(expected) * 4
    row = struct.unpack(f"<{len(expected)}f", body[: len(expected) * 4])  # the first splat, decoded by hand
    values = dict(zip(expected, row, strict=True))
    assert values["x"] == pytest.approx(g.means[0, 0].item(), abs=0)
    assert values["nx"] == 0.0
    # channel-major f_rest: 3 coefficients of red, then green, then blue
    assert values["f_rest_0"] == g.sh[0, 1, 0].item() and values["f_rest_2"] == g.sh[0, 3, 0].item()
    assert values["f_rest_3"] == g.sh[0, 1, 1].item() and values["f_rest_8"] == g.sh[0, 3, 2].item()
    o = g.opacities[0].item()
    assert values["opacity"] == pytest.approx(math.log(o / (1 - o)), rel=1e-6)
    assert values["scale_1"] == pytest.approx(math.log(g.scales[0, 1].item()), rel=1e-6)
    assert [values[f"rot_{i}"] for i in range(4)] == pytest.approx(g.quats[0].tolist(), abs=1e-7)


def _write_foreign(path, columns: dict[str, np.ndarray], dtype="<f4", text=False):
    arr = np.empty(len(next(iter(columns.values()))), dtype=[(k, dtype) for k in columns])
    for key, value in columns.items():
        arr[key] = value
    PlyData([PlyElement.describe(arr, "vertex")], text=text).write(str(path))


def test_foreign_layout_other_order_no_normals_extra_props_unnormalised_quats(tmp_path):
    rng = np.random.default_rng(0)
    n = 7
    sh_rest = rng.normal(size=(n, 3, 3))  # [N, channel, coeff]: degree 1
    quats = rng.normal(size=(n, 4)) * 3.0
    cols = {
        "rot_2": quats[:, 2],
        "opacity": rng.normal(size=n),
        "f_rest_8": sh_rest[:, 2, 2],
        "z": rng.normal(size=n),
        "scale_0": rng.normal(size=n) - 2,
        "confidence": rng.random(size=n),  # an extra property
        "y": rng.normal(size=n),
        "rot_0": quats[:, 0],
        "f_dc_1": rng.normal(size=n),
        "scale_2": rng.normal(size=n) - 2,
        "rot_3": quats[:, 3],
        "x": rng.normal(size=n),
        "f_dc_0": rng.normal(size=n),
        "scale_1": rng.normal(size=n) - 2,
        "f_dc_2": rng.normal(size=n),
        "rot_1": quats[:, 1],
    }
    for c in range(3):
        for j in range(3):
            cols[f"f_rest_{c * 3 + j}"] = sh_rest[:, c, j]
    path = tmp_path / "foreign.ply"
    _write_foreign(path, cols, dtype="<f8")
    g = load_ply(path, dtype=torch.float64)
    assert len(g) == n and g.sh_degree == 1
    np.testing.assert_allclose(g.means.numpy(), np.stack([cols["x"], cols["y"], cols["z"]], 1))
    np.testing.assert_allclose(g.sh[:, 1:, :].numpy(), sh_rest.transpose(0, 2, 1))
    np.testing.assert_allclose(g.quats.numpy(), quats / np.linalg.norm(quats, axis=1, keepdims=True))
    np.testing.assert_allclose(g.opacities.numpy(), 1 / (1 + np.exp(-cols["opacity"])))
    np.testing.assert_allclose(g.scales[:, 0].numpy(), np.exp(cols["scale_0"]))


def _minimal_cols(n=4):
    cols = {k: np.zeros(n) for k in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity")}
    cols.update({f"scale_{i}": np.full(n, -2.0) for i in range(3)})
    cols.update({"rot_0": np.ones(n), "rot_1": np.zeros(n), "rot_2": np.zeros(n), "rot_3": np.zeros(n)})
    return cols


def test_ascii_ply_and_load_gaussians_dispatch(tmp_path):
    path = tmp_path / "a.ply"
    _write_foreign(path, _minimal_cols(), text=True)
    assert len(load_gaussians(path)) == 4
    assert load_gaussians(path).sh_degree == 0


def _expect_error(path, match):
    with pytest.raises(UserInputError, match=match) as info:
        load_ply(path)
    assert str(path) in str(info.value)


def test_rejects_bad_files(tmp_path):
    _expect_error(tmp_path / "missing.ply", "does not exist")
    (tmp_path / "text.ply").write_text("hello, not a ply\n")
    _expect_error(tmp_path / "text.ply", "not a PLY file")

    cloud = tmp_path / "cloud.ply"
    _write_foreign(cloud, {"x": np.zeros(3), "y": np.zeros(3), "z": np.zeros(3), "red": np.zeros(3)})
    _expect_error(cloud, "point cloud.*missing properties: f_dc_0")

    g = random_gaussians(20, 2)
    good = save_ply(g, tmp_path / "good.ply")
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(good.read_bytes()[:-100])
    _expect_error(truncated, "truncated")

    cols = _minimal_cols()
    cols["y"][2] = np.nan
    _write_foreign(tmp_path / "nan.ply", cols)
    _expect_error(tmp_path / "nan.ply", "1 of 4 splats contain NaN")

    _write_foreign(tmp_path / "empty.ply", {k: v[:0] for k, v in _minimal_cols().items()})
    _expect_error(tmp_path / "empty.ply", "zero splats")

    cols = _minimal_cols()
    cols["rot_0"][1] = 0.0
    _write_foreign(tmp_path / "zero_rot.ply", cols)
    _expect_error(tmp_path / "zero_rot.ply", "zero-length rotation")

    cols = _minimal_cols()
    cols.update({f"f_rest_{i}": np.zeros(4) for i in range(5)})
    _write_foreign(tmp_path / "bad_rest.ply", cols)
    _expect_error(tmp_path / "bad_rest.ply", "5 f_rest_")

    other = tmp_path / "scene.txt"
    other.write_text("x")
    with pytest.raises(UserInputError, match="unknown splat file type"):
        load_gaussians(other)


def test_save_refuses_what_cannot_be_read_back_and_is_atomic(tmp_path):
    g = random_gaussians(5, 0)
    g.means[2, 1] = float("nan")
    with pytest.raises(ValueError, match="1 of 5 splats have NaN"):
        save_ply(g, tmp_path / "x.ply")
    with pytest.raises(ValueError, match="at least one splat"):
        save_ply(random_gaussians(5, 0)[:0], tmp_path / "x.ply")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    # opacities of exactly 0 and 1 stay finite on disk
    g = random_gaussians(2, 0)
    g.opacities[:] = torch.tensor([0.0, 1.0])
    back = load_gaussians(save_gaussians(g, tmp_path / "edge.ply"))
    torch.testing.assert_close(back.opacities, torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
