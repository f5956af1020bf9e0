"""Point clouds of pointmap scenes: the splats that render them (a pointmap scene's fly-through)."""

from __future__ import annotations

import pytest
import torch

from vist3a.splats import render
from vist3a.splats.points import points_to_gaussians


def test_point_splats_keep_position_colour_and_radius():
    xyz = torch.tensor([[0.0, 0.0, 2.0], [0.5, 0.0, 3.0]])
    rgb = torch.tensor([[255, 0, 0], [0, 0, 255]], dtype=torch.uint8)
    g = points_to_gaussians(xyz, rgb, torch.tensor([0.01, 0.02]))
    assert torch.equal(g.means, xyz) and g.sh_degree == 0 and torch.equal(g.scales[:, 0], g.scales[:, 2])
    assert g.scales[1, 1] == pytest.approx(0.02) and torch.all(g.opacities == 1.0)
    # the point nearest the camera is drawn in its own colour at the image centre
    K = torch.tensor([[[32.0, 0.0, 15.5], [0.0, 32.0, 15.5], [0.0, 0.0, 1.0]]])
    image = render(points_to_gaussians(xyz[:1], rgb[:1], 0.2), torch.eye(4)[None], K, 32, 32, backend="torch")
    centre = image.colors[0, 15:17, 15:17].mean((0, 1))
    assert centre[0] > 0.9 and centre[2] < 0.1
    with pytest.raises(ValueError, match="xyz"):
        points_to_gaussians(xyz, rgb[:1], 0.01)


def test_pointmap_scene_renders_its_point_cloud():
    from vist3a.scene import Scene

    views, size = 2, 8
    v, u = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                          indexing="ij")
    points = torch.stack(((u - 3.5) / 8, (v - 3.5) / 8, torch.ones(size, size)), -1).expand(views, -1, -1, -1)
    K = torch.tensor([[8.0, 0.0, 3.5], [0.0, 8.0, 3.5], [0.0, 0.0, 1.0]]).expand(views, 3, 3)
    scene = Scene(prompt="", frames=torch.ones(views, 3, size, size) * 0.5, w2c=torch.eye(4).expand(views, 4, 4),
                  K=K, image_size=(size, size), points=points.clone(), points_conf=torch.ones(views, size, size))
    splats = scene.point_splats(keep_fraction=1.0)
    assert len(splats) == views * size * size
    # 0.6 px at the distance from the camera (1.004 for the pixels next to the centre), focal 8
    assert float(splats.scales.min()) == pytest.approx(0.6 * 1.0039 / 8, rel=1e-3)
    video = scene.render_flythrough(2, backend="torch")
    assert video.shape == (2, size, size, 3) and float(video[:, 2:6, 2:6].mean()) == pytest.approx(0.5, abs=0.05)
