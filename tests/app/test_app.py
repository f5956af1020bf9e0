"""``vist3a app``: the service called directly, the gradio app over real HTTP (gradio_client on 127.0.0.1), and a
headless-Chromium test that types a prompt and waits for the 3D view (skipped without gradio / Chromium)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vist3a.cameras import quat_to_rotmat
from vist3a.errors import UserInputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))

PROMPT = "a red cube left of a blue sphere"
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "app.png"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_preview_is_a_half_turn_about_x_of_the_centred_scene(tmp_path):
    from vist3a.app import preview_splat
    from vist3a.splats import Gaussians, load_splat, save_ply

    gen = torch.Generator().manual_seed(0)
    n = 64
    g = Gaussians(
        means=torch.randn(n, 3, generator=gen, dtype=torch.float64) + torch.tensor([0.0, -4.0, 12.0]),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen, dtype=torch.float64), dim=-1),
        scales=torch.full((n, 3), 0.1, dtype=torch.float64),
        opacities=torch.full((n,), 0.8, dtype=torch.float64),
        sh=torch.zeros(n, 4, 3, dtype=torch.float64),
    )
    save_ply(g, tmp_path / "scene.ply")
    back = load_splat(preview_splat(tmp_path), dtype=torch.float64)
    order = torch.argsort(back.means[:, 0])
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    centre, radius = g.means.median(0).values, float((g.means - g.means.median(0).values).norm(dim=1).quantile(0.9))
    expected = (g.means - centre) @ flip / radius
    ref = torch.argsort(expected[:, 0])
    torch.testing.assert_close(back.means[order], expected[ref], atol=1e-5, rtol=0)
    # rotations: R' = F R (the .splat quantisation of quaternions is ~1/128)
    rot = quat_to_rotmat(back.quats[order])
    torch.testing.assert_close(rot, flip @ quat_to_rotmat(g.quats[ref]), atol=0.05, rtol=0)


def test_available_presets_start_with_nano():
    from vist3a.app import available_presets

    presets = available_presets()
    assert presets[0] == "nano" and "tiny-random" in presets


@pytest.mark.slow
def test_service_generates_and_keeps_the_pipeline(tmp_path):
    from vist3a.app import SceneService

    service = SceneService(tmp_path / "out")
    first = service.generate(PROMPT, steps=2, flythrough_frames=2)
    pipe = service.pipeline("nano")
    second = service.generate(PROMPT, steps=2, seed=1, flythrough_frames=2)
    assert service.pipeline("nano") is pipe and first.folder != second.folder  # models stay loaded
    names = {p.name for p in first.files}
    assert {"scene.ply", "scene.splat", "scene.spz", "scene.glb", "frames.mp4", "meta.json"} <= names
    assert first.view_file.suffix == ".splat" and first.view_file.stat().st_size % 32 == 0
    assert json.loads((first.folder / "meta.json").read_text())["settings"]["num_steps"] == 2
    with pytest.raises(UserInputError, match="empty"):
        service.generate("   ")


@pytest.mark.slow
def test_reconstruct_tab_service_with_a_random_tiny_model(tmp_path):
    import imageio.v3 as iio

    from vist3a.app import SceneService

    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"{i}.png")
        iio.imwrite(paths[-1], rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    service = SceneService(tmp_path / "out", device="cpu")
    result = service.reconstruct(paths, "anysplat", "random-tiny", size=28)
    assert (result.folder / "scene.spz").exists() and result.view_file.suffix == ".splat"
    with pytest.raises(UserInputError, match="upload"):
        service.reconstruct([], "anysplat", "random-tiny")


@pytest.fixture(scope="module")
def running_app(tmp_path_factory):
    pytest.importorskip("gradio", reason="vist3a app needs gradio (pip install -e '.[app]')")
    from vist3a.app import SceneService, launch

    port = _free_port()
    service = SceneService(tmp_path_factory.mktemp("app") / "out")
    demo = launch(service, port=port, block=False)
    yield f"http://127.0.0.1:{port}/", service
    demo.close()


@pytest.mark.slow
def test_gradio_client_round_trip(running_app, tmp_path):
    """A real HTTP round trip on 127.0.0.1: the client gets the view file, both videos and every download."""
    gradio_client = pytest.importorskip("gradio_client")
    url, _ = running_app
    client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path))
    view, frames, flythrough, files, info = client.predict(
        PROMPT, "nano", 3, 5.0, 0, "preset default", api_name="/generate"
    )
    assert Path(view).suffix == ".splat" and Path(view).stat().st_size % 32 == 0
    for video in (frames, flythrough):
        video = video["video"] if isinstance(video, dict) else video
        assert Path(video).stat().st_size > 0
    names = {Path(f).name for f in files}
    assert {"scene.ply", "scene.spz", "scene.glb", "cameras.json", "meta.json"} <= names
    meta = json.loads(next(Path(f) for f in files if Path(f).name == "meta.json").read_text())
    assert meta["prompt"] == PROMPT and meta["settings"]["num_steps"] == 3
    assert "Gaussians" in info


@pytest.mark.slow
def test_browser_types_a_prompt_and_the_3d_view_is_not_blank(running_app):
    """Chromium (headless, software WebGL) types a prompt, clicks Generate and waits for the splats to render.
    With VIST3A_DOCS_SCREENSHOTS=1 the page is saved to docs/img/app.png."""
    from browser_helpers import capture, chromium_driver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    url, _ = running_app
    driver = chromium_driver(1200, 860, scale=0.5)
    driver.set_page_load_timeout(180)
    try:
        driver.get(url)
        time.sleep(5)
        box = driver.find_element(By.CSS_SELECTOR, "#prompt textarea")
        box.clear()
        box.send_keys("a green torus on top of a white cube")
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        std, png = 0.0, b""
        for _ in range(150):
            time.sleep(3)
            try:
                png, pixels = capture(driver, "#scene3d canvas")
            except TimeoutException:  # the software renderer is busy; ask again
                continue
            std = float(pixels.std())
            if std > 8:
                break
        assert std > 8, f"the 3D view stayed blank (pixel std {std:.2f})"
        if os.environ.get("VIST3A_DOCS_SCREENSHOTS"):
            DOCS_SHOT.write_bytes(png)
    finally:
        driver.quit()
