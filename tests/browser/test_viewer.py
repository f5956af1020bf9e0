"""``vist3a view``: what the viewer loads, the maths it shows, a served page, and (Chromium) a non-blank canvas."""

from __future__ import annotations

import math
import os
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

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "viewer.png"

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


def test_size_factor_enlarges_only_splats_below_one_and_a_half_pixels():
    """The median splat, seen from ``eye`` 5 units away at 75 degrees on a 720-px canvas (focal 469 px)."""
    eye = np.array([0.0, 0.0, -5.0])
    means = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * 0.01

    def factor(scale: float) -> float:
        g = Gaussians.from_rgb(means, torch.rand(500, 3), torch.full((500, 3), scale), torch.ones(500))
        return default_size_factor(g, eye)

    focal = 360 / math.tan(math.radians(37.5))
    assert factor(0.2) == 1.0  # 19 px
    assert factor(1e-3) == pytest.approx(1.5 / (focal * 1e-3 / 5), rel=0.01)  # 0.094 px -> 16x
    assert factor(1e-5) == 20.0  # at most 20x


def test_initial_view_keeps_the_scene_up_with_a_rolled_first_camera():
    """viser orbits about the camera's up: the first view's up is the scene's (-y), not the first camera's, which
    is rolled here by 17 degrees; the view still looks at the target from behind the camera."""
    from vist3a.cameras import look_at_w2c
    from vist3a.exports.source import SceneData
    from vist3a.viewer import initial_view, orbit_target

    w2c = look_at_w2c(torch.tensor([1.0, -0.5, -3.0], dtype=torch.float64), torch.tensor([0.2, 0.0, 0.5]),
                      torch.tensor([0.3, -1.0, 0.0])).numpy()
    points = np.random.default_rng(0).normal(size=(500, 3)) * 0.3 + np.array([0.2, 0.0, 0.5])
    data = SceneData(None, points, np.zeros((500, 3), np.uint8), w2c[None], np.eye(3)[None], 8, 6)
    eye, target, up = initial_view(data)
    np.testing.assert_allclose(up, [0.0, -1.0, 0.0])
    np.testing.assert_allclose(target, orbit_target(w2c, points)[0])
    assert (eye - target) @ np.linalg.inv(w2c)[:3, 2] < 0  # behind the target, on the camera's side


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


def _read_until(driver, done, timeout: float = 180.0):
    """Read the viewer's canvas until ``done(pixels)`` (software WebGL can keep the renderer busy for a while)."""
    from browser_helpers import poll, read_canvas

    return poll(lambda: read_canvas(driver), done, timeout)


def _read_steady(driver, timeout: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """Two reads in a row that differ by < 0.2 % of the canvas: the scene has finished streaming in (on a loaded
    machine, images and splats keep arriving after the first colours show). The last two reads if it never settles."""
    previous = _read_until(driver, lambda px: True)
    deadline = time.monotonic() + timeout
    while True:
        current = _read_until(driver, lambda px: True)
        if _changed(previous, current) < 0.002 or time.monotonic() > deadline:
            return previous, current
        previous = current


def _lit(pixels: np.ndarray) -> float:
    return float((pixels.max(-1) > 40).mean())


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that differ by more than 40 in some channel."""
    return float((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1) > 40).mean())


@pytest.mark.slow
def test_browser_shows_splats(tmp_path):
    """Headless Chromium opens the viewer and its WebGL canvas (the canvas itself, not the control panel over it)
    shows the splats; the same viewer with the Gaussians hidden shows a black canvas."""
    from browser_helpers import chromium_driver

    n = 400
    gen = torch.Generator().manual_seed(0)
    g = Gaussians.from_rgb(torch.randn(n, 3, generator=gen), torch.rand(n, 3, generator=gen),
                           torch.full((n, 3), 0.15), torch.full((n,), 0.9))
    driver = chromium_driver(800, 500, scale=0.5)  # skips without selenium / Chromium
    server = build_viewer(load_view_data(save_ply(g, tmp_path / "s.ply")), port=8190)
    driver.set_script_timeout(60)
    try:
        driver.get(f"http://127.0.0.1:{server.get_port()}/")
        shown = _read_until(driver, lambda px: _lit(px) > 0.02)
        assert shown is not None and _lit(shown) > 0.02, "the canvas stayed blank"
        server.scene.get_handle_by_name("/gaussians").visible = False
        hidden = _read_until(driver, lambda px: _lit(px) < 0.005, 60)
        assert _lit(hidden) < 0.005, f"the canvas is not black without the splats ({_lit(hidden):.3f} lit)"
    finally:
        driver.quit()
        server.stop()


@pytest.fixture(scope="module")
def nano_scene(tmp_path_factory) -> Path:
    """A nano scene folder of the quickstart prompt (seed 0), as ``vist3a generate`` writes it (only made when a
    browser test can use it)."""
    from browser_helpers import require_chromium

    from vist3a.pipeline import Text2ScenePipeline

    require_chromium()

    pipe = Text2ScenePipeline.from_pretrained("nano", device="cpu")
    scene = pipe("a red cube left of a blue sphere", generator=torch.Generator("cpu").manual_seed(0))[0]
    return save_scene(scene, tmp_path_factory.mktemp("nano") / "scene", flythrough_frames=0)


@pytest.mark.slow
def test_browser_shows_a_generated_scene_with_its_cameras(nano_scene):
    """``vist3a view`` of a nano scene: the first view shows the red cube and the blue sphere, and the camera
    frustums with their frames (hiding them changes > 1% of the canvas; two reads in a row differ by < 0.2%).
    With VIST3A_DOCS_SCREENSHOTS=1 the page is saved to docs/img/viewer.png."""
    from browser_helpers import chromium_driver, colour_mask, save_docs_png

    docs = bool(os.environ.get("VIST3A_DOCS_SCREENSHOTS"))
    driver = chromium_driver(1200, 700, scale=1.0 if docs else 0.5)
    data = load_view_data(nano_scene)
    server = build_viewer(data, port=8191)
    driver.set_script_timeout(120)

    def shown(pixels) -> bool:
        return int(colour_mask(pixels, "red").sum()) > 100 and int(colour_mask(pixels, "blue").sum()) > 100

    try:
        driver.get(f"http://127.0.0.1:{server.get_port()}/")
        shows = _read_until(driver, shown, 240)
        assert shows is not None and shown(shows), "the red cube and the blue sphere do not both show"
        first, again = _read_steady(driver)
        assert shown(again), "the red cube and the blue sphere stop showing"
        if docs:
            import base64

            driver.execute_script(  # the "software WebGL" notice
                "document.querySelectorAll('.mantine-Notification-closeButton').forEach(b => b.click())")
            time.sleep(3)
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True})
            save_docs_png(DOCS_SHOT, base64.b64decode(shot["data"]))
        frustums = [server.scene.get_handle_by_name(f"/cameras/{i:03d}") for i in range(len(data.w2c))]
        assert len(frustums) == 13 and None not in frustums, "a camera has no frustum"
        for frustum in frustums:
            frustum.visible = False
        hidden = _read_until(driver, lambda px: _changed(px, again) > 0.01, 120)
        assert _changed(first, again) < 0.002, f"the view changes by itself ({_changed(first, again):.4f})"
        assert _changed(hidden, again) > 0.01, f"hiding the frustums changes {_changed(hidden, again):.4f} of the view"
    finally:
        driver.quit()
        server.stop()
