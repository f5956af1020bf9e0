"""AnySplat Gaussian ops against the official oracles, analytic cases, a naive reference and gradcheck."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vist3a.cameras import quat_to_rotmat
from vist3a.recon.gaussian_ops import (
    GAUSSIAN_KEYS,
    anysplat_gaussians_from_raw,
    flatten_pixels,
    official_to_gaussians,
    raw_gaussian_dim,
    scene_scale,
    unproject_depth,
    voxel_fuse,
    voxel_inverse,
    voxelize_ratio,
)

CASES = ["anysplat_tiny", "anysplat_stitched_tiny"]


def assert_oracle_close(x: torch.Tensor, ref: torch.Tensor, name: str = "") -> None:
    """README tolerance: ``|x − ref| ≤ 1e-4·max|ref| + 1e-3·|ref|`` elementwise."""
    assert x.shape == ref.shape, f"{name}: shape {list(x.shape)} != {list(ref.shape)}"
    x, ref = x.double(), ref.double()
    bound = 1e-4 * ref.abs().max() + 1e-3 * ref.abs()
    excess = ((x - ref).abs() - bound).max()
    assert excess <= 0, f"{name}: exceeds the oracle tolerance by {float(excess):.3g}"


class Case:
    def __init__(self, root: Path, name: str) -> None:
        folder = root / name
        self.config = json.loads((folder / "config.json").read_text())
        self.extra = load_file(str(folder / "outputs_extra.safetensors"))
        self.inter = load_file(str(folder / "intermediates.safetensors"))
        self.outputs = load_file(str(folder / "outputs.safetensors"))
        self.novoxel = load_file(str(folder / "outputs_novoxel.safetensors"))

    @property
    def voxel_size(self) -> float:
        return self.config["voxelization"]["voxel_size"]

    @property
    def sh_degree(self) -> int:
        (encoder_cfg,) = [v for k, v in self.config["constructor"].items() if k.startswith("AnySplat.encoder_cfg")]
        return encoder_cfg["gaussian_adapter"]["sh_degree"]

    def pixel_rows(self):
        return flatten_pixels(self.extra["anchor_feats"][0], self.inter["pts_all"][0], self.extra["conf"][0])


@pytest.fixture(params=CASES)
def case(request, oracle_dir) -> Case:
    return Case(oracle_dir, request.param)


# ---------------------------------------------------------------------------- oracle
def test_voxel_fuse_matches_oracle(case):
    points, feats, conf = case.pixel_rows()
    fused_points, fused_feats = voxel_fuse(points, feats, conf, case.voxel_size)
    ref_points, ref_feats = case.inter["voxel.0.out_pts"], case.inter["voxel.0.out_feats"]
    assert fused_points.shape[0] == ref_points.shape[0] == case.config["voxelization"]["num_voxels"]
    assert_oracle_close(fused_points, ref_points, "out_pts")
    assert_oracle_close(fused_feats, ref_feats, "out_feats")


def test_novoxel_gaussians_match_oracle(case):
    points, feats, _ = case.pixel_rows()
    gaussians = anysplat_gaussians_from_raw(feats, points, case.sh_degree)
    assert set(gaussians) == set(GAUSSIAN_KEYS)
    for key in GAUSSIAN_KEYS:
        assert_oracle_close(gaussians[key], case.novoxel[f"gaussians.{key}"][0], key)


def test_voxelised_gaussians_match_oracle(case):
    points, feats, conf = case.pixel_rows()
    fused_points, fused_feats = voxel_fuse(points, feats, conf, case.voxel_size)
    gaussians = anysplat_gaussians_from_raw(fused_feats, fused_points, case.sh_degree)
    for key in GAUSSIAN_KEYS:
        assert_oracle_close(gaussians[key], case.outputs[f"gaussians.{key}"][0], key)
    num_pixels = points.shape[0]
    assert voxelize_ratio(fused_points.shape[0], num_pixels) == pytest.approx(
        float(case.outputs["infos.voxelize_ratio"]), rel=1e-6
    )
    assert voxelize_ratio(num_pixels, num_pixels) == pytest.approx(float(case.novoxel["infos.voxelize_ratio"]))


def test_unproject_depth_matches_oracle(case):
    depth = case.outputs["depth_dict.depth"][..., 0]
    points = unproject_depth(depth, case.inter["pose.extrinsic_w2c_3x4"], case.inter["pose.intrinsic_pixels"])
    assert_oracle_close(points, case.inter["pts_all"], "pts_all")


def test_scene_scale_matches_oracle(case):
    value = scene_scale(case.inter["pts_all"])
    assert_oracle_close(value, case.outputs["infos.scene_scale"], "scene_scale")
    assert_oracle_close(value, case.novoxel["infos.scene_scale"], "scene_scale (novoxel)")


def test_official_to_gaussians_conventions(case):
    ref = {key: case.novoxel[f"gaussians.{key}"][0] for key in GAUSSIAN_KEYS}
    g = official_to_gaussians(ref)
    assert len(g) == ref["means"].shape[0]
    assert g.sh_degree == case.sh_degree
    torch.testing.assert_close(g.quats[:, 1:], ref["rotations"][:, :3], rtol=0, atol=0)
    torch.testing.assert_close(g.quats[:, 0], ref["rotations"][:, 3], rtol=0, atol=0)
    torch.testing.assert_close(g.sh[:, 0], ref["harmonics"][:, :, 0], rtol=0, atol=0)
    # covariance rebuilt from the wxyz container agrees with the official one
    rot = quat_to_rotmat(g.quats, scalar_first=True)
    cov = rot @ torch.diag_embed(g.scales.square()) @ rot.transpose(-1, -2)
    assert_oracle_close(cov, ref["covariances"], "covariances from Gaussians")
    with pytest.raises(ValueError, match="one scene"):
        official_to_gaussians({k: case.novoxel[f"gaussians.{k}"] for k in GAUSSIAN_KEYS})


# ---------------------------------------------------------------------------- analytic / reference
def naive_voxel_fuse(points, feats, conf, voxel_size):
    """Python-loop reference: group by rounded index, softmax-like weights, sort keys lexicographically."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(points.tolist()):
        key = tuple(round(c / voxel_size) for c in p)  # Python's round is half-to-even too
        groups.setdefault(key, []).append(i)
    out_p, out_f = [], []
    for key in sorted(groups):
        idx = torch.tensor(groups[key])
        e = torch.exp(conf[idx] - conf[idx].max())
        w = e / (e.sum() + 1e-6)
        out_p.append((points[idx] * w[:, None]).sum(0))
        out_f.append((feats[idx] * w[:, None]).sum(0))
    return torch.stack(out_p), torch.stack(out_f)


def test_voxel_fuse_matches_naive_reference():
    gen = torch.Generator().manual_seed(1)
    points = torch.randn(300, 3, generator=gen, dtype=torch.float64) * 2
    feats = torch.randn(300, 5, generator=gen, dtype=torch.float64)
    conf = torch.randn(300, generator=gen, dtype=torch.float64) * 3
    got_p, got_f = voxel_fuse(points, feats, conf, 0.7)
    ref_p, ref_f = naive_voxel_fuse(points, feats, conf, 0.7)
    assert got_p.shape[0] < 300  # some voxels really merge points
    torch.testing.assert_close(got_p, ref_p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_f, ref_f, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [3, 10**5, 2**40])  # the last spans too much for one int64 key
def test_voxel_inverse_matches_row_wise_unique(scale):
    gen = torch.Generator().manual_seed(scale % 97)
    index = torch.randint(-scale, scale, (2000, 3), generator=gen)
    index[1000:] = index[:1000]  # repeated voxels
    index[:, 1][::7] = index[0, 1]  # ties on single axes, so the order of the later digits matters
    expected = torch.unique(index, dim=0, return_inverse=True)[1]
    assert torch.equal(voxel_inverse(index), expected)


def test_voxel_fuse_hand_case():
    # voxel size 1: x = 0.5 rounds to 0 (half to even), 1.5 to 2, 2.4 to 2, -0.2 to 0
    points = torch.tensor([[0.5, 0, 0], [1.5, 0, 0], [2.4, 0, 0], [-0.2, 0, 0], [0, -3.0, 0]])
    feats = torch.tensor([[1.0], [10.0], [20.0], [3.0], [7.0]])
    conf = torch.tensor([0.0, math.log(3.0), 0.0, math.log(3.0), 5.0])
    fused_p, fused_f = voxel_fuse(points, feats, conf, 1.0)
    # voxels in lexicographic order: (0,-3,0), (0,0,0), (2,0,0)
    expected_p = torch.tensor([[0.0, -3.0, 0.0], [(0.5 + 3 * -0.2) / 4, 0, 0], [(3 * 1.5 + 2.4) / 4, 0, 0]])
    expected_f = torch.tensor([[7.0], [(1 + 3 * 3) / 4], [(3 * 10 + 20) / 4]])
    # the +1e-6 in the denominator shrinks every weight by a factor 1 / (1 + 1e-6 / Σ)
    torch.testing.assert_close(fused_p, expected_p, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(fused_f, expected_f, rtol=2e-6, atol=1e-6)


def test_voxel_fuse_gradcheck():
    gen = torch.Generator().manual_seed(2)
    centres = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [1.0, 1.0, -1.0]], dtype=torch.float64)
    assign = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    # offsets well inside the voxel so finite differences never change the assignment
    points = (centres[assign] + 0.3 * (torch.rand(7, 3, generator=gen, dtype=torch.float64) - 0.5)).requires_grad_()
    feats = torch.randn(7, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    conf = torch.randn(7, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, f, c: voxel_fuse(p, f, c, 1.0), (points, feats, conf))


def test_voxel_fuse_validation():
    with pytest.raises(ValueError, match="voxel_size"):
        voxel_fuse(torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="conf"):
        voxel_fuse(torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(3), 0.1)
    empty_p, empty_f = voxel_fuse(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0), 0.1)
    assert empty_p.shape == (0, 3) and empty_f.shape == (0, 4)


def random_rotation(gen: torch.Generator, batch: int) -> torch.Tensor:
    q = torch.randn(batch, 4, generator=gen, dtype=torch.float64)
    return quat_to_rotmat(q / q.norm(dim=-1, keepdim=True))


def test_unproject_depth_round_trip_with_skew():
    gen = torch.Generator().manual_seed(3)
    batch, views, height, width = 2, 3, 5, 7
    rot = random_rotation(gen, batch * views).reshape(batch, views, 3, 3)
    trans = torch.randn(batch, views, 3, 1, generator=gen, dtype=torch.float64)
    w2c = torch.cat((rot, trans), -1)
    K = torch.tensor([[30.0, 0.7, 3.2], [0.0, 25.0, 2.1], [0.0, 0.0, 1.0]], dtype=torch.float64).expand(
        batch, views, 3, 3
    )
    depth = 1 + torch.rand(batch, views, height, width, generator=gen, dtype=torch.float64)
    points = unproject_depth(depth, w2c, K)
    assert points.shape == (batch, views, height, width, 3)
    cam = torch.einsum("bvij,bvhwj->bvhwi", rot, points) + trans[..., None, None, :, 0]
    torch.testing.assert_close(cam[..., 2], depth)
    pix = torch.einsum("bvij,bvhwj->bvhwi", K, cam)
    pix = pix[..., :2] / pix[..., 2:]
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    torch.testing.assert_close(pix[..., 0], cols.double().expand_as(depth))
    torch.testing.assert_close(pix[..., 1], rows.double().expand_as(depth))
    # a 4x4 extrinsic gives the same points
    torch.testing.assert_close(
        unproject_depth(depth, torch.cat((w2c, torch.zeros_like(w2c[..., :1, :])), -2), K), points
    )


def test_gaussians_from_raw_analytic():
    sh_degree = 2
    dim = raw_gaussian_dim(sh_degree)
    assert dim == 1 + 7 + 27
    raw = torch.zeros(3, dim, dtype=torch.float64)
    raw[:, 1:4] = math.log(math.e - 1)  # softplus = 1 -> scale 0.001
    raw[1, 1] = 1e4  # huge -> clamped at 0.3
    raw[:, 4:8] = torch.tensor([0.0, 0.0, 0.0, 2.0])  # identity (x, y, z, w)
    half = math.sqrt(0.5)
    raw[2, 4:8] = torch.tensor([0.0, 0.0, half, half]) * 3  # 90° about z, not unit norm
    raw[:, 8:] = 1.0
    raw[0, 0] = math.log(3.0)  # sigmoid -> 0.75
    means = torch.randn(3, 3, dtype=torch.float64)
    g = anysplat_gaussians_from_raw(raw, means, sh_degree)
    assert g["means"] is means
    torch.testing.assert_close(g["opacities"], torch.tensor([0.75, 0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(g["scales"][0], torch.full((3,), 1e-3, dtype=torch.float64))
    torch.testing.assert_close(g["scales"][1], torch.tensor([0.3, 1e-3, 1e-3], dtype=torch.float64))
    torch.testing.assert_close(g["rotations"][0], torch.tensor([0, 0, 0, 2 / (2 + 1e-8)], dtype=torch.float64))
    mask = torch.tensor([1.0] + [0.025] * 3 + [0.00625] * 5, dtype=torch.float64)
    torch.testing.assert_close(g["harmonics"], mask.expand(3, 3, 9))
    torch.testing.assert_close(g["covariances"][1], torch.diag(torch.tensor([0.09, 1e-6, 1e-6], dtype=torch.float64)))
    # scales (sx, sy, sz) rotated by 90° about z: variances of x and y swap
    raw[2, 1:4] = torch.tensor([math.log(math.e - 1), 5.0, 0.0], dtype=torch.float64)
    g = anysplat_gaussians_from_raw(raw, means, sh_degree)
    sx, sy, sz = g["scales"][2].tolist()
    torch.testing.assert_close(
        g["covariances"][2], torch.diag(torch.tensor([sy**2, sx**2, sz**2], dtype=torch.float64))
    )


def test_gaussians_from_raw_zero_quaternion_and_validation():
    raw = torch.zeros(1, 2, raw_gaussian_dim(0))
    g = anysplat_gaussians_from_raw(raw, torch.zeros(1, 2, 3), 0)
    assert torch.isfinite(g["covariances"]).all()
    scale = 0.001 * math.log(2.0)
    torch.testing.assert_close(g["covariances"][0, 0], torch.eye(3) * scale**2)
    with pytest.raises(ValueError, match="sh_degree=4"):
        anysplat_gaussians_from_raw(torch.zeros(5, 10), torch.zeros(5, 3), 4)
    with pytest.raises(ValueError, match="means"):
        anysplat_gaussians_from_raw(torch.zeros(5, raw_gaussian_dim(1)), torch.zeros(4, 3), 1)


@pytest.mark.gpu
def test_voxel_fuse_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(7)
    points = torch.randn(20000, 3, generator=gen) * 2
    feats = torch.randn(20000, 11, generator=gen)
    conf = torch.randn(20000, generator=gen) * 2
    cpu_p, cpu_f = voxel_fuse(points, feats, conf, 0.25)
    leaves = [t.cuda().requires_grad_() for t in (points, feats, conf)]
    cuda_p, cuda_f = voxel_fuse(*leaves, 0.25)
    assert cuda_p.shape == cpu_p.shape and cuda_p.is_cuda
    torch.testing.assert_close(cuda_p.cpu(), cpu_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cuda_f.cpu(), cpu_f, rtol=1e-5, atol=1e-6)
    (cuda_p.square().sum() + cuda_f.sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)
