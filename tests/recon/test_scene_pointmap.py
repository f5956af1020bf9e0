"""The pointmap a VGGT scene is made of: depth through the predicted cameras, so every point lands on its pixel."""

from __future__ import annotations

import math

import torch

from vist3a.cameras import K_from_edge_convention, look_at_w2c
from vist3a.recon.outputs import CameraPrediction, VGGTOutput, scene_pointmap


def _cameras(views: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``w2c [1, V, 3, 4]`` on an arc around the origin and edge-convention ``K [1, V, 3, 3]`` (c = size / 2)."""
    w2c = []
    for i in range(views):
        angle = math.radians(20.0 * i)
        eye = torch.tensor([3.0 * math.sin(angle), -0.5, -3.0 * math.cos(angle)], dtype=torch.float64)
        w2c.append(look_at_w2c(eye, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0],
                                                                                   dtype=torch.float64))[:3])
    K = torch.tensor([[40.0, 0.0, size / 2], [0.0, 42.0, size / 2], [0.0, 0.0, 1.0]]).expand(1, views, 3, 3)
    return torch.stack(w2c).float()[None], K.clone()


def test_points_are_the_depth_through_the_cameras_and_reproject_onto_their_pixels():
    views, size = 3, 16
    w2c, K = _cameras(views, size)
    depth = 2.0 + torch.rand(1, views, size, size)
    head = torch.randn(1, views, size, size, 3)  # a point head that disagrees with the depth and the cameras
    cameras = CameraPrediction(pose_enc=torch.zeros(1, views, 9), pose_enc_list=[], w2c=w2c, K=K)
    out = VGGTOutput(cameras=cameras, depth=depth, depth_conf=torch.full((1, views, size, size), 3.0),
                     world_points=head, world_points_conf=torch.ones(1, views, size, size))
    points, conf = scene_pointmap(out)
    assert points.shape == (1, views, size, size, 3) and torch.equal(conf, out.depth_conf)
    Kc = K_from_edge_convention(K)[0]
    v, u = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    for view in range(views):
        cam = points[0, view] @ w2c[0, view, :, :3].T + w2c[0, view, :, 3]
        torch.testing.assert_close(cam[..., 2], depth[0, view], rtol=1e-5, atol=1e-5)  # the depth along +z
        pix = cam @ Kc[view].T
        torch.testing.assert_close(pix[..., 0] / pix[..., 2], u, rtol=0, atol=1e-3)  # back onto its own pixel
        torch.testing.assert_close(pix[..., 1] / pix[..., 2], v, rtol=0, atol=1e-3)


def test_a_decoder_without_depth_gives_its_point_head():
    head, conf = torch.randn(1, 2, 4, 4, 3), torch.rand(1, 2, 4, 4)
    out = VGGTOutput(world_points=head, world_points_conf=conf)
    points, points_conf = scene_pointmap(out)
    assert points is head and points_conf is conf
    assert scene_pointmap(VGGTOutput()) == (None, None)


def test_mvdust3r_keeps_its_point_head_and_confidence():
    """MV-DUSt3R's depth and cameras are recovered from its pointmaps: the scene is that map with its confidence."""
    from vist3a.recon import random_tiny_mvdust3r

    model = random_tiny_mvdust3r("mvdust3r")
    with torch.no_grad():
        out = model(torch.rand(1, 3, 3, 32, 32) * 2 - 1)
    points, conf = scene_pointmap(out)
    assert torch.equal(points, out.world_points) and torch.equal(conf, out.world_points_conf)
