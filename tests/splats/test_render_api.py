"""``render()``: argument checking, backend choice, camera forms, and gsplat parity on a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from vist3a.cameras import intrinsics_from_fov, orbit_trajectory
from vist3a.splats import Gaussians, render, resolve_backend


def _scene(n=200, seed=0, device="cpu", degree=1):
    gen = torch.Generator().manual_seed(seed)
    g = Gaussians(
        means=torch.randn(n, 3, generator=gen) * 0.4,
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        scales=0.01 + 0.05 * torch.rand(n, 3, generator=gen),
        opacities=torch.rand(n, generator=gen),
        sh=0.4 * torch.randn(n, (degree + 1) ** 2, 3, generator=gen),
    )
    return g.to(device)


def test_backend_resolution():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("opengl", torch.device("cpu"))


def test_gsplat_backend_refuses_cpu_tensors():
    g = _scene(5)
    with pytest.raises(ValueError, match="gsplat"):
        render(g, torch.eye(4)[None], intrinsics_from_fov(60, 8, 8), 8, 8, backend="gsplat")


def test_camera_forms_are_equivalent():
    g = _scene()
    w2c = orbit_trajectory(torch.zeros(3), 2.5, 15.0, 2).float()
    K = intrinsics_from_fov(50.0, 24, 20)
    a = render(g, w2c, K, 24, 20, background=torch.tensor([0.1, 0.2, 0.3]))
    b = render(g, w2c[:, :3], K.expand(2, 3, 3), 24, 20, background=torch.tensor([[0.1, 0.2, 0.3]] * 2))
    torch.testing.assert_close(a.colors, b.colors)
    assert a.colors.shape == (2, 20, 24, 3) and a.depths.shape == (2, 20, 24) and a.alphas.shape == (2, 20, 24)


def test_zero_splats_give_the_background():
    out = render(_scene()[:0], torch.eye(4)[None], intrinsics_from_fov(60, 6, 4), 6, 4, background=torch.ones(3))
    assert torch.all(out.colors == 1) and torch.all(out.alphas == 0) and torch.all(out.depths == 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"w2c": torch.eye(4)}, "w2c must have shape"),
        ({"Ks": torch.eye(3)[None].expand(2, 3, 3)}, "Ks must have shape"),
        ({"width": 0}, "width must be a positive int"),
        ({"sh_degree": 2}, "sh_degree must be in"),
        ({"background": torch.ones(2, 3)}, "background must have shape"),
        ({"near": 0.0}, "near < far"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    args = {"w2c": torch.eye(4)[None], "Ks": intrinsics_from_fov(60, 8, 8), "width": 8, "height": 8}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        render(_scene(), args.pop("w2c"), args.pop("Ks"), args.pop("width"), args.pop("height"), **args)


@pytest.mark.gpu
def test_gsplat_matches_torch_reference():
    pytest.importorskip("gsplat")
    g = _scene(3000, seed=4, device="cuda", degree=3)
    w2c = orbit_trajectory(torch.zeros(3), 3.0, 25.0, 4).float().cuda()
    K = intrinsics_from_fov(55.0, 96, 80).cuda()
    bg = torch.tensor([0.2, 0.3, 0.4], device="cuda")
    ref = render(g, w2c, K, 96, 80, backend="torch", background=bg)
    fast = render(g, w2c, K, 96, 80, backend="gsplat", background=bg)
    mse = (ref.colors - fast.colors).pow(2).mean().item()
    assert 10 * math.log10(1.0 / max(mse, 1e-20)) >= 40.0
    assert (ref.alphas - fast.alphas).abs().mean().item() < 2e-3
    hit = (ref.alphas > 0.5) & (fast.alphas > 0.5)
    assert (ref.depths[hit] - fast.depths[hit]).abs().median().item() < 1e-3
