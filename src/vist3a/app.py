"""``vist3a app``: a gradio demo. Type a prompt, get a 3D scene you can turn in the browser, its videos and files.

The app is a thin layer over :class:`SceneService`, which keeps one pipeline per preset (and one reconstruction
model per kind) loaded on each of its devices between requests and writes every result with
:func:`~vist3a.scene.save_scene`. gradio's queue runs as many requests at a time as the service has devices (one
worker per visible GPU; one on a CPU). The server binds 127.0.0.1 unless told otherwise; a public gradio link only
with ``share=True``. Needs ``pip install -e ".[app]"`` (gradio).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

NANO_EXAMPLES = (
    "a red cube left of a blue sphere",
    "a large yellow cylinder next to a small purple cone",
    "a green torus on top of a white cube",
    "a shiny orange pyramid behind a black sphere",
)
PRESET_DEFAULT = "preset default"
GENERATE_STAGES = ("loading models", "denoising", "decoding the video and the 3D scene", "writing the files")
# The glTF view (point clouds; babylon.js, y up): start looking along the first camera's axis, 15 degrees above it;
# (alpha, beta) in degrees, no radius: the viewer's own framing of the file.
GLB_CAMERA = (90, 75, None)
# gradio's Model3D draws .splat files with gsplat.js, whose orbit camera starts at the same pose for every file and
# ignores `camera_position`: alpha = beta = 0.5 rad (to the right of and above the target), radius 5, looking at
# the origin, with a focal length of 1132 CSS pixels. A sideways drag changes alpha (a turn about the world's y
# axis), an upward one beta. The preview scene is moved to suit that camera instead.
SPLAT_VIEW_ORBIT = (0.5, 0.5, 5.0)
SPLAT_VIEW_FOCAL = 1132.0
SPLAT_VIEW_HEIGHT = 420  # the 3D view's height in CSS pixels
SPLAT_VIEW_MIN_PIXELS = 1.5  # the preview's median splat size (one sigma) at the start view, at least
SCENE_DOWN = (0.0, 1.0, 0.0)  # vist3a's world (OpenCV, as gsplat.js's): y points down; the scene's up is -y


def available_presets() -> list[str]:
    """The shipped preset names (``nano`` first)."""
    folder = Path(__file__).parent / "presets"
    names = sorted(p.stem for p in folder.glob("*.json"))
    return sorted(names, key=lambda name: name != "nano")


def worker_devices(device: str | torch.device | None = None) -> list[torch.device]:
    """The devices :class:`SceneService` runs requests on, one request at a time each.

    ``None``, ``"auto"`` or ``"cuda"`` (no index): every visible CUDA device (``CUDA_VISIBLE_DEVICES`` picks them),
    or the CPU when there is none. Any other device (``"cuda:1"``, ``"cpu"``, ``"mps"``): that one alone.
    """
    import torch

    if device is None or str(device) in ("auto", "cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count:
            return [torch.device("cuda", i) for i in range(count)]
        if str(device) == "cuda":
            raise ValueError("`device` is 'cuda' but no CUDA device is visible")
        return [torch.device("cpu")]
    return [torch.device(device)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "scene"


@dataclass
class SceneResult:
    """What one request produced (paths inside ``folder``)."""

    folder: Path
    view_file: Path  # what the 3D view shows: scene.splat (Gaussians) or scene.glb (point cloud)
    frames_video: Path | None
    flythrough_video: Path | None
    files: list[Path] = field(default_factory=list)
    summary: str = ""


class SceneService:
    """Generation and reconstruction with models kept loaded between calls; thread-safe.

    Each device of :func:`worker_devices` (``device``) runs one request at a time with its own models: one pipeline
    per preset and one reconstruction model per (kind, weights), loaded there on first use and kept. A request
    takes a free device (the one used last first, so that a second device loads its models only when requests
    overlap) and waits while none is free; :attr:`num_workers` is the number of requests that run at once.
    """

    def __init__(self, out_root: str | os.PathLike = "outputs/app", device: str | torch.device | None = None) -> None:
        self.out_root = Path(out_root)
        self.devices = worker_devices(device)
        self._free: queue.LifoQueue = queue.LifoQueue()
        for dev in reversed(self.devices):  # the first device on top
            self._free.put(dev)
        self._models: dict[tuple, Any] = {}
        self._models_lock = threading.Lock()
        self._count = itertools.count(1)  # next() is atomic under the GIL

    @property
    def num_workers(self) -> int:
        """How many requests run at the same time: one per device."""
        return len(self.devices)

    @contextlib.contextmanager
    def worker(self) -> Iterator[torch.device]:
        """Hold a free device for one request (waits until one is free) and make it the thread's current CUDA
        device; it is free again on exit, also after an error."""
        import torch

        device = self._free.get()
        try:
            with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
                yield device
        finally:
            self._free.put(device)

    def _next_folder(self, name: str) -> Path:
        return self.out_root / f"{time.strftime('%Y%m%d-%H%M%S')}_{next(self._count):03d}_{_slug(name)}"

    def _loaded(self, key: tuple, load: Callable[[], Any]) -> Any:
        """The model stored under ``key`` (whose last item is its device), loaded by ``load()`` on first use. Only
        the request holding that device loads it, so the lock guards the dict alone, not the (long) loading."""
        with self._models_lock:
            model = self._models.get(key)
        if model is None:
            model = load()
            with self._models_lock:
                self._models[key] = model
        return model

    def pipeline(self, preset: str, device: str | torch.device | None = None):
        """The pipeline of ``preset`` on ``device`` (default: the first device), loaded there on first use. Call it
        while holding that device (:meth:`worker`) or while no request runs."""
        import torch

        from vist3a.pipeline import Text2ScenePipeline

        device = torch.device(device) if device is not None else self.devices[0]
        return self._loaded(("pipeline", preset, device),
                            lambda: Text2ScenePipeline.from_pretrained(preset, device=device))

    def generate(
        self,
        prompt: str,
        preset: str = "nano",
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        template: str | None = None,
        flythrough_frames: int | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> SceneResult:
        """Generate one scene and write it (with ``scene.spz`` and ``scene.glb``) into a new folder.

        ``progress(fraction, stage)`` is called as the stages go (the strings of :data:`GENERATE_STAGES`; the
        denoising stage once per step, as ``"denoising i/n"``).
        """
        import torch

        from vist3a.errors import UserInputError
        from vist3a.scene import save_scene

        if not prompt or not prompt.strip():
            raise UserInputError("the prompt is empty")
        template = None if template in (None, "", PRESET_DEFAULT) else template
        report = progress or (lambda fraction, stage: None)
        with self.worker() as device:
            report(0.0, GENERATE_STAGES[0])
            pipe = self.pipeline(preset, device)
            num_steps = pipe.settings(num_steps=steps).num_steps

            def on_step(_pipe, i, _t, tensors):
                if i + 1 < num_steps:
                    report(0.05 + 0.75 * (i + 1) / num_steps, f"{GENERATE_STAGES[1]} {i + 1}/{num_steps}")
                else:  # the last step: the decoders run next
                    report(0.8, GENERATE_STAGES[2])
                return tensors

            report(0.05, f"{GENERATE_STAGES[1]} 0/{num_steps}")
            generator = torch.Generator("cpu").manual_seed(int(seed))  # as `vist3a generate --seed`
            scene = pipe(prompt.strip(), num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                         template=template, callback_on_step_end=on_step)[0]
            report(0.9, GENERATE_STAGES[3])
            folder = save_scene(scene, self._next_folder(prompt), flythrough_frames=flythrough_frames,
                                formats=["spz", "glb"])
        total = sum(scene.timings.values())
        count = f"{len(scene.gaussians):,} Gaussians" if scene.gaussians is not None else "a point cloud"
        return self._result(folder, f"**{prompt.strip()}** -> {count} in {total:.1f} s (preset {preset}, seed {seed})")

    def reconstruct(self, sources: list[str | os.PathLike], model: str = "anysplat", weights: str | None = None,
                    size: int | None = None) -> SceneResult:
        """Reconstruct uploaded images (or one video) with AnySplat / VGGT into a new folder."""
        from vist3a.components import load_components, recon_preset, resolve_preset
        from vist3a.errors import UserInputError
        from vist3a.recon.reconstruct import direction_for, read_frames, reconstruct, views_for

        paths = [Path(p) for p in sources or []]
        if not paths:
            raise UserInputError("upload some images or one video first")
        with tempfile.TemporaryDirectory() as tmp:
            videos = [p for p in paths if p.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")]
            if videos:
                source = videos[0]
            else:
                source = Path(tmp)
                for i, p in enumerate(paths):
                    shutil.copy(p, source / f"{i:04d}{p.suffix.lower()}")
            frames = read_frames(source, 32)
        preset = recon_preset(model, weights or None)
        with self.worker() as device:
            recon = self._loaded(("recon", model, weights or None, device), lambda: load_components(
                preset, {"recon"}, device=device, recon_model=model).recon.to(device))
            views = views_for(recon, model, frames, size)
            folder = self._next_folder(f"recon-{model}")
            summary = reconstruct(recon, views, folder, extra_meta={"source": "app upload"},
                                  direction=direction_for(resolve_preset(preset)))
            from vist3a.exports import export_scene

            export_scene(folder, ["glb"] + (["spz", "splat"] if model == "anysplat" else []))
        what = "Gaussians" if model == "anysplat" else "points"
        return self._result(folder, f"{summary.num_views} views -> {summary.num_primitives:,} {what} ({model})")

    @staticmethod
    def _result(folder: Path, summary: str) -> SceneResult:
        view = preview_splat(folder) if (folder / "scene.ply").exists() else folder / "scene.glb"
        videos = [folder / name if (folder / name).exists() else None for name in ("frames.mp4", "flythrough.mp4")]
        files = sorted(p for p in folder.iterdir() if p.is_file())
        return SceneResult(folder, view, videos[0], videos[1], files, summary)


def splat_view_c2w(alpha: float | None = None) -> torch.Tensor:
    """``[4, 4]`` float64 camera-to-world pose (OpenCV axes) of the camera that gradio's splat view starts from, or,
    given ``alpha`` (radians), where gsplat.js's orbit puts it after a sideways drag (a turn about the y axis)."""
    import torch

    from vist3a.cameras import invert_rigid, look_at_w2c

    start_alpha, beta, radius = SPLAT_VIEW_ORBIT
    alpha = start_alpha if alpha is None else alpha
    eye = radius * torch.tensor([math.sin(alpha) * math.cos(beta), -math.sin(beta), -math.cos(alpha) * math.cos(beta)],
                                dtype=torch.float64)
    up = -torch.tensor(SCENE_DOWN, dtype=torch.float64)  # gsplat.js's world, like vist3a's, has y down
    return invert_rigid(look_at_w2c(eye, torch.zeros(3, dtype=torch.float64), up))


def preview_transform(w2c: torch.Tensor, fy: float, height: int, means: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The similarity ``x' = s M (x - T)`` that puts a scene in front of gradio's splat-view camera as seen from the
    reference camera's side, level -> ``(M [3, 3], T [3], s)``, float64.

    Args:
        w2c: ``[4, 4]`` world-to-camera (OpenCV) of the reference camera (the first decoded frame).
        fy, height: its vertical focal length and image height in pixels.
        means: ``[N, 3]`` splat centres (world); the orbit target ``T`` is the point on the camera's optical axis at
            their median depth (:func:`~vist3a.viewer.orbit_target`, as in ``vist3a view``).

    gsplat.js turns its camera about the y axis of the file, and its start camera looks down on the target from
    :data:`SPLAT_VIEW_ORBIT`'s elevation (29 degrees). ``M`` is a turn about the y axis alone, so that a drag turns
    the scene about ``T`` and the scene's own up (-y, vist3a's world), not about an axis tilted by that elevation
    or by the reference camera's roll and pitch. It turns the reference camera's heading (its optical axis,
    made horizontal) into the start camera's: the view opens on the scene from the first frame's side, from that
    elevation above the scene's horizontal, with no roll. ``s`` scales the scene so that it fills the view's height
    as it filled the frame's at the target depth.
    """
    import torch

    from vist3a.cameras import look_at_w2c
    from vist3a.viewer import orbit_target

    w2c = w2c.detach().cpu().to(torch.float64)
    target, target_depth = orbit_target(w2c.numpy(), means.detach().cpu().double().numpy())
    target = torch.from_numpy(target)
    up = -torch.tensor(SCENE_DOWN, dtype=torch.float64)
    rotation = splat_view_c2w()[:3, :3] @ look_at_w2c(target - _level_view_direction(w2c), target, up)[:3, :3]
    view_half_height = SPLAT_VIEW_ORBIT[2] * (SPLAT_VIEW_HEIGHT / 2) / SPLAT_VIEW_FOCAL  # at the target, view units
    frame_half_height = target_depth * (height / 2) / fy  # at the target, scene units
    return rotation, target, view_half_height / frame_half_height


def _level_view_direction(w2c: torch.Tensor, elevation: float = SPLAT_VIEW_ORBIT[1]) -> torch.Tensor:
    """``[3]`` unit viewing direction of a camera on the heading of ``w2c [4, 4]`` (its optical axis made horizontal;
    a camera looking straight down or up: the top of its image) looking down by ``elevation`` radians (vist3a's
    world: y down)."""
    import torch

    down = torch.tensor(SCENE_DOWN, dtype=torch.float64)
    axes = w2c[:3, :3].to(torch.float64)  # rows: the camera's x, y, z axes in the world
    heading = axes[2] - (axes[2] @ down) * down
    if float(heading.norm()) < 1e-6:
        heading = -axes[1] - (-axes[1] @ down) * down
    heading = heading / heading.norm()
    return math.cos(elevation) * heading + math.sin(elevation) * down


def preview_splat(folder: Path) -> Path:
    """``folder/.preview/scene.splat``: the splats moved, turned and scaled by :func:`preview_transform` so that
    gradio's splat view (whose camera cannot be placed) opens on the scene from the first decoded frame's side,
    looking down on it at 29 degrees, and turns about the scene's centre and its up axis. Without ``cameras.json``
    the reference camera is the identity (vist3a's first camera is close to it). Splats whose median footprint at
    the start view is below :data:`SPLAT_VIEW_MIN_PIXELS` are enlarged to it (at most 20x; browser renderers drop
    sub-pixel splats). DC colour only, as in any ``.splat``. The files offered for download stay in vist3a's frame,
    at their true size."""
    import torch

    from vist3a.cameras import load_cameras_json, quat_to_rotmat, rotmat_to_quat
    from vist3a.splats import Gaussians, load_ply, save_splat

    g = load_ply(folder / "scene.ply", dtype=torch.float64)
    if (folder / "cameras.json").is_file():
        w2c, K, _, height = load_cameras_json(folder / "cameras.json")
        w2c, fy = w2c[0], float(K[0, 1, 1])
    else:
        w2c, fy, height = torch.eye(4, dtype=torch.float64), 1.0, 1
    rotation, target, scale = preview_transform(w2c, fy, height, g.means)
    means = scale * (g.means - target) @ rotation.T
    view = torch.linalg.inv(splat_view_c2w())
    depth = (means @ view[2, :3] + view[2, 3]).clamp_min(1e-6)
    footprint = float((SPLAT_VIEW_FOCAL * scale * g.scales.amax(1) / depth).median())  # CSS pixels (one sigma)
    enlarge = min(max(1.0, SPLAT_VIEW_MIN_PIXELS / max(footprint, 1e-12)), 20.0)
    turned = Gaussians(
        means=means,
        quats=rotmat_to_quat(rotation @ quat_to_rotmat(g.quats)),
        scales=g.scales * scale * enlarge,
        opacities=g.opacities,
        sh=g.sh[:, :1],
    )
    return save_splat(turned, folder / ".preview" / "scene.splat")


def build_app(service: SceneService, default_preset: str = "nano"):
    """The gradio Blocks of the app (tabs "generate" and "reconstruct")."""
    import gradio as gr

    from vist3a.errors import UserInputError
    from vist3a.video.templates import TEMPLATES

    def outputs(result: SceneResult):
        return (str(result.view_file), _str(result.frames_video), _str(result.flythrough_video),
                [str(p) for p in result.files], result.summary)

    def on_generate(prompt, preset, steps, guidance, seed, template, progress=gr.Progress()):
        try:
            result = service.generate(prompt, preset, int(steps), float(guidance), int(seed), template,
                                      progress=lambda fraction, stage: progress(fraction, desc=stage))
        except UserInputError as exc:
            raise gr.Error(str(exc)) from None
        return outputs(result)

    def on_reconstruct(files, model, weights, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="reconstructing")
        paths = [getattr(f, "name", f) for f in files or []]
        try:
            result = service.reconstruct(paths, model, weights or None)
        except UserInputError as exc:
            raise gr.Error(str(exc)) from None
        return (str(result.view_file), [str(p) for p in result.files], result.summary)

    # both tabs share one concurrency group with a worker per device: gradio's queue never runs more requests than
    # the service has devices, so none waits inside the service
    workers = dict(concurrency_limit=service.num_workers, concurrency_id="scene-service")
    with gr.Blocks(title="vist3a: text to 3D") as demo:
        gr.Markdown("## vist3a: text -> 3D Gaussian splats\nDrag to turn the scene; the files are below it.")
        with gr.Tab("generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    prompt = gr.Textbox(label="Prompt", value=NANO_EXAMPLES[0], lines=2, elem_id="prompt")
                    preset = gr.Dropdown(available_presets(), value=default_preset, label="Preset")
                    steps = gr.Slider(1, 100, value=20, step=1, label="Denoising steps")
                    guidance = gr.Slider(1.0, 15.0, value=5.0, step=0.5, label="Guidance scale")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    template = gr.Dropdown([PRESET_DEFAULT, "none", *TEMPLATES], value=PRESET_DEFAULT,
                                           label="Camera-motion template")
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    gr.Examples([[p] for p in NANO_EXAMPLES], inputs=[prompt], label="Prompts the nano preset knows")
                with gr.Column(scale=2):
                    view = gr.Model3D(label="3D scene", height=SPLAT_VIEW_HEIGHT, elem_id="scene3d",
                                      camera_position=GLB_CAMERA)
                    info = gr.Markdown()
                    with gr.Row():
                        frames = gr.Video(label="Generated video", height=220)
                        flythrough = gr.Video(label="Fly-through", height=220)
                    files = gr.File(label="Files", file_count="multiple")
            run.click(on_generate, [prompt, preset, steps, guidance, seed, template],
                      [view, frames, flythrough, files, info], api_name="generate", **workers)
        with gr.Tab("reconstruct"):
            with gr.Row():
                with gr.Column(scale=1):
                    uploads = gr.File(label="Images or one video", file_count="multiple")
                    model = gr.Radio(["anysplat", "vggt"], value="anysplat", label="Model")
                    weights = gr.Textbox(label="Weights (Hub id or folder; empty: the official release)")
                    recon = gr.Button("Reconstruct", variant="primary")
                with gr.Column(scale=2):
                    recon_view = gr.Model3D(label="3D scene", height=SPLAT_VIEW_HEIGHT, camera_position=GLB_CAMERA)
                    recon_info = gr.Markdown()
                    recon_files = gr.File(label="Files", file_count="multiple")
            recon.click(on_reconstruct, [uploads, model, weights], [recon_view, recon_files, recon_info],
                        api_name="reconstruct", **workers)
    demo.queue()
    return demo


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def launch(service: SceneService, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           default_preset: str = "nano", block: bool = True):
    """Build and start the app; returns the Blocks (``block=False`` returns at once, for tests)."""
    demo = build_app(service, default_preset)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                allowed_paths=[str(service.out_root.resolve())], quiet=not block)
    return demo
