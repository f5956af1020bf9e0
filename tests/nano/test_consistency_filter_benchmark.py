"""``benchmarks/nano_consistency_filter.py``'s depth test on an analytic scene: a plane seen by three cameras."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "nano_consistency_filter.py"


def _module():
    spec = importlib.util.spec_from_file_location("nano_consistency_filter_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plane_views(size: int = 32, depth: float = 2.0):
    """Three cameras looking down +z, shifted along x by -0.2, 0, 0.2 (w2c translation), and their exact depth
    maps of the plane ``z = depth``."""
    K = torch.tensor([[30.0, 0.0, (size - 1) / 2], [0.0, 30.0, (size - 1) / 2], [0.0, 0.0, 1.0]]).expand(3, 3, 3)
    w2c = torch.eye(4).repeat(3, 1, 1)
    w2c[:, 0, 3] = torch.tensor([0.2, 0.0, -0.2])
    return w2c, K, torch.full((3, size, size), depth)


def test_points_on_the_plane_agree_and_a_planted_floater_is_dropped():
    module = _module()
    w2c, K, depth = _plane_views()
    plane = torch.stack(torch.meshgrid(torch.linspace(-0.5, 0.5, 11), torch.linspace(-0.5, 0.5, 11),
                                       indexing="ij"), -1).reshape(-1, 2)
    plane = torch.cat((plane, torch.full((plane.shape[0], 1), 2.0)), 1)  # inside all three views
    floater = torch.tensor([[0.0, 0.0, 1.0]])  # in front of the plane in every view
    hidden = torch.tensor([[0.0, 0.0, 3.0]])  # behind it: occluded, no evidence either way
    agree, front, seen = module.depth_agreement(torch.cat((plane, floater, hidden)), w2c, K, depth, 0.05)
    assert seen.all()
    assert agree[:-2].all() and not front[:-2].any()
    assert not agree[-2].any() and front[-2].all()
    assert not agree[-1].any() and not front[-1].any()

    scene = SimpleNamespace(gaussians=SimpleNamespace(means=torch.cat((plane, floater, hidden))), w2c=w2c, K=K,
                            depth=depth)
    module.VARIANTS["test_a2"] = (0.05, 2, None, None)
    module.VARIANTS["test_v1"] = (0.05, 0, None, 1)
    keep = module.keep_mask(scene, "test_a2")
    assert keep[:-2].all() and not keep[-2:].any()  # agreement: floater and hidden point dropped
    keep = module.keep_mask(scene, "test_v1")
    assert keep[:-2].all() and not keep[-2] and keep[-1]  # free space: only the floater dropped
    assert module.keep_mask(scene, "none").all()


def test_a_point_outside_a_view_is_not_seen_there():
    module = _module()
    w2c, K, depth = _plane_views()
    point = torch.tensor([[1.15, 0.0, 2.0]])  # u = 15.5 + 15 (1.15 + t_x): 35.75, 32.75, 29.75 (third view only)
    agree, front, seen = module.depth_agreement(point, w2c, K, depth, 0.05)
    assert seen[0].tolist() == [False, False, True] and agree[0].tolist() == [False, False, True]
    assert not front.any()
