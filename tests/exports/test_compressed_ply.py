"""PlayCanvas compressed PLY: the header splat-transform checks for, quantisation bounds, gsply's reader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from export_helpers import random_gaussians
from plyfile import PlyData

from vist3a.errors import UserInputError
from vist3a.exports.compressed_ply import (
    CHUNK_PROPERTIES,
    is_compressed_ply,
    load_compressed_ply,
    morton_order,
    save_compressed_ply,
)


def test_header_is_the_one_splat_transform_accepts(tmp_path):
    """splat-transform's isCompressedPly: float chunk props (18), uint vertex props, uchar f_rest_0..44."""
    path = save_compressed_ply(random_gaussians(600, 4), tmp_path / "s.compressed.ply")
    ply = PlyData.read(str(path))
    assert [el.name for el in ply.elements] == ["chunk", "vertex", "sh"]
    assert ply["chunk"].count == math.ceil(600 / 256) == 3
    assert [(p.name, p.val_dtype) for p in ply["chunk"].properties] == [(n, "f4") for n in CHUNK_PROPERTIES]
    names = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
    assert [(p.name, p.val_dtype) for p in ply["vertex"].properties] == [(n, "u4") for n in names]
    assert [(p.name, p.val_dtype) for p in ply["sh"].properties] == [(f"f_rest_{i}", "u1") for i in range(45)]
    assert ply.header.splitlines()[1] == "format binary_little_endian 1.0"
    assert is_compressed_ply(path)


def test_round_trip_is_within_the_chunk_quantisation(tmp_path):
    g = random_gaussians(700, 3, seed=2)
    path = save_compressed_ply(g, tmp_path / "s.ply")
    back = load_compressed_ply(path, dtype=torch.float64)
    ref = g[torch.from_numpy(morton_order(g.means.numpy()))]  # the file is in Morton order
    chunk = PlyData.read(str(path))["chunk"].data
    ci = np.arange(700) // 256
    span = np.stack([chunk[f"max_{a}"] - chunk[f"min_{a}"] for a in "xyz"], 1)[ci]
    step = np.array([2047, 1023, 2047])
    assert np.all(np.abs(back.means.numpy() - ref.means.numpy()) <= span / step / 2 + 1e-6)
    scale_span = np.stack([chunk[f"max_scale_{a}"] - chunk[f"min_scale_{a}"] for a in "xyz"], 1)[ci]
    assert np.all(np.abs(back.scales.log().numpy() - ref.scales.log().numpy()) <= scale_span / step / 2 + 1e-6)
    assert (back.opacities - ref.opacities).abs().max() <= 0.5 / 255 + 1e-7
    rgb_span = np.stack([chunk[f"max_{c}"] - chunk[f"min_{c}"] for c in "rgb"], 1)[ci]
    rgb_err = np.abs(back.sh[:, 0].numpy() - ref.sh[:, 0].numpy()) * 0.28209479177387814
    assert np.all(rgb_err <= rgb_span / 255 / 2 + 1e-6)
    assert (back.sh[:, 1:] - ref.sh[:, 1:]).abs().max() <= 8 / 256 + 1e-9  # 8-bit over [-4, 4], truncated
    angle = 2 * torch.acos((back.quats * ref.quats).sum(-1).abs().clamp(max=1))
    assert angle.max() < math.radians(0.25)


def test_degree_is_capped_at_3_and_degree_0_has_no_sh_element(tmp_path):
    g = random_gaussians(10, 4)
    assert load_compressed_ply(save_compressed_ply(g, tmp_path / "a.ply", sh_degree=None)).sh_degree == 3
    path = save_compressed_ply(g, tmp_path / "b.ply", sh_degree=0)
    assert [el.name for el in PlyData.read(str(path)).elements] == ["chunk", "vertex"]
    assert load_compressed_ply(path).sh_degree == 0


def test_gsply_reads_what_we_read(tmp_path):
    gsply = pytest.importorskip("gsply")
    path = save_compressed_ply(random_gaussians(300, 3, seed=5), tmp_path / "s.compressed.ply")
    ours = load_compressed_ply(path, dtype=torch.float64)
    theirs = gsply.plyread(path)
    np.testing.assert_allclose(theirs.means, ours.means.numpy(), atol=1e-5)
    np.testing.assert_allclose(theirs.scales, ours.scales.log().numpy(), atol=1e-5)
    # gsply stores opacity logits and clamps opacity 0 (one 8-bit level) to a small epsilon
    np.testing.assert_allclose(1 / (1 + np.exp(-theirs.opacities)), ours.opacities.numpy(), atol=1e-4)
    np.testing.assert_allclose(theirs.sh0, ours.sh[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(theirs.shN, ours.sh[:, 1:].numpy(), atol=1e-5)
    q = theirs.quats / np.linalg.norm(theirs.quats, axis=1, keepdims=True)
    assert np.minimum(np.abs(q - ours.quats.numpy()).max(1), np.abs(q + ours.quats.numpy()).max(1)).max() < 1e-5


def test_morton_order_is_a_permutation_that_makes_chunks_compact():
    rng = np.random.default_rng(0)
    means = rng.uniform(-1, 1, (4096, 3))
    order = morton_order(means)
    assert sorted(order.tolist()) == list(range(4096))
    extent = np.ptp(means[order].reshape(16, 256, 3), axis=1).prod(1).mean()
    assert extent < 0.25 * np.ptp(means.reshape(16, 256, 3), axis=1).prod(1).mean()


def test_not_compressed_is_a_user_error(tmp_path):
    from vist3a.splats import save_ply

    path = save_ply(random_gaussians(5, 0).to(dtype=torch.float32), tmp_path / "plain.ply")
    assert not is_compressed_ply(path)
    with pytest.raises(UserInputError, match="not a compressed PLY"):
        load_compressed_ply(path)
