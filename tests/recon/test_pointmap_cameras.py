"""Cameras from pointmaps on an analytic scene: known cameras and depths -> pointmaps -> recovered cameras."""

from __future__ import annotations

import math

import torch

from vist3a.cameras import quat_to_rotmat
from vist3a.recon.pointmap_cameras import cameras_from_pointmaps, pixel_grid


def _scene(views: int = 4, height: int = 24, width: int = 32, focal: float = 30.0, seed: int = 0):
    """Views of a bumpy surface; world = view 0's camera frame. Returns points, conf, w2c, K, depth."""
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]], dtype=torch.float64)
    w2c = [torch.eye(3, 4, dtype=torch.float64)]
    for _ in range(views - 1):
        axis = torch.randn(3, generator=g, dtype=torch.float64)
        angle = math.radians(10 + 15 * float(torch.rand(1, generator=g)))  # 10..25 degrees
        q = torch.cat([torch.tensor([math.cos(angle / 2)], dtype=torch.float64),
                       math.sin(angle / 2) * axis / axis.norm()])
        t = 0.5 * torch.randn(3, generator=g, dtype=torch.float64)
        w2c.append(torch.cat([quat_to_rotmat(q), t[:, None]], 1))
    w2c = torch.stack(w2c)
    uv = pixel_grid(height, width, dtype=torch.float64)
    rays = torch.cat([(uv - K[:2, 2]) / focal, torch.ones(height, width, 1, dtype=torch.float64)], -1)
    depth = 3.0 + 0.5 * torch.sin(uv[..., 0] / 5)[None] + 0.3 * torch.rand(views, height, width, generator=g,
                                                                            dtype=torch.float64)
    cam = rays[None] * depth[..., None]  # [V, H, W, 3] camera frames
    rot, t = w2c[:, :, :3], w2c[:, :, 3]
    world = torch.einsum("vji,vhwj->vhwi", rot, cam - t[:, None, None])  # R^T (x - t)
    conf = 1 + torch.rand(views, height, width, generator=g, dtype=torch.float64)
    return world, conf, w2c, K, depth


def test_recovers_focal_poses_and_depths():
    points, conf, w2c, K, depth = _scene()
    cams = cameras_from_pointmaps(points[None], conf[None])
    torch.testing.assert_close(cams.K[0], K.expand(4, 3, 3), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(cams.w2c[0], w2c, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(cams.depth[0], depth, rtol=1e-6, atol=1e-6)
    assert float(cams.residual.max()) < 1e-4


def test_low_confidence_outliers_are_ignored():
    points, conf, w2c, K, _ = _scene(seed=1)
    g = torch.Generator().manual_seed(2)
    bad = torch.rand(points.shape[:-1], generator=g) < 0.2
    points = torch.where(bad[..., None], points + 5 * torch.randn(points.shape, generator=g, dtype=points.dtype),
                         points)
    conf = torch.where(bad, torch.full_like(conf, 0.5), conf)  # below every good pixel
    points[1, 0, 0] = float("nan")
    cams = cameras_from_pointmaps(points, conf, keep_fraction=0.7)
    torch.testing.assert_close(cams.K, K.expand(4, 3, 3), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(cams.w2c, w2c, rtol=1e-6, atol=1e-6)


def test_noisy_pointmaps_give_close_cameras_in_float32():
    points, conf, w2c, K, _ = _scene(seed=3)
    g = torch.Generator().manual_seed(4)
    noisy = (points + 0.003 * torch.randn(points.shape, generator=g, dtype=points.dtype)).float()
    cams = cameras_from_pointmaps(noisy, conf.float())
    assert abs(float(cams.K[0, 0, 0]) - float(K[0, 0])) < 0.02 * float(K[0, 0])
    assert float((cams.w2c.double() - w2c).abs().max()) < 2e-2
