"""``vist3a app``: the service called directly, the gradio app over real HTTP (gradio_client on 127.0.0.1), and a
headless-Chromium test that types a prompt and waits for the 3D view (skipped without gradio / Chromium)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vist3a.cameras import quat_to_rotmat
from vist3a.errors import UserInputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))

PROMPT = "a red cube left of a blue sphere"
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "app.png"
DOCS_TURNED = DOCS_SHOT.with_name("app_turned.png")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reference_camera(level: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """An off-origin camera rolled by 17 degrees and looking down a little, and its intrinsics (80 x 60 px). With
    ``level``: upright (no roll) and looking down at the elevation of gradio's splat-view start camera instead."""
    from vist3a.app import SPLAT_VIEW_ORBIT
    from vist3a.cameras import look_at_w2c

    eye = torch.tensor([1.0, -0.5, -3.0], dtype=torch.float64)
    if level:
        heading = torch.nn.functional.normalize(torch.tensor([-0.8, 0.0, 3.5], dtype=torch.float64), dim=0)
        beta = SPLAT_VIEW_ORBIT[1]
        target = eye + math.cos(beta) * heading + math.sin(beta) * torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        w2c = look_at_w2c(eye, target, torch.tensor([0.0, -1.0, 0.0]))
    else:
        w2c = look_at_w2c(eye, torch.tensor([0.2, 0.0, 0.5]), torch.tensor([0.3, -1.0, 0.0]))
    K = torch.tensor([[85.0, 0.0, 39.5], [0.0, 80.0, 29.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return w2c, K


def _scene_folder(folder: Path, cam_points: torch.Tensor, rgb: torch.Tensor, scale: float, level: bool = False
                  ) -> Path:
    """``scene.ply`` of splats at ``cam_points [N, 3]`` (reference camera coordinates) and ``cameras.json``."""
    from vist3a.cameras import save_cameras_json
    from vist3a.splats import Gaussians, save_ply

    w2c, K = _reference_camera(level)
    c2w = torch.linalg.inv(w2c)
    n = len(cam_points)
    gen = torch.Generator().manual_seed(0)
    g = Gaussians.from_rgb(cam_points @ c2w[:3, :3].T + c2w[:3, 3], rgb, torch.full((n, 3), scale),
                           torch.full((n,), 0.9)).to(dtype=torch.float64)
    g = Gaussians(g.means, torch.nn.functional.normalize(torch.randn(n, 4, generator=gen, dtype=torch.float64), dim=-1),
                  g.scales, g.opacities, g.sh)
    save_ply(g, folder / "scene.ply")
    save_cameras_json(folder / "cameras.json", torch.stack([w2c, torch.eye(4, dtype=torch.float64)]), K, 80, 60)
    return folder


def _cluster_centres(demo, driver, folder: Path, read) -> dict[str, tuple[float, float]]:
    """Launch ``demo`` (serving ``folder``) on 127.0.0.1, open it in ``driver`` and poll ``read()`` (the 3D view's
    pixels ``[H, W, 3]``, or ``None`` while it cannot be read) until the red, green and blue clusters all show ->
    their centres (fractions of the width and height). Quits the driver and closes the app; fails when a cluster
    never shows."""
    from browser_helpers import centre, colour_mask, poll

    def look():
        pixels = read()
        return None if pixels is None else {c: centre(colour_mask(pixels, c)) for c in ("red", "green", "blue")}

    port = _free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, allowed_paths=[str(folder)])
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        seen = poll(look, lambda v: all(v.values()), 120)
    finally:
        driver.quit()
        demo.close()
    assert seen and all(seen.values()), f"not every cluster shows: {seen}"
    return seen


def test_preview_shows_the_first_camera_view_from_the_splat_view_camera(tmp_path):
    """A first camera that is upright and looks down at the splat view's start elevation: splats on the plane at
    its median depth land where that camera saw them (directions scaled by focal length over half the image
    height), turned as it saw them, with the same footprint; other cameras are ignored."""
    from vist3a.app import SPLAT_VIEW_FOCAL, SPLAT_VIEW_HEIGHT, preview_splat, splat_view_c2w
    from vist3a.splats import load_ply, load_splat

    gen = torch.Generator().manual_seed(1)
    n, depth = 64, 2.0
    uv = torch.rand(n, 2, generator=gen, dtype=torch.float64) * torch.tensor([80.0, 60.0]) - 0.5  # pixels
    w2c, K = _reference_camera(level=True)
    xy = (uv - K[:2, 2]) / K.diagonal()[:2] * depth
    cam = torch.cat([xy, torch.full((n, 1), depth, dtype=torch.float64)], 1)
    folder = _scene_folder(tmp_path, cam, torch.rand(n, 3, generator=gen), scale=0.05, level=True)
    g = load_ply(folder / "scene.ply", dtype=torch.float64)
    back = load_splat(preview_splat(folder), dtype=torch.float64)
    view = torch.linalg.inv(splat_view_c2w())
    seen = back.means @ view[:3, :3].T + view[:3, 3]
    seen_uv = seen[:, :2] / seen[:, 2:] * SPLAT_VIEW_FOCAL / (SPLAT_VIEW_HEIGHT / 2)
    ref = g.means @ w2c[:3, :3].T + w2c[:3, 3]
    ref_uv = ref[:, :2] / ref[:, 2:] * K[1, 1] / (60 / 2)  # square view pixels: the frame's height sets the scale
    # match through the reference view itself: the splat seen at the same image point
    idx = torch.cdist(seen_uv, ref_uv).argmin(1)
    assert len(set(idx.tolist())) == n
    torch.testing.assert_close(seen_uv, ref_uv[idx], atol=1e-4, rtol=0)
    torch.testing.assert_close(seen[:, 2], torch.full((n,), 5.0, dtype=torch.float64), atol=1e-5, rtol=0)
    # orientation in the camera's frame (the .splat quantisation of quaternions is ~1/128)
    torch.testing.assert_close(view[:3, :3] @ quat_to_rotmat(back.quats), w2c[:3, :3] @ quat_to_rotmat(g.quats[idx]),
                               atol=0.05, rtol=0)
    footprint = back.scales[:, 0] / seen[:, 2] * SPLAT_VIEW_FOCAL / (SPLAT_VIEW_HEIGHT / 2)
    torch.testing.assert_close(footprint, g.scales[idx, 0] / ref[idx, 2] * K[1, 1] / 30, rtol=1e-3, atol=0)


def test_preview_turns_about_the_scene_up():
    """gsplat.js turns its camera about the preview's y axis when the view is dragged sideways. Whatever the first
    camera's roll and pitch, that axis must be the scene's up (-y in vist3a's world), so that the scene's vertical
    stays vertical in the view however far it is turned; the start view looks at the target from the first camera's
    side (its azimuth), at gsplat.js's start elevation above the scene's horizontal."""
    from vist3a.app import SPLAT_VIEW_ORBIT, preview_transform, splat_view_c2w

    w2c, K = _reference_camera()  # rolled by 17 degrees, looking down a little
    gen = torch.Generator().manual_seed(4)
    c2w = torch.linalg.inv(w2c)
    means = (torch.randn(100, 3, generator=gen, dtype=torch.float64) * 0.3 + torch.tensor([0.0, 0.0, 2.0])
             ) @ c2w[:3, :3].T + c2w[:3, 3]
    rotation, target, scale = preview_transform(w2c, float(K[1, 1]), 60, means)
    up = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(rotation @ up, up, atol=1e-12, rtol=0)
    for turn in range(0, 360, 30):  # degrees dragged sideways
        view = torch.linalg.inv(splat_view_c2w(SPLAT_VIEW_ORBIT[0] + math.radians(turn)))
        image_up = view[:3, :3] @ (rotation @ up)
        assert abs(float(image_up[0])) < 1e-9, f"the scene's up leans in the view after a {turn}-degree turn"

    def azimuth(v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(v[[0, 2]], dim=0)

    first_camera = scale * rotation @ (c2w[:3, 3] - target)  # its centre, in the preview (target at the origin)
    torch.testing.assert_close(azimuth(first_camera), azimuth(splat_view_c2w()[:3, 3]), atol=1e-9, rtol=0)
    # a camera looking straight down has no heading: the top of its image gives it
    from vist3a.cameras import look_at_w2c

    down_w2c = look_at_w2c(torch.tensor([0.0, -3.0, 0.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                           torch.tensor([0.0, 0.0, 1.0]))
    rotation, target, _ = preview_transform(down_w2c, 80.0, 60, means)
    torch.testing.assert_close(rotation @ up, up, atol=1e-12, rtol=0)
    top = scale * rotation @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # world +z: the image's top
    eye = splat_view_c2w()[:3, 3]
    assert float(top[[0, 2]] @ eye[[0, 2]]) < 0  # ahead of the start camera, beyond the target


def test_preview_enlarges_splats_below_the_minimum_footprint(tmp_path):
    from vist3a.app import SPLAT_VIEW_FOCAL, SPLAT_VIEW_MIN_PIXELS, preview_splat, splat_view_c2w
    from vist3a.splats import load_splat

    gen = torch.Generator().manual_seed(2)
    cam = torch.randn(200, 3, generator=gen, dtype=torch.float64) * 0.3 + torch.tensor([0.0, 0.0, 2.0])
    for scale, expected in ((1e-3, SPLAT_VIEW_MIN_PIXELS), (1e-6, None)):
        back = load_splat(preview_splat(_scene_folder(tmp_path, cam, torch.rand(200, 3), scale)), dtype=torch.float64)
        view = torch.linalg.inv(splat_view_c2w())
        depth = back.means @ view[2, :3] + view[2, 3]
        footprint = float((SPLAT_VIEW_FOCAL * back.scales.amax(1) / depth).median())
        if expected is None:  # at most 20x: these stay below
            assert footprint < SPLAT_VIEW_MIN_PIXELS / 2
        else:
            assert footprint == pytest.approx(expected, rel=0.02)


def test_available_presets_start_with_nano():
    from vist3a.app import available_presets

    presets = available_presets()
    assert presets[0] == "nano" and "tiny-random" in presets


def _fake_cuda(monkeypatch, count: int) -> None:
    """Pretend ``count`` CUDA devices are visible (none: no CUDA); switching the current device does nothing."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())


def test_worker_devices(monkeypatch):
    from vist3a.app import worker_devices

    _fake_cuda(monkeypatch, 3)
    assert worker_devices() == worker_devices("auto") == worker_devices("cuda") == [
        torch.device("cuda", i) for i in range(3)]
    assert worker_devices("cuda:1") == [torch.device("cuda", 1)] and worker_devices("cpu") == [torch.device("cpu")]
    _fake_cuda(monkeypatch, 0)
    assert worker_devices() == worker_devices("auto") == [torch.device("cpu")]
    with pytest.raises(ValueError, match="no CUDA device"):
        worker_devices("cuda")


class _Stop(Exception):
    """Ends a fake pipeline call (there is no scene to write)."""


@pytest.mark.parametrize("num_cuda", [2, 1, 0])
def test_service_runs_one_request_per_device_with_its_own_pipeline(tmp_path, monkeypatch, num_cuda):
    """Two requests at once: on two devices both run at the same time, each with a pipeline loaded on its own
    device; on one device (one GPU, or the CPU) the second waits for the first and reuses its pipeline. The
    devices are free again after the requests fail, and a later request loads nothing."""
    from vist3a.app import SceneService
    from vist3a.pipeline import Text2ScenePipeline

    _fake_cuda(monkeypatch, num_cuda)
    lock, running, calls, loads = threading.Lock(), [], [], []
    together = threading.Barrier(2, timeout=30)

    class FakePipeline:
        def __init__(self, device):
            self.device = device

        def settings(self, num_steps=None):
            return SimpleNamespace(num_steps=num_steps)

        def __call__(self, prompt, **kwargs):
            with lock:
                running.append(self)
                calls.append((self, len(running)))
            try:
                if num_cuda == 2 and len(calls) <= 2:
                    together.wait()  # both requests inside their pipelines at the same time, or a timeout
                else:
                    time.sleep(0.5)  # a second request that does not wait would start meanwhile
            finally:
                with lock:
                    running.remove(self)
            raise _Stop

    def from_pretrained(preset, device=None):
        loads.append(torch.device(device))
        return FakePipeline(torch.device(device))

    monkeypatch.setattr(Text2ScenePipeline, "from_pretrained", staticmethod(from_pretrained))
    service = SceneService(tmp_path, device="auto")
    assert service.num_workers == max(num_cuda, 1)
    errors = []

    def request(seed: int) -> None:
        try:
            service.generate(PROMPT, steps=2, seed=seed)
        except Exception as exc:  # checked below
            errors.append(exc)

    threads = [threading.Thread(target=request, args=(seed,)) for seed in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(errors) == 2 and all(isinstance(exc, _Stop) for exc in errors), errors
    pipes = [pipe for pipe, _ in calls]
    if num_cuda == 2:
        assert pipes[0] is not pipes[1] and {p.device for p in pipes} == {torch.device("cuda", i) for i in range(2)}
        assert max(at_once for _, at_once in calls) == 2
    else:
        assert pipes[0] is pipes[1] and pipes[0].device == service.devices[0]
        assert max(at_once for _, at_once in calls) == 1
    assert sorted(map(str, loads)) == sorted(map(str, service.devices))  # one load per device
    with pytest.raises(_Stop):
        service.generate(PROMPT, steps=2)  # all devices free again; nothing new to load
    assert len(loads) == service.num_workers and calls[-1][0] in pipes


def test_app_queue_has_one_worker_per_device(tmp_path, monkeypatch):
    """gradio's queue runs as many requests as the service has devices, generate and reconstruct together."""
    pytest.importorskip("gradio", reason="vist3a app needs gradio (pip install -e '.[app]')")
    from vist3a.app import SceneService, build_app

    for num_cuda, workers in ((2, 2), (0, 1)):
        _fake_cuda(monkeypatch, num_cuda)
        fns = {fn.api_name: fn for fn in build_app(SceneService(tmp_path)).fns.values()}
        assert fns["generate"].concurrency_limit == fns["reconstruct"].concurrency_limit == workers
        assert fns["generate"].concurrency_id == fns["reconstruct"].concurrency_id


@pytest.mark.slow
def test_service_generates_and_keeps_the_pipeline(tmp_path):
    from vist3a.app import SceneService

    service = SceneService(tmp_path / "out")
    stages = []
    first = service.generate(PROMPT, steps=2, flythrough_frames=2, progress=lambda f, stage: stages.append((f, stage)))
    assert [stage for _, stage in stages] == ["loading models", "denoising 0/2", "denoising 1/2",
                                              "decoding the video and the 3D scene", "writing the files"]
    assert [f for f, _ in stages] == sorted(f for f, _ in stages) and stages[-1][0] < 1
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


@pytest.mark.slow
def test_browser_splat_view_opens_level_on_the_first_camera_side(tmp_path):
    """gradio's splat view (gsplat.js in headless Chromium) shows the preview from the first camera's side with the
    scene's up kept up: clusters level in the world, 2 units ahead of a camera off the origin and rolled by 17
    degrees, show red left of blue and level with it, green above both (the camera's roll is not shown)."""
    gr = pytest.importorskip("gradio", reason="vist3a app needs gradio (pip install -e '.[app]')")
    from browser_helpers import chromium_driver, read_canvas

    from vist3a.app import SPLAT_VIEW_HEIGHT, preview_splat

    gen = torch.Generator().manual_seed(3)
    w2c, _ = _reference_camera()
    c2w = torch.linalg.inv(w2c)
    down = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    heading = torch.nn.functional.normalize(c2w[:3, 2] - (c2w[:3, 2] @ down) * down, dim=0)
    right = torch.linalg.cross(down, heading)  # level, to the camera's right
    offsets = torch.stack([-0.5 * right, 0.5 * right, -0.4 * down])  # red, blue, green (above)
    world = (offsets.repeat_interleave(300, 0) + c2w[:3, 3] + 2.0 * c2w[:3, 2]
             + 0.06 * torch.randn(900, 3, generator=gen, dtype=torch.float64))
    cam = world @ w2c[:3, :3].T + w2c[:3, 3]
    rgb = torch.eye(3)[[0, 2, 1]].repeat_interleave(300, 0)  # red, blue, green
    preview = preview_splat(_scene_folder(tmp_path, cam, rgb, 0.02))
    driver = chromium_driver(1000, 700, scale=0.5)  # skips without selenium / Chromium
    driver.set_script_timeout(60)
    with gr.Blocks() as demo:
        gr.Model3D(value=str(preview), height=SPLAT_VIEW_HEIGHT, elem_id="scene3d")
    seen = _cluster_centres(demo, driver, tmp_path, lambda: read_canvas(driver, "#scene3d canvas"))
    (rx, ry), (gx, gy), (bx, by) = seen["red"], seen["green"], seen["blue"]
    assert rx < gx < bx and gy < min(ry, by) - 0.1, seen
    assert abs(ry - by) < 0.03, f"the view is rolled: {seen}"


@pytest.mark.slow
def test_browser_glb_view_opens_upright_on_the_first_camera_view(tmp_path):
    """The point-cloud view (scene.glb in gradio's babylon.js viewer, GLB_CAMERA) shows the points as the first
    camera saw them: red left of blue, green above both (read from a page screenshot: babylon's canvas reads back
    blank)."""
    gr = pytest.importorskip("gradio", reason="vist3a app needs gradio (pip install -e '.[app]')")
    pytest.importorskip("trimesh", reason="scene.glb needs trimesh (pip install -e '.[export]')")
    from browser_helpers import capture, chromium_driver

    from vist3a.app import GLB_CAMERA, SPLAT_VIEW_HEIGHT
    from vist3a.exports.glb import save_glb
    from vist3a.exports.source import SceneData

    rng = np.random.default_rng(0)
    offsets = np.array([[-0.5, 0.0, 2.0], [0.5, 0.0, 2.0], [0.0, -0.4, 2.0]])  # camera frame, y down
    points = np.concatenate([o + 0.06 * rng.standard_normal((3000, 3)) for o in offsets]).astype(np.float32)
    colors = np.repeat(np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0]], np.uint8), 3000, 0)
    K = np.array([[[80.0, 0.0, 39.5], [0.0, 80.0, 29.5], [0.0, 0.0, 1.0]]])
    glb = save_glb(SceneData(None, points, colors, np.eye(4)[None], K, 80, 60), tmp_path / "scene.glb")
    driver = chromium_driver(1000, 700, scale=0.5)  # skips without selenium / Chromium
    with gr.Blocks() as demo:
        gr.Model3D(value=str(glb), height=SPLAT_VIEW_HEIGHT, elem_id="scene3d", camera_position=GLB_CAMERA)
    seen = _cluster_centres(demo, driver, tmp_path, lambda: capture(driver, "#scene3d canvas")[1])
    (rx, ry), (gx, gy), (bx, by) = seen["red"], seen["green"], seen["blue"]
    assert rx < gx < bx and gy < min(ry, by) - 0.05, seen


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
def test_browser_generates_a_scene_that_shows_and_turns(running_app):
    """Chromium (headless, software WebGL, seconds a frame for the nano scene's 90k splats) types the prompt, clicks
    Generate and reads the 3D view's canvas (the canvas alone, not the labels over it). The view must open on the
    first decoded frame's side: the red cube and the blue sphere both show, red left of blue. A drag across the
    view must turn the scene: the red splats move by more than 4% of the width (and 3x more than between two reads
    before the drag, once the fade-in has stopped moving them). With VIST3A_DOCS_SCREENSHOTS=1, once gsplat.js has
    faded all splats in, the page is saved to docs/img/app.png and the view before and after the drag to
    docs/img/app_turned.png."""
    from browser_helpers import capture, centre, chromium_driver, colour_mask, drag, poll, read_canvas, save_docs_png

    url, _ = running_app
    docs = bool(os.environ.get("VIST3A_DOCS_SCREENSHOTS"))
    driver = chromium_driver(1200, 900, scale=1.0 if docs else 0.5)  # skips without selenium / Chromium
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    driver.set_page_load_timeout(180)
    driver.set_script_timeout(120)

    def look():
        pixels = read_canvas(driver, "#scene3d canvas")
        if pixels is None:
            return None
        red, blue = centre(colour_mask(pixels, "red")), centre(colour_mask(pixels, "blue"))
        return {"lit": float((pixels.max(-1) > 40).mean()), "red": red and red[0], "blue": blue and blue[0],
                "pixels": pixels}

    def settle(key: str, tolerance: float, timeout: float):
        """Read until ``key`` changes by less than ``tolerance`` between two reads."""
        history = []

        def settled(view) -> bool:
            history.append(view[key])
            return len(history) > 1 and None not in history[-2:] and abs(history[-1] - history[-2]) < tolerance

        return poll(look, settled, timeout)

    try:
        driver.get(url)
        box = poll(lambda: driver.find_element(By.CSS_SELECTOR, "#prompt textarea"), bool, 60)
        box.clear()
        box.send_keys(PROMPT)
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        seen = poll(look, lambda v: v["lit"] > 0.1 and v["red"] is not None and v["blue"] is not None, 420)
        assert seen and seen["red"] is not None and seen["blue"] is not None, "the 3D view shows no scene"
        assert seen["lit"] > 0.1, f"the 3D view is mostly blank (lit fraction {seen['lit']:.3f})"
        assert seen["red"] < seen["blue"], f"the view does not open on the decoded view (red left of blue): {seen}"
        if docs:  # let the fade-in finish (the lit fraction stops growing), then save the page
            seen = settle("lit", 0.003, 400)
            save_docs_png(DOCS_SHOT, poll(lambda: capture(driver, "#scene3d canvas")[0], bool, 120))
        settle("red", 0.005, 300)  # gsplat.js fades the splats in, which moves the red splats' centre a little
        first, before = (poll(look, lambda v: v["red"] is not None, 120) for _ in range(2))
        drift = abs(before["red"] - first["red"])
        assert drift < 0.015, f"the view moves without a drag: red at {first['red']:.3f}, then {before['red']:.3f}"
        drag(driver, driver.find_element(By.CSS_SELECTOR, "#scene3d canvas"), 350)  # ~60 degrees
        moved = max(0.04, 3 * drift)
        after = poll(look, lambda v: v["red"] is not None and abs(v["red"] - before["red"]) > moved, 300)
        assert after and after["red"] is not None and abs(after["red"] - before["red"]) > moved, (
            f"a drag did not turn the scene: red at {before['red']:.3f}, then {after and after['red']}")
        if docs:
            after = settle("red", 0.003, 300)
            gap = np.full((before["pixels"].shape[0], 8, 3), 255, np.uint8)
            save_docs_png(DOCS_TURNED, np.concatenate([before["pixels"], gap, after["pixels"]], 1))
    except TimeoutException as exc:
        pytest.fail(f"the browser did not answer: {exc}")
    finally:
        driver.quit()
