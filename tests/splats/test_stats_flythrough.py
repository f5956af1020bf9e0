"""Scene summaries, robust framing, and the orbit fly-through helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vist3a.splats import Gaussians, scene_center_radius, summarize
from vist3a.splats.flythrough import orbit_cameras, render_frames


def _cloud(n=1000, seed=0, outliers=0):
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=gen, dtype=torch.float64) + torch.tensor([2.0, -1.0, 5.0], dtype=torch.float64)
    if outliers:
        means[:outliers] = 1000.0
    return Gaussians.from_rgb(
        means,
        torch.rand(n, 3, generator=gen, dtype=torch.float64),
        0.01 + 0.02 * torch.rand(n, 3, generator=gen, dtype=torch.float64),
        torch.rand(n, generator=gen, dtype=torch.float64),
    )


def test_summarize_matches_numpy():
    g = _cloud()
    g.opacities[:3] = 0.001
    s = summarize(g)
    means, opac = g.means.numpy(), g.opacities.numpy()
    assert s.count == 1000 and s.sh_degree == 0 and s.num_transparent == int((opac < 1 / 255).sum()) >= 3
    np.testing.assert_allclose(s.bbox_min, means.min(0))
    np.testing.assert_allclose(s.bbox_max, means.max(0))
    np.testing.assert_allclose(s.robust_min, np.percentile(means, 2, axis=0))
    assert s.opacity.median == pytest.approx(np.median(opac))
    assert s.opacity.p95 == pytest.approx(np.percentile(opac, 95))
    assert s.scale_max.max == pytest.approx(g.scales.numpy().max())
    assert s.scale_min.min == pytest.approx(g.scales.numpy().min())
    with pytest.raises(ValueError, match="at least one splat"):
        summarize(g[:0])


def test_scene_center_radius_ignores_outliers_and_transparent_splats():
    g = _cloud(outliers=5)
    center, radius = scene_center_radius(g)
    torch.testing.assert_close(center, torch.tensor([2.5, -0.5, 5.5], dtype=torch.float64), atol=0.05, rtol=0)
    assert 0.6 < radius < 0.9  # a unit cube's points: 98th percentile distance from the centre
    g.opacities[:500] = 0.0  # only the second half counts now; move it away to see that
    g.means[500:] += 10.0
    center, _ = scene_center_radius(g)
    assert center[0].item() == pytest.approx(12.5, abs=0.05)


def test_orbit_cameras_fit_the_scene_into_the_view():
    g = _cloud().to(dtype=torch.float32)
    w2c, K = orbit_cameras(g, 6, 64, 48, fov_deg=60.0, elevation_deg=25.0)
    center, radius = scene_center_radius(g)
    pts = g.means.double()
    cam = torch.einsum("tij,nj->tni", w2c[:, :3, :3], pts) + w2c[:, None, :3, 3]
    assert (cam[..., 2] > 0).all()
    u = K[0, 0] * cam[..., 0] / cam[..., 2] + K[0, 2]
    v = K[1, 1] * cam[..., 1] / cam[..., 2] + K[1, 2]
    inside = (u > -0.5) & (u < 63.5) & (v > -0.5) & (v < 47.5)
    core = (pts - center).norm(dim=1) <= radius  # the robust bounding sphere is fully in every frame
    assert inside[:, core].all() and inside.double().mean() > 0.97
    assert (v.amax(1) - v.amin(1)).min() > 0.4 * 48  # and the scene is not tiny
    frames = render_frames(g, w2c[:2], K, 64, 48, backend="torch", background=torch.ones(3), progress=False)
    assert frames.colors.shape == (2, 48, 64, 3) and frames.colors.dtype == np.uint8
    assert frames.depths.shape == (2, 48, 64) and frames.alphas.max() > 0.5
    assert (frames.colors[:, 0, 0] == 255).all()  # the corner shows the white background


@pytest.mark.parametrize("batch_size", [1, 2])
def test_render_frames_in_threads_matches_one_at_a_time(batch_size):
    """Views rendered side by side in threads (the CPU default) equal views rendered one after another, in order,
    and torch's thread count is restored afterwards."""
    g = _cloud(n=400, seed=3).to(dtype=torch.float32)
    w2c, K = orbit_cameras(g, 5, 40, 32)
    threads = torch.get_num_threads()
    kwargs = {"backend": "torch", "batch_size": batch_size, "progress": False}
    serial = render_frames(g, w2c, K, 40, 32, workers=1, **kwargs)
    threaded = render_frames(g, w2c, K, 40, 32, workers=3, **kwargs)
    assert torch.get_num_threads() == threads
    assert np.abs(serial.colors.astype(int) - threaded.colors.astype(int)).max() <= 1
    np.testing.assert_allclose(threaded.alphas, serial.alphas, atol=1e-5, rtol=0)
    np.testing.assert_allclose(threaded.depths, serial.depths, atol=1e-4, rtol=0)
    assert len({frame.tobytes() for frame in threaded.colors}) == 5  # five different views, not one repeated
