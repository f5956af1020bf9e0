"""``Text2ScenePipeline``: prompt -> Wan latents -> stitched 3D decoder -> :class:`~vist3a.scene.Scene`.

Stages (each timed; see ``Scene.timings``):

1. check inputs (frames 4k+1, sizes, steps, guidance) against the generator's VAE factors,
2. ``text``: encode the prompt (camera-motion template applied) and the negative prompt in one pass —
   cached per prompt,
3. ``denoise``: sample *normalised* latents (flow matching, CFG batched into one forward),
4. de-normalise to *raw* VAE latents (``video.denormalize_latents``, the one conversion helper),
5. VAE-decode the frames once (they feed both ``frames.mp4`` and AnySplat's Gaussian head),
6. run the stitched decoder on raw latents + frames -> Gaussians / pointmaps + cameras.

``from_pretrained`` takes a preset name (``nano``, ``vist3a-1.3b``, ``vist3a-14b``, ``tiny-random``), a preset
JSON file, or a folder written by :meth:`Text2ScenePipeline.save_pretrained`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from vist3a.errors import UserInputError
from vist3a.presets import load_preset
from vist3a.scene import Scene

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """``"bf16"`` / ``"bfloat16"`` / ... -> ``torch.dtype`` (``None`` stays ``None``)."""
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise UserInputError(f"--dtype must be one of {sorted(set(DTYPES))}, got {name!r}")
    return DTYPES[name]


@dataclass
class GenerationSettings:
    """Settings of one generation; defaults come from the preset, any field can be overridden per call."""

    num_frames: int = 13
    height: int = 512
    width: int = 512
    num_steps: int = 50
    guidance_scale: float = 7.5
    flow_shift: float = 5.0
    scheduler: str = "unipc"
    template: str | None = "orbit"
    negative_prompt: str | None = "release"
    seed: int = 0
    round_frames: bool = False

    @classmethod
    def from_defaults(cls, defaults: dict[str, Any], **overrides: Any) -> GenerationSettings:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in defaults.items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown generation settings {sorted(unknown)}; known: {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timer:
    """Wall-clock seconds per stage (synchronising CUDA so GPU work is attributed to its stage)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                _sync(timer.device)
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                _sync(timer.device)
                timer.times[name] = timer.times.get(name, 0.0) + time.perf_counter() - self.start

        return _Stage()


class Text2ScenePipeline:
    """Text-to-3D: a :class:`~vist3a.video.WanGenerator` plus a :class:`~vist3a.stitching.StitchedDecoder`.

    Example::

        pipe = Text2ScenePipeline.from_pretrained("nano")
        scene = pipe("a red cube left of a blue sphere", seed=0)[0]
        save_scene(scene, "out/")
    """

    def __init__(self, generator: Any, decoder: torch.nn.Module, preset: dict[str, Any]) -> None:
        self.generator = generator
        self.decoder = decoder.eval()
        self.preset = preset

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        preset_or_dir: str | os.PathLike = "nano",
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        lora: str | os.PathLike | None = None,
        merge_lora: bool = True,
        local_files_only: bool | None = None,
        offload: str | None = None,
        compile: bool = False,
        fp8: bool = False,
    ) -> Text2ScenePipeline:
        """Build the pipeline from a preset name, a preset JSON file or a saved pipeline folder.

        ``lora``: an extra PEFT LoRA folder for the transformer (e.g. ``RUN/checkpoint-100/lora_ema`` from
        ``vist3a align``), loaded after the preset's own. ``local_files_only=None`` follows ``HF_HUB_OFFLINE``;
        missing weights raise one :class:`UserInputError` naming every missing repo id. ``offload``: see
        :class:`~vist3a.video.WanGenerator` (default: the preset's, ``"text"`` for the real presets on CUDA).
        ``compile``: :meth:`compile` the transformer. ``fp8``: :meth:`quantize_fp8` it first (CUDA, torchao).
        """
        from vist3a.pipeline_loading import load_components

        device = torch.device(device) if device is not None else _default_device()
        path = Path(preset_or_dir)
        if path.is_dir():
            preset_file = path / "preset.json"
            if not preset_file.is_file():
                raise UserInputError(f"'{path}' is not a vist3a pipeline folder (no preset.json)")
            preset = load_preset(preset_file)
            preset["folder"] = str(path)
        else:
            preset = load_preset(preset_or_dir)
        dtype = parse_dtype(dtype) or parse_dtype(preset["defaults"].get("dtype"))
        if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
            logger.info("CPU run: using float32 instead of %s", dtype)
            dtype = torch.float32
        from vist3a.video.generator import OFFLOAD_MODES

        if offload is None:
            offload = preset["defaults"].get("offload", "none") if device.type == "cuda" else "none"
        if offload not in OFFLOAD_MODES:
            raise UserInputError(f"--offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
        generator, decoder = load_components(
            preset, device=device, dtype=dtype, local_files_only=local_files_only, offload=offload
        )
        if lora is not None:
            from vist3a.video.lora import load_lora

            load_lora(generator.transformer, lora, merge=merge_lora, local_files_only=local_files_only)
        decoder.to(device)
        pipe = cls(generator, decoder, preset)
        if fp8:
            pipe.quantize_fp8()
            if not compile:
                logger.warning("--fp8 without --compile quantises activations in separate kernels, which can be "
                               "slower than bf16: add --compile for the speed-up")
        return pipe.compile() if compile else pipe

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``generator/`` (diffusers Wan layout), ``decoder/`` and ``preset.json`` (atomically)."""
        from vist3a.io_utils import atomic_dir

        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            self.generator.save_pretrained(tmp / "generator")
            self.decoder.save_pretrained(tmp / "decoder")
            preset = {k: v for k, v in self.preset.items() if k not in ("folder", "builtin")}
            preset["source"] = "folder"
            (tmp / "preset.json").write_text(json.dumps(preset, indent=2))
        return directory

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def quantize_fp8(self) -> Text2ScenePipeline:
        """Run the transformer blocks' matmuls in fp8 (:func:`vist3a.video.fp8.quantize_fp8`), in place: faster on
        Ada/Hopper GPUs, close to but not equal to bf16. Merge LoRA first; compile afterwards."""
        from vist3a.video.fp8 import quantize_fp8

        if self.generator.offload in ("model", "sequential"):
            raise UserInputError(f"--fp8 needs the transformer resident on the GPU, but --offload is "
                                 f"{self.generator.offload}: use --offload text (the default) or none")
        quantize_fp8(self.generator.transformer)
        return self

    def compile(self, mode: str | None = None) -> Text2ScenePipeline:
        """``torch.compile`` the transformer (the denoising loop's only heavy module), in place.

        The first generation afterwards pays the compilation (tens of seconds at real size); later ones at the
        same shapes run the compiled graph. LoRA must be loaded (and merged) before compiling.
        """
        self.generator.transformer.compile(mode=mode, dynamic=False)
        return self

    # ------------------------------------------------------------------ generation
    def settings(self, **overrides: Any) -> GenerationSettings:
        """The preset's defaults with ``overrides`` applied (``None`` values are ignored)."""
        return GenerationSettings.from_defaults(self.preset.get("defaults", {}), **overrides)

    def check_inputs(self, prompts: Sequence[str], settings: GenerationSettings) -> None:
        """Validate once, at entry: clear messages naming the argument, the rule and the value."""
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise UserInputError("every prompt must be a non-empty string")
        if settings.num_steps < 1:
            raise UserInputError(f"--steps must be >= 1, got {settings.num_steps}")
        if settings.guidance_scale < 0:
            raise UserInputError(f"--cfg must be >= 0, got {settings.guidance_scale}")
        try:
            self.generator.latent_shape(
                settings.num_frames, settings.height, settings.width, round_frames=settings.round_frames
            )
        except ValueError as exc:
            raise UserInputError(str(exc)) from None

    @torch.no_grad()
    def __call__(self, prompts: str | Sequence[str], progress: bool = True, **overrides: Any) -> list[Scene]:
        """Generate one :class:`Scene` per prompt (same settings, one batch)."""
        from vist3a.video.templates import NEGATIVE_PROMPT

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        settings = self.settings(**overrides)
        self.check_inputs(prompts, settings)
        temporal, _ = self.generator.scale_factors  # the generator's frame rule (CogVideoX: odd latent counts)
        latent_frames = self.generator.latent_shape(settings.num_frames, settings.height, settings.width,
                                                    round_frames=settings.round_frames)[1]
        settings.num_frames = (latent_frames - 1) * temporal + 1
        negative = NEGATIVE_PROMPT if settings.negative_prompt == "release" else (settings.negative_prompt or "")
        timer = _Timer(self.device)

        with timer("text"):
            embeds = self.generator.encode_text(prompts, negative, settings.template, settings.guidance_scale)
        with timer("denoise"):
            latents = self.generator.generate_latents(
                prompts,
                embeds=embeds,
                negative_prompt=negative,
                template=settings.template,
                num_frames=settings.num_frames,
                height=settings.height,
                width=settings.width,
                num_steps=settings.num_steps,
                guidance_scale=settings.guidance_scale,
                scheduler=settings.scheduler,
                shift=settings.flow_shift,
                seed=settings.seed,
                progress=progress,
            )
        raw = self.generator.denormalize(latents)
        with timer("vae_decode"):
            frames = self.generator.decode(raw)  # [B, T, 3, H, W] in [0, 1]
        with timer("stitched_decode"):
            param = next(self.decoder.parameters())
            out = self.decoder(raw.to(param.device, param.dtype), frames.to(param.device, param.dtype))
        return [
            _scene_from_output(out, b, prompt, frames[b], settings, dict(timer.times), self.preset.get("name"))
            for b, prompt in enumerate(prompts)
        ]


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _scene_from_output(
    out: Any, b: int, prompt: str, frames: torch.Tensor, settings: GenerationSettings, timings: dict, preset: Any
) -> Scene:
    """Batch element ``b`` of a recon output (AnySplat or VGGT) as a :class:`Scene` on the CPU."""
    from vist3a.cameras import K_from_edge_convention, to_homogeneous

    cameras = out.cameras
    height, width = (int(s) for s in out.depth.shape[-2:]) if out.depth is not None else frames.shape[-2:]
    gaussians = getattr(out, "gaussians", None)
    points = getattr(out, "world_points", None)
    points_conf = getattr(out, "world_points_conf", None)
    return Scene(
        prompt=prompt,
        frames=frames.float().cpu(),
        w2c=to_homogeneous(cameras.w2c[b].float()).cpu(),
        K=K_from_edge_convention(cameras.K[b].float()).cpu(),
        image_size=(height, width),
        gaussians=gaussians[b].detach().to(device="cpu", dtype=torch.float32) if gaussians is not None else None,
        depth=out.depth[b].float().cpu() if out.depth is not None else None,
        points=points[b].float().cpu() if points is not None else None,
        points_conf=points_conf[b].float().cpu() if points_conf is not None else None,
        settings={"preset": preset, **settings.to_dict()},
        timings=timings,
    )
