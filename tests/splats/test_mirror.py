"""Mirror images of Gaussians and scenes: a rendered view of the mirrored splats through the mirrored camera must
be the left-right flip of the original view (independent of how the mirror is implemented), for view-dependent
colour too; and mirroring twice is the identity."""

from __future__ import annotations

import torch

from vist3a.cameras import look_at_w2c
from vist3a.scene import Scene
from vist3a.splats import Gaussians, render

SIZE = 24


def _splats(degree: int = 3, n: int = 40) -> Gaussians:
    g = torch.Generator().manual_seed(0)
    quats = torch.randn(n, 4, generator=g)
    return Gaussians(
        means=torch.randn(n, 3, generator=g) * 0.4,
        quats=quats / quats.norm(dim=-1, keepdim=True),
        scales=torch.rand(n, 3, generator=g) * 0.12 + 0.03,
        opacities=torch.rand(n, generator=g) * 0.5 + 0.4,
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.6,
    )


def _camera() -> tuple[torch.Tensor, torch.Tensor]:
    # off-centre and off-axis, so a wrong sign anywhere changes the picture
    w2c = look_at_w2c(torch.tensor([0.7, -0.4, -2.2]), torch.tensor([0.1, 0.05, 0.0]),
                      torch.tensor([0.1, -1.0, 0.2]))[None]
    K = torch.tensor([[[30.0, 0.0, 10.3], [0.0, 29.0, 12.1], [0.0, 0.0, 1.0]]])
    return w2c, K


def _mirror_camera(w2c: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    K = K.clone()
    K[..., 0, 2] = SIZE - 1 - K[..., 0, 2]
    return flip @ w2c @ flip, K


def test_mirrored_splats_render_the_flipped_view_with_view_dependent_colour():
    splats = _splats()
    w2c, K = _camera()
    original = render(splats, w2c, K, SIZE, SIZE, backend="torch").colors
    w2c_m, K_m = _mirror_camera(w2c, K)
    mirrored = render(splats.mirrored(), w2c_m, K_m, SIZE, SIZE, backend="torch").colors
    assert torch.allclose(mirrored, original.flip(-2), atol=2e-5)
    # the check sees the SH part: without the SH signs the flipped view differs
    plain = splats.mirrored()
    plain = Gaussians(plain.means, plain.quats, plain.scales, plain.opacities, splats.sh)
    wrong = render(plain, w2c_m, K_m, SIZE, SIZE, backend="torch").colors
    assert (wrong - original.flip(-2)).abs().max() > 1e-2


def test_mirroring_twice_is_the_identity():
    splats = _splats(degree=4)
    twice = splats.mirrored().mirrored()
    for name in ("means", "quats", "scales", "opacities", "sh"):
        assert torch.equal(getattr(twice, name), getattr(splats, name))


def test_mirrored_scene_views_are_the_flipped_views():
    splats = _splats(degree=1)
    w2c, K = _camera()
    frames = torch.rand(1, 3, SIZE, SIZE)
    depth = torch.rand(1, SIZE, SIZE) + 1.0
    points = torch.randn(1, SIZE, SIZE, 3)
    scene = Scene(prompt="p", frames=frames, w2c=w2c, K=K, image_size=(SIZE, SIZE), gaussians=splats,
                  depth=depth, points=points, points_conf=depth)
    mirror = scene.mirrored()
    view = render(scene.gaussians, scene.w2c, scene.K, SIZE, SIZE, backend="torch").colors
    view_m = render(mirror.gaussians, mirror.w2c, mirror.K, SIZE, SIZE, backend="torch").colors
    assert torch.allclose(view_m, view.flip(-2), atol=2e-5)
    assert torch.equal(mirror.frames, frames.flip(-1)) and torch.equal(mirror.depth, depth.flip(-1))
    # a world point projects to the mirrored pixel through the mirrored camera
    X = torch.tensor([0.3, -0.2, 0.4, 1.0])
    project = lambda w, k, x: (k[0] @ (w[0] @ x)[:3]) / (w[0] @ x)[2]
    uv = project(scene.w2c, scene.K, X)
    uv_m = project(mirror.w2c, mirror.K, X * torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    assert torch.allclose(uv_m[:2], torch.stack([SIZE - 1 - uv[0], uv[1]]), atol=1e-5)
    assert torch.equal(mirror.points[0, 2, SIZE - 1 - 5], points[0, 2, 5] * torch.tensor([-1.0, 1.0, 1.0]))
    back = mirror.mirrored()
    assert torch.equal(back.w2c, scene.w2c) and torch.allclose(back.K, scene.K)
    assert torch.equal(back.points, points)


def test_mirrored_pointmap_scene_keeps_points_depth_and_pixels_together():
    """A pointmap scene (points = its depth unprojected through its cameras), mirrored: every mirrored point,
    projected through the mirrored camera of its view, lands on the pixel it is stored at, at the stored depth;
    so pixel (u, v) of the mirror holds the point of the original's flipped pixel (W - 1 - u, v)."""
    from vist3a.cameras import invert_rigid

    g = torch.Generator().manual_seed(1)
    w2c, K = _camera()
    second = look_at_w2c(torch.tensor([-1.1, -0.6, -1.8]), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    w2c = torch.cat([w2c, second[None]])
    K = K.expand(2, 3, 3).clone()
    height, width = SIZE - 4, SIZE  # not square: a swapped axis would show
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    depth = 1.0 + torch.rand(2, height, width, generator=g)
    pixels = torch.stack((u, v, torch.ones_like(u)), -1)  # [H, W, 3]
    cam = depth[..., None] * torch.einsum("vij,hwj->vhwi", torch.linalg.inv(K), pixels)  # [V, H, W, 3]
    c2w = invert_rigid(w2c[:, :3])
    points = torch.einsum("vij,vhwj->vhwi", c2w[:, :, :3], cam) + c2w[:, None, None, :, 3]
    scene = Scene(prompt="p", frames=torch.rand(2, 3, height, width, generator=g), w2c=w2c, K=K,
                  image_size=(height, width), depth=depth, points=points, points_conf=depth.clone())
    mirror = scene.mirrored()
    cam_m = torch.einsum("vij,vhwj->vhwi", mirror.w2c[:, :3, :3], mirror.points) + mirror.w2c[:, None, None, :3, 3]
    uvw = torch.einsum("vij,vhwj->vhwi", mirror.K, cam_m)
    torch.testing.assert_close(uvw[..., :2] / uvw[..., 2:], pixels[..., :2].expand(2, -1, -1, -1),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(cam_m[..., 2], mirror.depth, atol=1e-5, rtol=0)
    assert torch.equal(mirror.points_conf, depth.flip(-1)) and torch.equal(mirror.frames, scene.frames.flip(-1))
