"""Pose, trajectory and pointmap metrics against analytic cases and independent numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vist3a.cameras import invert_rigid, look_at_w2c
from vist3a.evaluation.alignment3d import umeyama
from vist3a.evaluation.pointmap_metrics import acc_comp_nc, nearest_neighbors, pointmap_metrics, pointmap_normals
from vist3a.evaluation.pose_metrics import (
    pairwise_pose_errors,
    pose_auc,
    relative_pose_metrics,
    rotation_angle_deg,
    trajectory_metrics,
)


def axis_angle(axis, degrees: float) -> torch.Tensor:
    """Rodrigues' formula in numpy (independent of the code under test), as float64 torch."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = math.radians(degrees)
    return torch.from_numpy(np.eye(3) + math.sin(a) * kx + (1 - math.cos(a)) * kx @ kx)


def orbit_w2c(n: int = 6) -> torch.Tensor:
    eyes = [torch.tensor([3.0 * math.cos(a), 0.3 * i, 3.0 * math.sin(a)]) for i, a in enumerate(np.linspace(0, 2, n))]
    return torch.stack([look_at_w2c(e, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])) for e in eyes]).double()


def random_sim3(seed: int):
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))[0]
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return 2.5, q, torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)


def test_umeyama_recovers_a_known_similarity_and_rigid_transform():
    scale, rot, trans = random_sim3(1)
    src = torch.randn(50, 3, dtype=torch.float64)
    sim = umeyama(src, scale * src @ rot.T + trans)
    assert float(sim.scale) == pytest.approx(scale, abs=1e-9)
    torch.testing.assert_close(sim.rotation, rot, atol=1e-9, rtol=0)
    torch.testing.assert_close(sim.translation, trans, atol=1e-9, rtol=0)
    rigid = umeyama(src, src @ rot.T + trans, with_scale=False)
    assert float(rigid.scale) == 1.0
    torch.testing.assert_close(rigid.rotation, rot, atol=1e-9, rtol=0)
    # A mirrored target still gets a proper rotation (det +1).
    assert float(torch.det(umeyama(src, src * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)).rotation)) > 0


def test_rotation_angle_of_known_rotations():
    for deg in (0.0, 5.0, 90.0, 179.0):
        assert float(rotation_angle_deg(axis_angle([1, 2, 3], deg))) == pytest.approx(deg, abs=1e-5)


def test_pairwise_errors_of_one_rotated_camera_are_the_rotation_angle():
    gt = orbit_w2c(5)
    pred = gt.clone()
    pred[2, :3, :3] = axis_angle([0, 0, 1], 10.0) @ pred[2, :3, :3]  # camera 2 rolls 10 deg about its axis
    pred[2, :3, 3] = axis_angle([0, 0, 1], 10.0) @ pred[2, :3, 3]  # same centre
    rot, _ = pairwise_pose_errors(pred, gt)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    expected = [10.0 if 2 in p else 0.0 for p in pairs]
    torch.testing.assert_close(rot.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-3, rtol=0)
    metrics = relative_pose_metrics(pred, gt)
    assert metrics["rra@5"] == pytest.approx(6 / 10)  # the 4 pairs with camera 2 fail


def test_pairwise_errors_ignore_a_global_similarity_and_see_a_moved_centre():
    gt = orbit_w2c(4)
    scale, rot, trans = random_sim3(2)
    c2w = invert_rigid(gt)
    moved = c2w.clone()
    moved[:, :3, :3] = rot @ c2w[:, :3, :3]
    moved[:, :3, 3] = scale * c2w[:, :3, 3] @ rot.T + trans
    rot_err, trans_err = pairwise_pose_errors(invert_rigid(moved), gt)
    assert float(rot_err.max()) < 1e-3 and float(trans_err.max()) < 1e-3
    # Move camera 3's centre sideways (orientation kept): only pairs with camera 3 get translation errors.
    shifted = c2w.clone()
    shifted[3, :3, 3] += torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)
    rot_err, trans_err = pairwise_pose_errors(invert_rigid(shifted), gt)
    assert float(rot_err.max()) < 1e-3
    # Pair order (0,1), (0,2), (0,3), (1,2), (1,3), (2,3): only (i, 3) move.
    assert float(trans_err[[0, 1, 3]].max()) < 1e-3
    assert float(trans_err[[2, 4, 5]].min()) > 5.0


def test_auc_matches_a_numpy_histogram_and_analytic_values():
    rot = torch.tensor([0.0, 2.5, 15.5, 40.0, 7.0])
    trans = torch.tensor([0.5, 0.2, 3.0, 1.0, 29.5])
    worst = np.maximum(rot.numpy(), trans.numpy())
    hist, _ = np.histogram(worst, bins=np.arange(31))  # the mAA reference: cumulative accuracy per 1-degree bin
    reference = float(np.mean(np.cumsum(hist) / len(worst)))
    assert pose_auc(rot, trans, 30) == pytest.approx(reference, abs=1e-9)
    assert pose_auc(torch.zeros(3), torch.zeros(3)) == 1.0
    assert pose_auc(torch.full((3,), 15.5), torch.zeros(3)) == pytest.approx(15 / 30)


def test_trajectory_metrics_zero_for_a_similar_trajectory_and_known_for_a_shifted_camera():
    gt = orbit_w2c(6)
    scale, rot, trans = random_sim3(3)
    c2w = invert_rigid(gt)
    moved = c2w.clone()
    moved[:, :3, :3] = rot @ c2w[:, :3, :3]
    moved[:, :3, 3] = scale * c2w[:, :3, 3] @ rot.T + trans
    same = trajectory_metrics(invert_rigid(moved), gt)
    assert max(same.values()) < 1e-5
    # Camera 2 turned in place by 4 deg: centres unchanged (ATE 0); motions 1->2 and 2->3 are off by 4 deg, and
    # motion 2->3's translation, seen from the turned camera, is off by |Rd^T v - v| with v = R2^T (c3 - c2).
    rd = axis_angle([0, 1, 0], 4.0)
    turned = c2w.clone()
    turned[2, :3, :3] = turned[2, :3, :3] @ rd
    out = trajectory_metrics(invert_rigid(turned), gt)
    assert out["ate"] < 1e-6
    assert out["rpe_r"] == pytest.approx(math.sqrt(2 * 4.0**2 / 5), abs=1e-4)
    r2, v = c2w[2, :3, :3].numpy(), (c2w[3, :3, 3] - c2w[2, :3, 3]).numpy()
    v = r2.T @ v
    assert out["rpe_t"] == pytest.approx(np.linalg.norm(rd.numpy().T @ v - v) / math.sqrt(5), rel=1e-5)


def test_trajectory_ate_of_a_noisy_centre_equals_its_rms_displacement_after_alignment():
    gt = orbit_w2c(8)
    c2w = invert_rigid(gt)
    noisy = c2w.clone()
    noisy[:, :3, 3] += 0.05 * torch.randn(8, 3, dtype=torch.float64)
    sim = umeyama(noisy[:, :3, 3], c2w[:, :3, 3])
    residual = sim.apply(noisy[:, :3, 3]) - c2w[:, :3, 3]
    expected = float(np.sqrt((residual.numpy() ** 2).sum(1).mean()))
    assert trajectory_metrics(invert_rigid(noisy), gt)["ate"] == pytest.approx(expected, rel=1e-5)


def plane_grid(n: int = 20, z: float = 0.0) -> torch.Tensor:
    u, v = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    return torch.stack([u, v, torch.full_like(u, z)], -1)  # [n, n, 3]


def test_acc_comp_of_point_sets_with_known_distances():
    gt = plane_grid().reshape(-1, 3)
    lifted = gt + torch.tensor([0.0, 0.0, 0.1])
    out = acc_comp_nc(lifted, gt)
    assert out["acc"] == pytest.approx(0.1, abs=1e-6) and out["comp"] == pytest.approx(0.1, abs=1e-6)
    # A half of the true points predicted exactly: accuracy 0, completeness known per missing point.
    half = gt[gt[:, 0] <= 0.5]
    out = acc_comp_nc(half, gt)
    assert out["acc"] == pytest.approx(0.0, abs=1e-6)
    missing = gt[gt[:, 0] > 0.5]
    expected = (missing[:, 0] - half[:, 0].max()).clamp_min(0)
    assert out["comp"] == pytest.approx(float(expected.sum() / len(gt)), abs=1e-5)
    assert out["acc_med"] == 0.0


def test_nearest_neighbors_match_brute_force_numpy_over_chunks():
    a, b = torch.rand(300, 3), torch.rand(77, 3)
    dist, idx = nearest_neighbors(a, b, chunk=64)
    d = np.linalg.norm(a.numpy()[:, None] - b.numpy()[None], axis=-1)
    np.testing.assert_allclose(dist.numpy(), d.min(1), atol=1e-5)
    np.testing.assert_array_equal(idx.numpy(), d.argmin(1))


def test_normals_and_normal_consistency():
    grid = plane_grid()
    normals = pointmap_normals(grid)
    torch.testing.assert_close(normals[..., 2].abs(), torch.ones(20, 20))
    # A plane tilted by 60 degrees about x has |n . z| = cos 60 = 0.5 against the flat one.
    tilted = grid @ axis_angle([1, 0, 0], 60.0).float().T
    out = acc_comp_nc(tilted.reshape(-1, 3), grid.reshape(-1, 3), pointmap_normals(tilted).reshape(-1, 3),
                      normals.reshape(-1, 3))
    assert out["nc"] == pytest.approx(0.5, abs=1e-4)


def test_pointmap_metrics_align_a_similar_prediction_to_zero_error():
    gt = torch.stack([plane_grid(16, z) + 0.05 * torch.sin(7 * plane_grid(16, z)) for z in (0.0, 0.4)])
    scale, rot, trans = random_sim3(4)
    pred = (scale * gt.double() @ rot.T + trans).float()
    mask = torch.ones(gt.shape[:-1], dtype=torch.bool)
    out = pointmap_metrics(pred, gt, mask)
    assert out["acc"] < 1e-4 and out["comp"] < 1e-4 and out["nc"] > 0.9999
    unaligned = pointmap_metrics(pred, gt, mask, align=False)
    assert unaligned["acc"] > 0.5


def test_nc_leaves_out_normals_next_to_missing_geometry():
    pred = torch.stack([plane_grid(16, 0.4) @ axis_angle([1, 0, 0], 30.0).float().T])
    mask = torch.ones(pred.shape[:-1], dtype=torch.bool)
    mask[0, 5:9, 6:10] = False  # no ground truth there
    gt = torch.where(mask[..., None], pred, torch.full_like(pred, float("nan")))
    out = pointmap_metrics(pred, gt, mask, align=False, max_points=None)
    assert out["acc"] < 1e-6 and out["comp"] < 1e-6 and out["nc"] > 0.9999 and out["nc_med"] > 0.9999
    # holes filled with some point instead (here the origin) give the pixels around them wrong normals
    filled = torch.where(mask[..., None], pred, torch.zeros_like(pred))
    assert pointmap_metrics(pred, filled, mask, align=False, max_points=None)["nc"] < 0.99
