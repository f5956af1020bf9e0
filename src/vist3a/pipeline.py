"""``Text2ScenePipeline``: prompt -> Wan latents -> stitched 3D decoder -> :class:`~vist3a.scene.Scene`.

Stages (each timed; see ``Scene.timings``):

1. check inputs (frames 4k+1, sizes, steps, guidance) against the generator's VAE factors,
2. ``text``: encode the prompt (camera-motion template applied) and the negative prompt in one pass —
   cached per prompt,
3. ``denoise``: sample *normalised* latents (flow matching, CFG batched into one forward),
4. de-normalise to *raw* VAE latents (``video.denormalize_latents``, the one conversion helper),
5. VAE-decode the frames once (they feed both ``frames.mp4`` and AnySplat's Gaussian head),
6. run the stitched decoder on raw latents + frames -> Gaussians / pointmaps + cameras,
7. ``direction``: ``mirror-select`` decodes the video's mirror image too and keeps the better pass
   (:mod:`vist3a.recon.direction`; on the CPU its VAE encoding runs beside step 6, so ``direction`` is the time
   the choice adds after the stitched decode); ``motion`` reads the turning direction off the frames' image
   motion before step 6 and decodes only the mirror image of a video that turns clockwise.

``from_pretrained`` takes a preset name (``nano``, ``vist3a-1.3b``, ``vist3a-14b``, ``tiny-random``), a preset
JSON file, or a folder written by :meth:`Text2ScenePipeline.save_pretrained`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from vist3a import __version__
from vist3a.errors import UserInputError
from vist3a.scene import Scene

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("scene", "latent")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(name: str | torch.dtype | None, option: str = "--dtype") -> torch.dtype | None:
    """``"bf16"`` / ``"bfloat16"`` / ... -> ``torch.dtype`` (``None`` stays ``None``); ``option`` names the setting in
    the error."""
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise UserInputError(f"{option} must be one of {sorted(set(DTYPES))}, got {name!r}")
    return DTYPES[name]


def parse_vae_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """``--vae-dtype``: float32 or bfloat16 (float16's narrow range is a risk for the VAE's large activations, which
    bf16 shares float32's range for)."""
    dtype = parse_dtype(name, "--vae-dtype")
    if dtype == torch.float16:
        raise UserInputError("--vae-dtype must be float32 or bfloat16, got float16")
    return dtype


def cast_vae(generator: Any, dtype: torch.dtype) -> None:
    """Run the generator's video VAE in ``dtype`` (its decode and encode take the latents / frames to the VAE's
    dtype and return float32). At release size on an H100 a bf16 Wan VAE decodes in 0.22 s against 0.34 s in float32,
    its frames 49 dB from float32's on random weights (docs/benchmarks.md); the release decodes under bf16 autocast."""
    torch.nn.Module.to(generator.vae, dtype=dtype)  # plain nn.Module.to: no diffusers fp32-keep warning


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
    seed: int | list[int] | None = 0
    round_frames: bool = False
    direction: str = "as-is"

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


#: One worker thread for CPU work beside the main thread's (:meth:`Text2ScenePipeline._encode_mirror`); it starts on
#: first use and keeps its torch thread count from then on.
_SIDE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vist3a-side")


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

    Built from its parts, or from a preset name / file / saved folder (``Text2ScenePipeline("nano")`` is
    ``Text2ScenePipeline.from_pretrained("nano")``; keyword arguments go to :meth:`from_pretrained`). Example::

        pipe = Text2ScenePipeline.from_pretrained("nano")
        scene = pipe("a red cube left of a blue sphere", generator=torch.Generator().manual_seed(0)).scenes[0]
        save_scene(scene, "out/")
    """

    def __init__(self, generator: Any, decoder: torch.nn.Module | None = None, preset: dict[str, Any] | None = None,
                 **load_kwargs: Any) -> None:
        if isinstance(generator, str | os.PathLike):
            if decoder is not None or preset is not None:
                raise TypeError("Text2ScenePipeline(preset_name) takes no decoder or preset; use keyword options")
            self.__dict__.update(type(self).from_pretrained(generator, **load_kwargs).__dict__)
            return
        if decoder is None or preset is None or load_kwargs:
            raise TypeError("Text2ScenePipeline(generator, decoder, preset) needs all three parts")
        self.generator = generator
        self.decoder = decoder.eval()
        self.preset = preset
        self._progress_bar_config: dict[str, Any] = {}
        self.step_cache = None  # a vist3a.video.step_cache.StepCache, see enable_step_cache
        self._compiled = False

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
        compile: bool | dict[str, Any] = False,
        fp8: bool = False,
        step_cache: str | dict[str, Any] | None = None,
        vae_dtype: str | torch.dtype | None = None,
    ) -> Text2ScenePipeline:
        """Build the pipeline from a preset name, a preset JSON file or a saved pipeline folder.

        ``lora``: an extra PEFT LoRA folder for the transformer (e.g. ``RUN/checkpoint-100/lora_ema`` from
        ``vist3a align``), loaded after the preset's own. ``local_files_only=None`` follows ``HF_HUB_OFFLINE``;
        missing weights raise one :class:`UserInputError` naming every missing repo id. ``offload``: see
        :class:`~vist3a.video.WanGenerator` (default: the preset's, ``"auto"`` for the real presets on CUDA).
        ``compile``: :meth:`compile` the transformer (a dict: :meth:`compile`'s keyword arguments). ``fp8``:
        :meth:`quantize_fp8` it first (CUDA, torchao). ``step_cache``: :meth:`enable_step_cache` with this kind (a
        dict: its keyword arguments); it does not combine with ``compile``. ``vae_dtype``: the video VAE's dtype on
        CUDA (default float32; ``bfloat16``: :func:`cast_vae`); CPU runs keep float32.
        """
        from vist3a.components import PIPELINE_PARTS, load_components, resolve_preset
        from vist3a.video.generator import OFFLOAD_MODES

        device = torch.device(device) if device is not None else _default_device()
        preset = resolve_preset(preset_or_dir)
        dtype = parse_dtype(dtype) or parse_dtype(preset["defaults"].get("dtype"))
        if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
            logger.info("CPU run: using float32 instead of %s", dtype)
            dtype = torch.float32
        if offload is None:
            offload = preset["defaults"].get("offload", "none") if device.type == "cuda" else "none"
        if offload not in OFFLOAD_MODES:
            raise UserInputError(f"--offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
        vae_dtype = parse_vae_dtype(vae_dtype)  # before any weights load: a typo costs no minutes of loading
        parts = load_components(preset, PIPELINE_PARTS, device=device, dtype=dtype,
                                local_files_only=local_files_only, offload=offload)
        generator, decoder = parts.generator, parts.stitched
        if vae_dtype not in (None, torch.float32):
            if device.type != "cuda":
                logger.info("CPU run: the VAE stays float32")
            elif getattr(generator, "offload", "none") in ("model", "sequential"):
                raise UserInputError(f"--vae-dtype goes with --offload auto, none or text, not {generator.offload}")
            else:
                cast_vae(generator, vae_dtype)
        if lora is not None:
            from vist3a.video.lora import load_lora

            load_lora(generator.transformer, lora, merge=merge_lora, local_files_only=local_files_only)
        decoder.to(device)
        pipe = cls(generator, decoder, preset)
        if step_cache is not None:  # before compile(), which then refuses
            pipe.enable_step_cache(**(step_cache if isinstance(step_cache, dict) else {"kind": step_cache}))
        if fp8:
            pipe.quantize_fp8()
            if compile is False:
                logger.warning("--fp8 without --compile quantises activations in separate kernels, which can be "
                               "slower than bf16: add --compile for the speed-up")
        if isinstance(compile, dict):
            return pipe.compile(**compile)
        return pipe.compile() if compile else pipe

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``generator/`` (diffusers Wan layout), ``decoder/``, ``preset.json`` and a diffusers-style
        ``model_index.json`` (``{part: [library, class]}``), atomically."""
        from vist3a.io_utils import atomic_dir

        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            self.generator.save_pretrained(tmp / "generator")
            self.decoder.save_pretrained(tmp / "decoder")
            preset = {k: v for k, v in self.preset.items() if k not in ("folder", "builtin", "provider")}
            preset["source"] = "folder"
            (tmp / "preset.json").write_text(json.dumps(preset, indent=2))
            index = {"_class_name": type(self).__name__, "_vist3a_version": __version__,
                     "generator": ["vist3a.video", type(self.generator).__name__],
                     "decoder": ["vist3a.stitching", type(self.decoder).__name__]}
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
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
                                 f"{self.generator.offload}: use --offload auto (the default), text or none")
        quantize_fp8(self.generator.transformer)
        return self

    def compile(self, mode: str | None = None, regional: bool = True,
                cache: bool | None = None) -> Text2ScenePipeline:
        """``torch.compile`` the transformer (the denoising loop's only heavy module), in place, ``dynamic=False``.

        ``regional``: compile only its repeated block (Wan's ``WanTransformerBlock``; one block-sized graph that
        every block reuses) instead of the whole model: less compilation (its cost no longer grows with the
        depth), the steps run the blocks' compiled kernels with eager glue between them; models that name no
        repeated blocks are compiled whole. ``cache`` (default: on unless ``$VIST3A_COMPILE_CACHE=0``): keep
        inductor's caches in ``~/.cache/vist3a`` (``$VIST3A_CACHE``; not when ``TORCHINDUCTOR_CACHE_DIR`` is set)
        and save / load a portable artifact per input shape, so that a later process skips most of the
        compilation (:mod:`vist3a.video.compile_cache`).

        The first generation afterwards pays the compilation (tens of seconds at real size without a cache); later
        ones at the same shapes run the compiled graph. LoRA must be loaded (and merged) before compiling.
        """
        from vist3a.video.compile_cache import compile_transformer

        if self.step_cache is not None:
            from vist3a.video.step_cache import COMPILE_CONFLICT

            raise UserInputError(COMPILE_CONFLICT)
        compile_transformer(self.generator.transformer, mode=mode, regional=regional, cache=cache)
        self._compiled = True
        return self

    def enable_step_cache(self, kind: str = "first-block", threshold: float | None = None,
                          **options: Any) -> Text2ScenePipeline:
        """Skip transformer work on denoising steps that would change little (:mod:`vist3a.video.step_cache`,
        diffusers' cache hooks): faster denoising, a result close to but not equal to the uncached one.

        ``kind``: ``"first-block"`` (skip all blocks but the first on steps whose first-block residual moved less
        than ``threshold``, default 0.05) or ``"mag"`` (skip whole steps while the accumulated magnitude-ratio
        error stays below ``threshold``, default 0.06; ``options``: ``max_skip_steps``, ``retention_ratio``,
        ``mag_ratios``; without ratios the next generation measures them, running every step). ``"none"``
        turns caching off. Each generation puts the hooks on and takes them off again, so none reuses what an
        earlier one cached. Not with :meth:`compile`.
        """
        from vist3a.video.step_cache import COMPILE_CONFLICT, make_step_cache

        try:
            cache = make_step_cache(kind, threshold, **options)
        except ValueError as exc:
            raise UserInputError(f"--step-cache: {exc}") from None
        if cache is not None and self._compiled:
            raise UserInputError(COMPILE_CONFLICT)
        if cache is not None and not getattr(self.generator, "supports_step_cache", False):
            raise UserInputError(f"--step-cache works with vist3a's Wan sampler; this preset's generator "
                                 f"({type(self.generator).__name__}) runs its own loop")
        self.step_cache = cache
        return self

    def disable_step_cache(self) -> Text2ScenePipeline:
        """Turn the step cache off: every step runs in full again. (Its hooks are on the transformer only while a
        generation runs.)"""
        self.step_cache = None
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
        from vist3a.recon.direction import DIRECTIONS

        if settings.direction not in DIRECTIONS:
            raise UserInputError(f"--direction must be one of {', '.join(DIRECTIONS)}, got {settings.direction!r}")
        recon_type = getattr(getattr(self.decoder, "config", None), "recon_type", None)
        if settings.direction == "mirror-select" and recon_type is None:
            raise UserInputError("--direction mirror-select scores the passes with a stitched decoder's 3D model; "
                                 "this decoder is not a stitched decoder: use --direction as-is")
        limits = self.max_sizes()
        for name, option, value in (("num_frames", "--num-frames", settings.num_frames),
                                    ("height", "--height", settings.height), ("width", "--width", settings.width)):
            if limits.get(name) is not None and value > limits[name]:
                raise UserInputError(f"{option} {value} is more than this model's position table covers: at most "
                                     f"{limits[name]} (its RoPE table has {limits['rope_max_seq_len']} rows)")

    def max_sizes(self) -> dict[str, int | None]:
        """Largest ``num_frames``, ``height`` and ``width`` the transformer's RoPE table covers.

        Wan's rotary table has ``rope_max_seq_len`` rows per axis; a clip of ``F`` frames has
        ``((F - 1) / t + 1) / p_t`` latent frame positions (``t`` the VAE's temporal factor, ``p_t`` the patch
        size), a side of ``H`` px has ``H / s / p_h`` (``s`` the spatial factor). Beyond that, diffusers fails
        with a shape error deep in the transformer.
        """
        config = getattr(getattr(self.generator, "transformer", None), "config", None)
        rows = getattr(config, "rope_max_seq_len", None) if config is not None else None
        if rows is None:
            return {"num_frames": None, "height": None, "width": None, "rope_max_seq_len": None}
        p_t, p_h, p_w = tuple(config.patch_size)
        temporal, spatial = self.generator.scale_factors
        return {"num_frames": temporal * (rows * p_t - 1) + 1, "height": rows * p_h * spatial,
                "width": rows * p_w * spatial, "rope_max_seq_len": int(rows)}

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str] | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        num_scenes_per_prompt: int = 1,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        output_type: str = "scene",
        return_dict: bool = True,
        progress: bool = True,
        seed: int | None = None,
        num_steps: int | None = None,
        score_heldout: bool = False,
        **overrides: Any,
    ) -> Text2ScenePipelineOutput | tuple[Any]:
        """Generate ``num_scenes_per_prompt`` scenes per prompt (one batch), with diffusers' argument names.

        Args:
            prompt: one prompt or a list (optional when ``prompt_embeds`` are given).
            negative_prompt: ``"release"`` = the VIST3A negative prompt; default: the preset's.
            num_inference_steps, guidance_scale, num_frames (the VAE's frame rule: ``4k + 1`` for Wan), height,
                width: default: the preset's.
            generator: a ``torch.Generator`` (a CPU one gives the same noise on every device) or one per scene.
            latents: initial *normalised* noise ``[B, C, T_lat, h, w]`` instead of drawing it.
            prompt_embeds, negative_prompt_embeds: ``[B, L, D]`` text states (as the generator's text encoder gives,
                template already applied) instead of encoding ``prompt`` / ``negative_prompt``.
            callback_on_step_end: ``callback(pipe, step, timestep, callback_kwargs) -> dict`` after each step;
                ``callback_kwargs`` holds the tensors named in ``callback_on_step_end_tensor_inputs`` (``latents``),
                and a returned ``latents`` replaces them.
            output_type: ``"scene"`` (:class:`Scene` objects) or ``"latent"`` (the denoised normalised latents).
            return_dict: a :class:`Text2ScenePipelineOutput` (indexes like its ``scenes``); else ``(scenes,)``.
            seed, num_steps: deprecated spellings of ``generator=torch.Generator().manual_seed(seed)`` and
                ``num_inference_steps``.
            score_heldout: also measure each scene's 3D consistency at *novel* cameras (AnySplat's protocol: the
                splats of its context frames rendered at the predicted cameras of 4 held-out frames, PSNR against
                those frames; :func:`vist3a.recon.direction.heldout_consistency`), recorded as
                ``scene.settings["heldout_psnr"]``. Needs a stitched decoder with its 3D model and >= 3 frames; a
                few renders more per scene (``--direction mirror-select`` computes it anyway).
            overrides: the other :class:`GenerationSettings` (``flow_shift``, ``scheduler``, ``template``,
                ``round_frames``).
        """
        from vist3a.video.templates import NEGATIVE_PROMPT

        if num_steps is not None:
            warnings.warn("`num_steps` is deprecated; use `num_inference_steps`", FutureWarning, stacklevel=2)
            num_inference_steps = num_inference_steps if num_inference_steps is not None else num_steps
        if seed is not None:
            warnings.warn("`seed` is deprecated; pass `generator=torch.Generator().manual_seed(seed)`",
                          FutureWarning, stacklevel=2)
            if generator is None:
                generator = torch.Generator("cpu").manual_seed(int(seed))
        if output_type not in OUTPUT_TYPES:
            raise UserInputError(f"`output_type` must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise UserInputError(f"`callback_on_step_end_tensor_inputs` may name {self._callback_tensor_inputs}, "
                                 f"got {sorted(unknown)}")
        if isinstance(num_scenes_per_prompt, bool) or not isinstance(num_scenes_per_prompt, int) \
                or num_scenes_per_prompt < 1:
            raise UserInputError(f"`num_scenes_per_prompt` must be a positive int, got {num_scenes_per_prompt!r}")
        prompts = self._prompts(prompt, prompt_embeds)
        settings = self.settings(
            num_frames=num_frames, height=height, width=width, num_steps=num_inference_steps,
            guidance_scale=guidance_scale, negative_prompt=negative_prompt if isinstance(negative_prompt, str)
            else None, seed=_seed_of(generator), **overrides,
        )
        self.check_inputs(prompts if prompt_embeds is None else ["embeds"], settings)
        if generator is None:  # no generator: the settings' seed (0 unless the preset says otherwise), reproducible
            generator = torch.Generator("cpu").manual_seed(int(settings.seed))
        temporal, _ = self.generator.scale_factors  # the generator's frame rule (CogVideoX: odd latent counts)
        latent_frames = self.generator.latent_shape(settings.num_frames, settings.height, settings.width,
                                                    round_frames=settings.round_frames)[1]
        settings.num_frames = (latent_frames - 1) * temporal + 1
        if negative_prompt is None or isinstance(negative_prompt, str):
            negative = NEGATIVE_PROMPT if settings.negative_prompt == "release" else (settings.negative_prompt or "")
        else:
            negative = [n for n in negative_prompt for _ in range(num_scenes_per_prompt)]
        prompts = [p for p in prompts for _ in range(num_scenes_per_prompt)]
        timer = _Timer(self.device)

        cache_info = self.step_cache.to_dict() if self.step_cache is not None else None  # before a calibration
        with timer("text"):
            embeds = self._embeds(prompts, negative, settings, prompt_embeds, negative_prompt_embeds,
                                  num_scenes_per_prompt)
        latents = self._initial_latents(len(prompts), settings, generator, latents)
        callback = self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        with timer("denoise"):
            latents = self.generator.generate_latents(
                prompts, embeds=embeds, negative_prompt=negative, template=settings.template,
                num_frames=settings.num_frames, height=settings.height, width=settings.width,
                num_steps=settings.num_steps, guidance_scale=settings.guidance_scale, scheduler=settings.scheduler,
                shift=settings.flow_shift, generator=generator if not isinstance(generator, list) else None,
                latents=latents, callback=callback, progress=progress,
                progress_bar_config=self._progress_bar_config,
                **({"step_cache": self.step_cache} if self.step_cache is not None else {}),
            )
        if output_type == "latent":
            return Text2ScenePipelineOutput(scenes=latents) if return_dict else (latents,)
        raw = self.generator.denormalize(latents)
        with timer("vae_decode"):
            frames = self.generator.decode(raw)  # [B, T, 3, H, W] in [0, 1]
        mirror = None
        if settings.direction == "mirror-select" and frames.shape[1] >= 3:  # fewer views: nothing to hold out
            encoded = self._encode_mirror(frames)  # on the CPU it runs beside the stitched decode below
            with timer("stitched_decode"):
                out = self._decode(raw, frames)
            with timer("direction"):
                mirror = self._mirror_pass(out, frames, encoded)
        elif settings.direction == "motion" and frames.shape[1] >= 2:
            with timer("direction"):
                mirror, raw_in, frames_in = self._motion_choice(raw, frames)
            with timer("stitched_decode"):
                out = mirror["out"] = self._decode(raw_in, frames_in)
        else:
            with timer("stitched_decode"):
                out = self._decode(raw, frames)
        heldout = None
        if score_heldout:
            with timer("heldout_score"):
                heldout = self._heldout_scores(mirror, out, frames)
        scenes = []
        for b, text in enumerate(prompts):
            if mirror is not None and mirror["take"][b]:
                scene = _scene_from_output(mirror["out"], b, text, frames[b].flip(-1), settings, dict(timer.times),
                                           self.preset.get("name")).mirrored()
            else:
                scene = _scene_from_output(out, b, text, frames[b], settings, dict(timer.times),
                                           self.preset.get("name"))
            scene.settings["step_cache"] = cache_info
            if mirror is not None:
                choice = {"decoded": "mirror image" if mirror["take"][b] else "as is"}
                if "turn" in mirror:
                    choice["image_motion_turn"] = float(mirror["turn"][b])
                else:
                    choice.update(heldout_psnr=float(mirror["score"][b]),
                                  heldout_psnr_mirror=float(mirror["score_m"][b]))
                scene.settings["direction_choice"] = choice
            if heldout is not None:
                scene.settings["heldout_psnr"] = float(heldout[b])
            scenes.append(scene)
        return Text2ScenePipelineOutput(scenes=scenes) if return_dict else (scenes,)

    # ------------------------------------------------------------------ __call__ helpers
    _callback_tensor_inputs = ("latents",)

    def _decode(self, raw: torch.Tensor, frames: torch.Tensor) -> Any:
        param = next(self.decoder.parameters())
        return self.decoder(raw.to(param.device, param.dtype), frames.to(param.device, param.dtype))

    def _encode_mirror(self, frames: torch.Tensor) -> Future:
        """The VAE encoding of the mirror image of ``frames``, for :meth:`_mirror_pass` (a future).

        On the CPU it runs in a side thread while the caller runs the stitched decoder on the video: the nano
        decoder's small ops keep about 1.5 of the 2 cores of the project's CPU VM busy, so the two take 0.95 s side
        by side instead of 1.18 s one after the other there (docs/benchmarks.md). Each op gives the bits it gives
        when the two run one after the other (the side thread uses the caller's torch thread count). Elsewhere it
        runs in the caller's thread.
        """
        mirrored = frames.flip(-1)
        if self.device.type != "cpu":
            done: Future = Future()
            done.set_result(self.generator.encode(mirrored))
            return done
        threads = torch.get_num_threads()

        def encode() -> torch.Tensor:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            with torch.no_grad():  # grad mode is per thread
                return self.generator.encode(mirrored)

        return _SIDE_THREAD.submit(encode)

    def _mirror_pass(self, out: Any, frames: torch.Tensor, encoded: Future) -> dict[str, Any]:
        """Decode the mirror image of the video too (re-encoded by the VAE: ``encoded``, from
        :meth:`_encode_mirror`) and say per scene which pass to keep (:mod:`vist3a.recon.direction`: the better
        held-out self-consistency of its Gaussians or pointmaps)."""
        from vist3a.recon.direction import mirror_choice

        mirrored = frames.flip(-1)
        out_m = self._decode(encoded.result(), mirrored)
        return {"out": out_m, **mirror_choice(self.decoder.recon, out, out_m, frames)}

    def _heldout_scores(self, mirror: dict[str, Any] | None, out: Any, frames: torch.Tensor) -> torch.Tensor:
        """``[B]`` held-out PSNRs of the passes kept (``score_heldout``): mirror-select scored both already; else
        the decoded pass (frames as it saw them: a mirror pass saw the mirror image)."""
        from vist3a.recon.direction import heldout_consistency

        recon = getattr(self.decoder, "recon", None)
        if recon is None or frames.shape[1] < 3:
            raise UserInputError("score_heldout renders held-out frames with a stitched decoder's 3D model and needs "
                                 f"at least 3 frames (this decoder: {type(self.decoder).__name__}, "
                                 f"{frames.shape[1]} frames)")
        if mirror is not None and "score" in mirror:
            return torch.where(torch.tensor(mirror["take"]), mirror["score_m"], mirror["score"])
        seen = frames
        if mirror is not None and any(mirror["take"]):
            flip = torch.tensor(mirror["take"], device=frames.device).view(-1, 1, 1, 1, 1)
            seen = torch.where(flip, frames.flip(-1), frames)
        return heldout_consistency(recon, out, seen)

    def _motion_choice(self, raw: torch.Tensor, frames: torch.Tensor
                       ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        """``--direction motion``: which videos turn clockwise by their image motion
        (:func:`vist3a.recon.direction.image_motion_turn`), and the latents and frames to decode: those videos'
        mirror images (re-encoded by the VAE) in their place, the others as they are. Returns ``({"take": [B] bool,
        "turn": [B]}, raw, frames)``."""
        from vist3a.recon.direction import image_motion_turn

        turn = image_motion_turn(frames)
        take = (turn < 0).tolist()
        if any(take):
            index = torch.tensor([b for b, flip in enumerate(take) if flip], device=frames.device)
            mirrored = frames[index].flip(-1)
            raw, frames = raw.clone(), frames.clone()
            raw[index.to(raw.device)] = self.generator.encode(mirrored).to(raw.device, raw.dtype)
            frames[index] = mirrored
        return {"take": take, "turn": turn}, raw, frames

    @staticmethod
    def _prompts(prompt: str | Sequence[str] | None, prompt_embeds: torch.Tensor | None) -> list[str]:
        if prompt is not None and prompt_embeds is not None:
            raise UserInputError("give `prompt` or `prompt_embeds`, not both")
        if prompt is None:
            if prompt_embeds is None:
                raise UserInputError("give a `prompt` (or `prompt_embeds`)")
            return [""] * int(prompt_embeds.shape[0])  # scenes generated from embeddings carry no prompt text
        return [prompt] if isinstance(prompt, str) else list(prompt)

    def _embeds(self, prompts: list[str], negative: str | list[str], settings: GenerationSettings,
                prompt_embeds: torch.Tensor | None, negative_embeds: torch.Tensor | None,
                per_prompt: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(cond, uncond)`` for the batch: encoded here, or the given embeddings repeated per scene."""
        use_cfg = float(settings.guidance_scale) != 1.0
        if prompt_embeds is None:
            cond, uncond = self.generator.encode_text(prompts, negative, settings.template, settings.guidance_scale)
            if negative_embeds is not None:
                uncond = negative_embeds.repeat_interleave(per_prompt, dim=0)
            return cond, uncond
        cond = prompt_embeds.repeat_interleave(per_prompt, dim=0).to(self.device)
        if not use_cfg:
            return cond, None
        if negative_embeds is not None:
            return cond, negative_embeds.repeat_interleave(per_prompt, dim=0).to(self.device)
        negatives = [negative] * len(prompts) if isinstance(negative, str) else negative
        return cond, self.generator.text_encoder.encode(negatives)[0]

    def _initial_latents(self, batch: int, settings: GenerationSettings,
                         generator: torch.Generator | list[torch.Generator] | None,
                         latents: torch.Tensor | None) -> torch.Tensor | None:
        """One noise draw per scene when ``generator`` is a list (scene ``i`` from ``generator[i]``)."""
        if latents is not None or not isinstance(generator, list):
            return latents
        if len(generator) != batch:
            raise UserInputError(f"got {len(generator)} generators for {batch} scenes; pass one per scene")
        from vist3a.video.sampler import initial_noise

        shape = self.generator.latent_shape(settings.num_frames, settings.height, settings.width)
        return torch.cat([initial_noise((1, *shape), g, self.device) for g in generator])

    def _step_callback(self, callback: Callable[..., dict[str, Any]] | None,
                       names: Sequence[str]) -> Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """diffusers' ``callback_on_step_end`` as the sampler's ``callback(i, t, latents)``."""
        if callback is None:
            return None

        def step(i: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            kwargs = {name: latents for name in names}
            returned = callback(self, i, t, kwargs) or {}
            return returned.get("latents", latents)

        return step

    # ------------------------------------------------------------------ diffusers-style placement and progress
    def to(self, device: str | torch.device) -> Text2ScenePipeline:
        """Move the generator and the decoder to ``device``."""
        self.generator.to(device)
        self.decoder.to(device)
        return self

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """tqdm arguments of the denoising bar (``disable=True`` silences it)."""
        self._progress_bar_config = {**self._progress_bar_config, **kwargs}

    def enable_model_cpu_offload(self) -> Text2ScenePipeline:
        """Keep each part on the GPU only while it runs (the ``model`` offload policy)."""
        self.generator.set_offload("model")
        return self


@dataclass
class Text2ScenePipelineOutput:
    """What :class:`Text2ScenePipeline` returns with ``return_dict=True``.

    ``scenes``: a list of :class:`Scene` (``output_type="scene"``) or the denoised normalised latents
    ``[B, C, T_lat, h, w]`` (``output_type="latent"``). Indexing, ``len`` and iteration go to ``scenes``, so
    ``pipe(prompt)[0]`` is the first scene.
    """

    scenes: list[Scene] | torch.Tensor

    def __getitem__(self, index: int) -> Any:
        return self.scenes[index]

    def __len__(self) -> int:
        return len(self.scenes)

    def __iter__(self):
        return iter(self.scenes)


def _seed_of(generator: torch.Generator | list[torch.Generator] | None) -> int | list[int] | None:
    """The seed a generator was created with (recorded in ``meta.json``)."""
    if generator is None:
        return None
    if isinstance(generator, list):
        return [int(g.initial_seed()) for g in generator]
    return int(generator.initial_seed())


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _scene_from_output(
    out: Any, b: int, prompt: str, frames: torch.Tensor, settings: GenerationSettings, timings: dict, preset: Any
) -> Scene:
    """Batch element ``b`` of a recon output (AnySplat or VGGT) as a :class:`Scene` on the CPU."""
    from vist3a.cameras import K_from_edge_convention, to_homogeneous
    from vist3a.recon.outputs import scene_pointmap

    cameras = out.cameras
    height, width = (int(s) for s in out.depth.shape[-2:]) if out.depth is not None else frames.shape[-2:]
    gaussians = getattr(out, "gaussians", None)
    points, points_conf = scene_pointmap(out)
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
