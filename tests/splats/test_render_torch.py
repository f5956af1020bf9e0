"""The pure-PyTorch reference rasteriser against analytic cases, an independent per-pixel oracle and
finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from splat_oracles import random_rotation_w2c, reference_render

from vist3a.splats import Gaussians, render
from vist3a.splats.raster_torch import project, rasterize, render_torch

F64 = torch.float64


def _K(fx, fy, cx, cy):
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=F64)


def _grid(width, height):
    v, u = torch.meshgrid(torch.arange(height, dtype=F64), torch.arange(width, dtype=F64), indexing="ij")
    return u, v


def _splats(means, scales, opacities, rgb, quats=None):
    means = torch.as_tensor(means, dtype=F64)
    return Gaussians.from_rgb(
        means,
        torch.as_tensor(rgb, dtype=F64),
        torch.as_tensor(scales, dtype=F64),
        torch.as_tensor(opacities, dtype=F64),
        quats=None if quats is None else torch.as_tensor(quats, dtype=F64),
    )


def test_single_isotropic_gaussian_matches_analytic_2d_gaussian():
    width, height = 40, 32
    fx, fy, cx, cy = 50.0, 45.0, 19.5, 15.0
    x, y, z, s, o = 0.1, -0.05, 2.0, 0.08, 0.8
    rgb = torch.tensor([0.2, 0.6, 0.9], dtype=F64)
    bg = torch.tensor([0.1, 0.3, 0.05], dtype=F64)
    g = _splats([[x, y, z]], [[s, s, s]], [o], rgb[None])
    out = render(g, torch.eye(4, dtype=F64)[None], _K(fx, fy, cx, cy), width, height, backend="torch", background=bg)

    # the 2D covariance of an isotropic 3D Gaussian under perspective, written out by hand
    j = torch.tensor([[fx / z, 0.0, -fx * x / z**2], [0.0, fy / z, -fy * y / z**2]], dtype=F64)
    cov = s**2 * (j @ j.T) + 0.3 * torch.eye(2, dtype=F64)
    mu_u, mu_v = fx * x / z + cx, fy * y / z + cy
    u, v = _grid(width, height)
    d = torch.stack((u - mu_u, v - mu_v), -1)
    maha = torch.einsum("hwi,ij,hwj->hw", d, torch.linalg.inv(cov), d)
    alpha = (o * torch.exp(-0.5 * maha)).clamp(max=0.999)
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    expected = alpha[..., None] * rgb + (1 - alpha[..., None]) * bg

    assert out.colors.shape == (1, height, width, 3)
    torch.testing.assert_close(out.alphas[0], alpha, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.colors[0], expected, atol=1e-12, rtol=0)
    hit = alpha > 0
    assert hit.sum() > 20 and (~hit).sum() > 20
    torch.testing.assert_close(out.depths[0][hit], torch.full_like(alpha[hit], z), atol=1e-12, rtol=0)
    assert torch.all(out.depths[0][~hit] == 0)


def test_rotated_anisotropic_gaussian_matches_independent_oracle():
    rng = np.random.default_rng(3)
    w2c = random_rotation_w2c(rng, distance=3.0)
    g = Gaussians.from_rgb(
        torch.tensor([[0.2, -0.1, 0.15]], dtype=F64),
        torch.tensor([[0.9, 0.4, 0.1]], dtype=F64),
        torch.tensor([[0.25, 0.05, 0.12]], dtype=F64),
        torch.tensor([0.7], dtype=F64),
        quats=torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8, 0.1]], dtype=F64), dim=-1),
    )
    K = _K(60.0, 60.0, 23.5, 20.0)
    bg = torch.tensor([0.0, 0.0, 0.2], dtype=F64)
    out = render(g, w2c[None], K, 48, 40, backend="torch", background=bg)
    u, v = _grid(48, 40)
    pixels = torch.stack((u.flatten(), v.flatten()), -1)
    rgb, depth, alpha = reference_render(
        g.means, g.quats, g.scales, g.opacities, torch.tensor([[0.9, 0.4, 0.1]], dtype=F64), w2c, K, pixels, bg
    )
    torch.testing.assert_close(out.colors[0].reshape(-1, 3), rgb, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.alphas[0].flatten(), alpha, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.depths[0].flatten(), depth, atol=1e-10, rtol=0)
    assert alpha.max() > 0.5


def _two_splats(order):
    means = [[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]]
    rgb = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    scales = [[0.1] * 3, [0.15] * 3]
    opac = [0.9, 0.95]
    pick = lambda xs: [xs[i] for i in order]
    return _splats(pick(means), pick(scales), pick(opac), pick(rgb))


def test_occlusion_front_splat_wins_regardless_of_input_order():
    K = _K(40.0, 40.0, 15.0, 15.0)
    cams = torch.eye(4, dtype=F64)[None]
    a = render(_two_splats([0, 1]), cams, K, 31, 31, backend="torch")
    b = render(_two_splats([1, 0]), cams, K, 31, 31, backend="torch")
    torch.testing.assert_close(a.colors, b.colors, atol=1e-14, rtol=0)
    torch.testing.assert_close(a.depths, b.depths, atol=1e-14, rtol=0)
    # centre pixel: both splats peak there, so alpha = opacity; red (z=2) is in front of green (z=3)
    centre = a.colors[0, 15, 15]
    torch.testing.assert_close(centre, torch.tensor([0.9, 0.1 * 0.95, 0.0], dtype=F64), atol=1e-12, rtol=0)
    expected_depth = (0.9 * 2.0 + 0.1 * 0.95 * 3.0) / (0.9 + 0.1 * 0.95)
    assert a.depths[0, 15, 15].item() == pytest.approx(expected_depth, abs=1e-12)


def test_compositing_stops_when_transmittance_runs_out():
    # three nearly opaque splats on the axis: after two, transmittance would be 0.005^2 = 2.5e-5 <= 1e-4
    g = _splats(
        [[0, 0, 2.0], [0, 0, 2.5], [0, 0, 3.0]], [[0.2] * 3] * 3, [0.995] * 3, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    )
    out = render(g, torch.eye(4, dtype=F64)[None], _K(30.0, 30.0, 10.0, 10.0), 21, 21, backend="torch")
    centre = out.colors[0, 10, 10]
    torch.testing.assert_close(centre, torch.tensor([0.995, 0.0, 0.0], dtype=F64), atol=1e-12, rtol=0)
    assert out.alphas[0, 10, 10].item() == pytest.approx(0.995, abs=1e-12)


def test_sh_degree_0_and_1_colours():
    c1 = 0.4886025119029199  # sqrt(3 / (4 pi)), degree-1 basis of 3DGS: (-c1 y, c1 z, -c1 x)
    mean = torch.tensor([[0.3, -0.2, 2.0]], dtype=F64)
    sh = torch.zeros(1, 4, 3, dtype=F64)
    sh[0, 0] = torch.tensor([0.5, -0.3, 0.2], dtype=F64)
    sh[0, 1:] = torch.tensor([[0.2, 0.0, -0.1], [0.0, 0.3, 0.0], [0.1, 0.1, 0.4]], dtype=F64)
    g = Gaussians(
        means=mean,
        quats=torch.tensor([[1.0, 0, 0, 0]], dtype=F64),
        scales=torch.full((1, 3), 0.05, dtype=F64),
        opacities=torch.tensor([1.0], dtype=F64),  # alpha at the centre pixel is then exactly 0.999
        sh=sh,
    )
    K = _K(50.0, 50.0, 20.0, 20.0)  # the splat projects to pixel (27.5, 15): use a K that centres it
    K[0, 2], K[1, 2] = 20.0 - 50.0 * 0.3 / 2.0, 20.0 + 50.0 * 0.2 / 2.0
    eye = torch.eye(4, dtype=F64)[None]
    dx, dy, dz = (mean[0] / mean[0].norm()).tolist()  # camera at the origin looks at the splat along this
    basis1 = torch.tensor([-c1 * dy, c1 * dz, -c1 * dx], dtype=F64)
    dc = 0.28209479177387814 * sh[0, 0]
    for degree, expected in ((0, dc + 0.5), (1, dc + basis1 @ sh[0, 1:] + 0.5)):
        out = render(g, eye, K, 41, 41, backend="torch", sh_degree=degree)
        torch.testing.assert_close(out.colors[0, 20, 20], 0.999 * expected.clamp_min(0), atol=1e-12, rtol=0)


def test_near_plane_and_behind_camera_are_culled():
    g = _splats([[0, 0, -2.0], [0, 0, 0.005]], [[0.5] * 3] * 2, [0.9, 0.9], [[1, 1, 1]] * 2)
    out = render(g, torch.eye(4, dtype=F64)[None], _K(20, 20, 8, 8), 17, 17, backend="torch", near=0.01)
    assert torch.all(out.alphas == 0) and torch.all(out.colors == 0)


def _random_scene(n, width, height, K, seed, *, scale=(0.02, 0.1), opacity=(0.2, 1.0), dtype=F64):
    """``n`` random anisotropic splats whose centres project into (or just outside) the image."""
    gen = torch.Generator().manual_seed(seed)
    fx, fy, cx, cy = K[0, 0].item(), K[1, 1].item(), K[0, 2].item(), K[1, 2].item()
    depth = 1.5 + 2.0 * torch.rand(n, generator=gen, dtype=F64)
    uv = torch.rand(n, 2, generator=gen, dtype=F64) * torch.tensor([width + 4.0, height + 4.0], dtype=F64) - 2.0
    means = torch.stack(((uv[:, 0] - cx) / fx * depth, (uv[:, 1] - cy) / fy * depth, depth), -1)
    g = Gaussians.from_rgb(
        means,
        torch.rand(n, 3, generator=gen, dtype=F64),
        scale[0] + (scale[1] - scale[0]) * torch.rand(n, 3, generator=gen, dtype=F64),
        opacity[0] + (opacity[1] - opacity[0]) * torch.rand(n, generator=gen, dtype=F64),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen, dtype=F64), dim=-1),
    )
    return g.to(dtype=dtype)


def _oracle_image(g, w2c, K, width, height, bg):
    u, v = _grid(width, height)
    pixels = torch.stack((u.flatten(), v.flatten()), -1)
    rgb = g.sh[:, 0].double() * 0.28209479177387814 + 0.5
    ref = reference_render(g.means, g.quats, g.scales, g.opacities, rgb, w2c.double(), K.double(), pixels, bg)
    return ref[0].reshape(height, width, 3), ref[1].reshape(height, width), ref[2].reshape(height, width)


@pytest.mark.parametrize(
    ("tile_size", "list_chunk", "chunk_elements"),
    [(4, 128, 1 << 22), (16, 256, 1 << 22), (16, 3, 2000), (1, 1, 1 << 20), (5, 7, 300), (8, 2, 1)],
)
def test_random_scene_matches_per_pixel_oracle(tile_size, list_chunk, chunk_elements):
    """Tiling, list steps and chunking (down to one tile and one splat at a time) must not change the image."""
    width, height = 37, 29  # not multiples of the tile size
    K = _K(30.0, 32.0, 18.0, 14.0)
    g = _random_scene(40, width, height, K, seed=7)
    bg = torch.tensor([0.2, 0.1, 0.3], dtype=F64)
    w2c = torch.eye(4, dtype=F64)
    proj = project(g, w2c, K, width, height, sh_degree=0, near=0.01, far=1e4)
    rgb, depth_sum, alpha = rasterize(
        proj, width, height, tile_size=tile_size, list_chunk=list_chunk, chunk_elements=chunk_elements
    )
    ref_rgb, ref_depth, ref_alpha = _oracle_image(g, w2c, K, width, height, bg)
    torch.testing.assert_close(rgb + (1 - alpha[..., None]) * bg, ref_rgb, atol=1e-10, rtol=0)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-10, rtol=0)
    torch.testing.assert_close(depth_sum / alpha.clamp_min(1e-10), ref_depth, atol=1e-8, rtol=0)
    assert ref_alpha.max() > 0.9 and (ref_alpha == 0).any()


@pytest.mark.parametrize(("tile_size", "list_chunk"), [(4, 128), (4, 5), (16, 64), (3, 1)])
def test_dense_scene_with_stopped_pixels_matches_oracle(tile_size, list_chunk):
    """Hundreds of splats per pixel, so most pixels hit the transmittance cut-off part-way through their
    lists: a pixel that stopped must take no later splat, whatever the list step, and tiles whose pixels all
    stopped leave early without changing anything."""
    width, height = 23, 19
    K = _K(22.0, 20.0, 11.0, 9.5)
    g = _random_scene(800, width, height, K, seed=3, scale=(0.05, 0.2), opacity=(0.3, 0.95))
    bg = torch.tensor([0.3, 0.6, 0.1], dtype=F64)
    w2c = torch.eye(4, dtype=F64)
    proj = project(g, w2c, K, width, height, sh_degree=0, near=0.01, far=1e4)
    rgb, depth_sum, alpha = rasterize(proj, width, height, tile_size=tile_size, list_chunk=list_chunk)
    ref_rgb, ref_depth, ref_alpha = _oracle_image(g, w2c, K, width, height, bg)
    assert (ref_alpha > 1 - 2e-4).float().mean() > 0.5  # most pixels stopped on the cut-off
    torch.testing.assert_close(rgb + (1 - alpha[..., None]) * bg, ref_rgb, atol=1e-10, rtol=0)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-10, rtol=0)
    torch.testing.assert_close(depth_sum / alpha.clamp_min(1e-10), ref_depth, atol=1e-8, rtol=0)


def test_float32_dense_scene_matches_float64_oracle():
    """Previews render float32 splats: the fast path must stay within float32 rounding of the exact image."""
    width, height = 31, 27
    K = _K(26.0, 26.0, 15.0, 13.0)
    g = _random_scene(500, width, height, K, seed=11, scale=(0.03, 0.15), opacity=(0.05, 0.95))
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    w2c = torch.eye(4, dtype=F64)
    out = render(g.to(dtype=torch.float32), w2c[None], K, width, height, backend="torch", background=bg)
    ref_rgb, _, ref_alpha = _oracle_image(g, w2c, K, width, height, bg)
    torch.testing.assert_close(out.colors[0].double(), ref_rgb, atol=2e-5, rtol=0)
    torch.testing.assert_close(out.alphas[0].double(), ref_alpha, atol=2e-5, rtol=0)


def test_culled_splats_change_nothing():
    """Splats behind the camera, beyond ``far``, transparent or off-screen are culled before any per-pixel work;
    adding them must leave the image bit-identical."""
    width, height = 24, 20
    K = _K(20.0, 20.0, 11.5, 9.5)
    g = _random_scene(60, width, height, K, seed=2)
    extra = _splats(
        [[0, 0, -2.0], [0, 0, 0.001], [0, 0, 2e4], [0.1, 0, 2.0], [30.0, 0, 2.0], [0, -40.0, 3.0]],
        [[0.1] * 3] * 6,
        [0.9, 0.9, 0.9, 1.0 / 256.0, 0.9, 0.9],
        [[1, 1, 1]] * 6,
    )
    cams = torch.eye(4, dtype=F64)[None]
    a = render(g, cams, K, width, height, backend="torch", far=1e4)
    b = render(Gaussians.cat([extra[:3], g, extra[3:]]), cams, K, width, height, backend="torch", far=1e4)
    assert torch.equal(a.colors, b.colors) and torch.equal(a.alphas, b.alphas) and torch.equal(a.depths, b.depths)


def test_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(1)
    n, width, height = 3, 14, 12
    means = torch.tensor([[0.05, 0.0, 2.0], [-0.1, 0.08, 2.4], [0.12, -0.05, 2.9]], dtype=F64, requires_grad=True)
    sh = (0.5 * torch.randn(n, 4, 3, generator=gen, dtype=F64)).requires_grad_()
    opac = torch.tensor([0.6, 0.5, 0.7], dtype=F64, requires_grad=True)
    scales = torch.tensor([[0.08, 0.05, 0.06], [0.06, 0.09, 0.07], [0.1, 0.07, 0.05]], dtype=F64, requires_grad=True)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen, dtype=F64), dim=-1)
    K = _K(25.0, 25.0, 6.5, 5.5)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=F64)

    def fn(means, sh, opac, scales):
        g = Gaussians(means=means, quats=quats, scales=scales, opacities=opac, sh=sh)
        c, d, a = render_torch(
            g,
            torch.eye(4, dtype=F64)[None],
            K[None],
            width,
            height,
            background=bg[None],
            sh_degree=1,
            near=0.01,
            far=100,
        )
        return torch.cat((c.flatten(), d.flatten(), a.flatten()))

    assert torch.autograd.gradcheck(fn, (means, sh, opac, scales), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_gradients_through_many_list_steps_match_finite_differences():
    """Gradients flow through the step-wise walk over the tile lists (one splat per step, tiny tiles)."""
    gen = torch.Generator().manual_seed(4)
    width, height = 9, 8
    K = _K(20.0, 20.0, 4.0, 3.5)
    means = torch.tensor([[0.02, 0.0, 2.0], [-0.05, 0.04, 2.3], [0.06, -0.03, 2.6], [0.0, 0.02, 2.9]], dtype=F64)
    scales = 0.05 + 0.05 * torch.rand(4, 3, generator=gen, dtype=F64)
    quats = torch.nn.functional.normalize(torch.randn(4, 4, generator=gen, dtype=F64), dim=-1)
    sh = 0.5 * torch.randn(4, 1, 3, generator=gen, dtype=F64)
    opac = torch.tensor([0.5, 0.6, 0.4, 0.7], dtype=F64)

    def fn(means, scales, opac, sh):
        g = Gaussians(means=means, quats=quats, scales=scales, opacities=opac, sh=sh)
        proj = project(g, torch.eye(4, dtype=F64), K, width, height, sh_degree=0, near=0.01, far=100)
        rgb, depth_sum, alpha = rasterize(proj, width, height, tile_size=3, list_chunk=1, chunk_elements=20)
        return torch.cat((rgb.flatten(), depth_sum.flatten(), alpha.flatten()))

    inputs = tuple(x.clone().requires_grad_() for x in (means, scales, opac, sh))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.slow
def test_large_image_many_splats_is_memory_bounded_and_exact_at_sampled_pixels():
    """256x256 with 20k splats on CPU (tile binning + chunking), spot-checked against the oracle."""
    gen = torch.Generator().manual_seed(11)
    n, size = 20_000, 256
    f = 0.5 * size / math.tan(math.radians(30))
    K = torch.tensor([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1]], dtype=torch.float32)
    depth = 2.5 + torch.rand(n, generator=gen)
    uv = torch.rand(n, 2, generator=gen) * size
    means = torch.cat(((uv - (size - 1) / 2) / f * depth[:, None], depth[:, None]), -1)
    g = Gaussians.from_rgb(
        means,
        torch.rand(n, 3, generator=gen),
        0.002 + 0.02 * torch.rand(n, 3, generator=gen),
        torch.rand(n, generator=gen),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
    )
    w2c = torch.eye(4)[None]
    with torch.no_grad():
        out = render(g, w2c, K, size, size, backend="torch")
    assert out.colors.shape == (1, size, size, 3) and torch.isfinite(out.colors).all()
    assert 0.5 < out.alphas.mean() < 1.0
    pick = torch.randint(0, size, (24, 2), generator=gen)
    ref_rgb, _, ref_alpha = reference_render(
        g.means,
        g.quats,
        g.scales,
        g.opacities,
        g.sh[:, 0] * 0.28209479177387814 + 0.5,
        w2c[0],
        K,
        pick.to(F64),
        torch.zeros(3, dtype=F64),
    )
    got = out.colors[0, pick[:, 1], pick[:, 0]].double()
    torch.testing.assert_close(got, ref_rgb, atol=2e-4, rtol=0)
    torch.testing.assert_close(out.alphas[0, pick[:, 1], pick[:, 0]].double(), ref_alpha, atol=2e-4, rtol=0)


def test_a_zero_quaternion_renders_as_the_identity_with_finite_gradients():
    """A Gaussian head can output a zero quaternion (every hidden unit of its MLP off): the reference rasteriser
    treats it as the identity rotation (as the gsplat backend does), with finite gradients for all splats."""
    K = _K(40.0, 40.0, 15.5, 15.5)
    means = torch.tensor([[0.1, 0.0, 2.0], [-0.1, 0.05, 2.5]], dtype=F64, requires_grad=True)
    scales = [[0.08, 0.04, 0.02], [0.05, 0.05, 0.05]]
    rgb = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    zero = _splats(means, scales, [0.9, 0.8], rgb, quats=[[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    zero.means = means
    identity = _splats(means.detach(), scales, [0.9, 0.8], rgb, quats=[[1.0, 0.0, 0.0, 0.0]] * 2)
    out = render(zero, torch.eye(4, dtype=F64)[None], K, 32, 32, backend="torch")
    expected = render(identity, torch.eye(4, dtype=F64)[None], K, 32, 32, backend="torch")
    torch.testing.assert_close(out.colors, expected.colors)
    out.colors.sum().backward()
    assert torch.isfinite(means.grad).all() and means.grad.abs().sum() > 0
