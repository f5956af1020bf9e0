"""``vist3a view``: what the viewer loads, the maths it shows, a served page, and (Chromium) a non-blank canvas."""

from __future__ import annotations

import math
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.scene import Scene, save_scene
from vist3a.splats import Gaussians, save_ply

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "exports"))
from export_helpers import arc_cameras, random_gaussians

viser = pytest.importorskip("viser", reason="vist3a view needs viser (pip install -e '.[view]')")

from vist3a.viewer import (  # noqa: E402
    build_viewer,
    default_size_factor,
    flythrough_path,
    load_view_data,
    splat_covariances,
)


def _scene(points: bool = False) -> Scene:
    w2c = arc_cameras(3).float()
    K = torch.tensor([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]).expand(3, 3, 3)
    frames = torch.rand(3, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    if points:
        pts = torch.randn(3, 24, 32, 3, generator=torch.Generator().manual_seed(1))
        return Scene("p", frames, w2c, K, (24, 32), points=pts, points_conf=torch.rand(3, 24, 32) + 1)
    return Scene("p", frames, w2c, K, (24, 32), gaussians=random_gaussians(200, 1).to(dtype=torch.float32))


def test_covariances_are_r_s2_rt():
    quats = torch.tensor([[1.0, 0, 0, 0], [math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]])  # id, 90 deg about z
    scales = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    cov = splat_covariances(quats, scales)
    np.testing.assert_allclose(cov[0], np.diag([1.0, 4.0, 9.0]), atol=1e-12)
    np.testing.assert_allclose(cov[1], np.diag([4.0, 1.0, 9.0]), atol=1e-12)  # x and y swap


def test_flythrough_path_starts_and_ends_at_the_cameras():
    w2c = arc_cameras(4).numpy()
    path = flythrough_path(w2c, 20)
    np.testing.assert_allclose(path[0], np.linalg.inv(w2c[0]), atol=1e-9)
    np.testing.assert_allclose(path[-1], np.linalg.inv(w2c[-1]), atol=1e-9)


def test_size_factor_enlarges_only_subpixel_splats():
    big = Gaussians.from_rgb(torch.randn(500, 3), torch.rand(500, 3), torch.full((500, 3), 0.2), torch.ones(500))
    assert default_size_factor(big) == 1.0
    small = Gaussians.from_rgb(torch.randn(500, 3), torch.rand(500, 3), torch.full((500, 3), 1e-4), torch.ones(500))
    assert default_size_factor(small) == 20.0


def test_load_view_data_kinds(tmp_path):
    folder = save_scene(_scene(), tmp_path / "scene", flythrough_frames=0, formats=["spz"])
    data = load_view_data(folder)
    assert data.gaussians is not None and len(data.w2c) == 3 and data.frames.shape == (3, 24, 32, 3)
    assert len(load_view_data(folder / "scene.spz").gaussians) == 200
    pts = load_view_data(save_scene(_scene(points=True), tmp_path / "pts", flythrough_frames=0) / "points.ply")
    assert pts.gaussians is None and pts.confidence is not None and len(pts.confidence) == len(pts.points)
    assert pts.confidence.min() >= 1.0  # the stored confidences, not ranks
    with pytest.raises(UserInputError, match="expected a scene folder"):
        load_view_data(folder / "cameras.json")
    with pytest.raises(UserInputError, match="no such file"):
        load_view_data(tmp_path / "missing.ply")


@pytest.mark.parametrize("points", [False, True])
def test_viewer_serves_its_page_on_localhost(tmp_path, points):
    folder = save_scene(_scene(points=points), tmp_path / "scene", flythrough_frames=0)
    server = build_viewer(load_view_data(folder), port=8180 + points)
    try:
        assert server.get_host() == "127.0.0.1"
        html = urllib.request.urlopen(f"http://127.0.0.1:{server.get_port()}/", timeout=10).read().decode()
        assert "<html" in html.lower()
    finally:
        server.stop()


@pytest.mark.slow
def test_browser_shows_splats(tmp_path):
    """Headless Chromium opens the viewer and its WebGL canvas shows the splats (not a blank page)."""
    from browser_helpers import canvas_pixels, chromium_driver

    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    from selenium.common.exceptions import TimeoutException

    n = 400
    gen = torch.Generator().manual_seed(0)
    g = Gaussians.from_rgb(torch.randn(n, 3, generator=gen), torch.rand(n, 3, generator=gen),
                           torch.full((n, 3), 0.15), torch.full((n,), 0.9))
    server = build_viewer(load_view_data(save_ply(g, tmp_path / "s.ply")), port=8190)
    driver = chromium_driver(800, 500, scale=0.5)
    try:
        driver.get(f"http://127.0.0.1:{server.get_port()}/")
        std = 0.0
        for _ in range(60):
            time.sleep(2)
            try:
                std = float(canvas_pixels(driver).std())
            except TimeoutException:  # the software renderer is busy; ask again
                continue
            if std > 10:
                break
        assert std > 10, f"the canvas stayed blank (pixel std {std:.2f})"
    finally:
        driver.quit()
        server.stop()
