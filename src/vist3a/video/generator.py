"""``WanGenerator``: the Wan VAE, transformer, text encoder and scheduler config as one object.

Wan 2.1 (16-channel, 8x VAE) and Wan 2.2 TI2V-5B (48-channel, 16x VAE) share the classes; every VAE fact
(channels, factors, frame rule, normalisation) comes from the VAE's
:class:`~vist3a.video.vae_adapters.VideoVAEAdapter`.

Layout on disk is diffusers' (``vae/``, ``transformer/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``,
``model_index.json``) plus ``vist3a.json`` for vist3a's own settings (the text token length), so a Wan repo
from the Hub loads directly and a saved generator is still a ``WanPipeline`` folder.

Spaces and layouts: :meth:`WanGenerator.generate_latents` returns *normalised* latents ``[B, C, T_lat, h, w]``;
:meth:`WanGenerator.denormalize` turns them into *raw* latents, which :meth:`WanGenerator.decode` maps to
frames ``[B, T, 3, H, W]`` in ``[0, 1]`` (the VAE itself works on ``[B, 3, T, H, W]`` in ``[-1, 1]``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from vist3a.errors import UserInputError
from vist3a.hub import resolve_dir
from vist3a.io_utils import atomic_dir
from vist3a.video.configs import wan_repo_id
from vist3a.video.frames import check_resolution
from vist3a.video.lora import has_lora
from vist3a.video.sampler import StepCallback, compute_dtype, make_scheduler, sample
from vist3a.video.step_cache import StepCache
from vist3a.video.templates import NEGATIVE_PROMPT, apply_template
from vist3a.video.text import HFTextEncoder, load_text_encoder

logger = logging.getLogger(__name__)

COMPONENTS = ("vae", "transformer", "text_encoder", "tokenizer", "scheduler")
VIST3A_CONFIG_NAME = "vist3a.json"
OFFLOAD_MODES = ("auto", "none", "text", "model", "sequential")
#: GPU memory that ``offload="auto"`` leaves free beside resident weights: a release-size scene's activations,
#: the stitched decoder and the splat renderer (peak minus weights measured at 6-8 GiB for 1.3B and 14B).
AUTO_HEADROOM_BYTES = 12 * 2**30


def _tensors(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class WanGenerator:
    """Wan text-to-video generator parts (Wan 2.1, or Wan 2.2 TI2V-5B used text-to-video) with vist3a's sampler.

    Args:
        vae: ``AutoencoderKLWan`` (any video VAE :func:`~vist3a.video.vae_adapters.vae_adapter` knows whose latent
            channels match the transformer).
        transformer: ``WanTransformer3DModel`` (its ``text_dim`` must equal the text encoder's width).
        text_encoder: an :class:`~vist3a.video.text.HFTextEncoder` (UMT5 for Wan, MiniLM for nano).
        scheduler: the folder's scheduler; its config gives ``num_train_timesteps`` and is saved back.
        device: execution device (default: CUDA if available).
        offload: ``"none"`` (all on ``device``), ``"text"`` (all but the text encoder, which stays on CPU between
            encodings: UMT5-XXL is ~11 GB in bf16, the 1.3B transformer ~3 GB; on CUDA its weights stream
            through the GPU layer by layer from pinned memory, see
            :meth:`~vist3a.video.text.HFTextEncoder.enable_streamed_offload`; repeated prompts hit the cache),
            ``"model"`` (each part moves to ``device`` only while used, like diffusers' model CPU offload),
            ``"sequential"`` (accelerate hooks stream weights layer by layer: least memory, slowest, cannot be
            undone) or ``"auto"`` (``"none"`` when every weight fits on the GPU beside
            :data:`AUTO_HEADROOM_BYTES`, else ``"text"``; ``"none"`` off CUDA). Pinning UMT5-XXL for streaming
            costs ~5 s per process (docs/benchmarks.md), which a card with room need not pay.
    """

    text_width_key = "text_dim"
    """The transformer config key of the width of the text states it takes."""
    supports_step_cache = True
    """:meth:`generate_latents` takes a ``step_cache`` (it samples with :func:`~vist3a.video.sampler.sample`)."""

    def __init__(
        self,
        vae: torch.nn.Module,
        transformer: torch.nn.Module,
        text_encoder: HFTextEncoder,
        scheduler: Any | None = None,
        *,
        device: torch.device | str | None = None,
        offload: str = "none",
    ) -> None:
        text_width = int(getattr(transformer.config, self.text_width_key))
        if text_encoder.hidden_size != text_width:
            raise ValueError(
                f"text encoder width {text_encoder.hidden_size} != transformer `{self.text_width_key}` {text_width}"
            )
        from vist3a.video.vae_adapters import vae_adapter

        self.vae_adapter = vae_adapter(vae)
        if self.vae_adapter.latent_channels != transformer.config.in_channels:
            raise ValueError(
                f"VAE latent channels {self.vae_adapter.latent_channels} != transformer `in_channels` "
                f"{transformer.config.in_channels}"
            )
        self.vae = vae.eval()
        self.transformer = transformer.eval()
        self.text_encoder = text_encoder
        self.scheduler = scheduler if scheduler is not None else make_scheduler("unipc", shift=3.0)
        self.device = torch.device(device) if device is not None else _default_device()
        self.dtype = compute_dtype(transformer)
        self.offload = "none"
        self.set_offload(offload)

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: str | os.PathLike = wan_repo_id("1.3b"),
        *,
        dtype: torch.dtype | None = None,
        vae_dtype: torch.dtype = torch.float32,
        text_encoder_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        offload: str = "none",
        text_max_length: int | None = None,
        local_files_only: bool | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> WanGenerator:
        """Load from a diffusers-format folder or Hub repo (default: Wan 2.1 T2V 1.3B).

        ``dtype`` is the transformer's (default bf16 on CUDA, fp32 on CPU); the text encoder uses
        ``text_encoder_dtype`` (default: ``dtype``); the VAE stays fp32 unless ``vae_dtype`` says otherwise.
        ``local_files_only=None`` follows ``HF_HUB_OFFLINE``. Missing weights raise ``UserInputError``.
        ``offload``: see the class docstring.
        """
        from diffusers import AutoencoderKLWan, WanTransformer3DModel

        device = torch.device(device) if device is not None else _default_device()
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        patterns = ["model_index.json", VIST3A_CONFIG_NAME, *(f"{c}/*" for c in COMPONENTS)]
        root = resolve_dir(repo_or_dir, allow_patterns=patterns, revision=revision, local_files_only=local_files_only,
                           cache_dir=cache_dir, what="Wan generator")
        missing = [c for c in COMPONENTS if not (root / c).is_dir()]
        if missing:
            raise UserInputError(
                f"Wan generator: '{repo_or_dir}' lacks the sub-folders {missing}; expected a diffusers Wan folder "
                f"with {list(COMPONENTS)}"
            )
        extra = json.loads((root / VIST3A_CONFIG_NAME).read_text()) if (root / VIST3A_CONFIG_NAME).is_file() else {}
        vae = AutoencoderKLWan.from_pretrained(root, subfolder="vae", torch_dtype=vae_dtype, local_files_only=True)
        transformer = WanTransformer3DModel.from_pretrained(
            root, subfolder="transformer", torch_dtype=dtype, local_files_only=True
        )
        text_encoder = load_text_encoder(
            root,
            max_length=text_max_length or extra.get("text_max_length"),
            dtype=text_encoder_dtype or dtype,
        )
        scheduler = _load_scheduler(root / "scheduler")
        logger.info("Loaded Wan generator from %s (transformer %s, text encoder %s)", root, dtype, text_encoder.dtype)
        return cls(
            vae,
            transformer,
            text_encoder,
            scheduler,
            device=device,
            offload=offload,
        )

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write a diffusers-format folder (atomically) that :meth:`from_pretrained` reads back.

        Raises ``ValueError`` while LoRA layers are injected (merge them first, or save them with
        ``vist3a.video.lora.save_lora``) or under sequential offload (weights are not materialised).
        """
        if has_lora(self.transformer):
            raise ValueError("the transformer has injected LoRA layers: call merge_lora() first or use save_lora()")
        if self.offload == "sequential":
            raise ValueError("cannot save under offload='sequential'; reload without it to save")
        import diffusers

        with atomic_dir(directory) as tmp:
            self.vae.save_pretrained(tmp / "vae")
            self.transformer.save_pretrained(tmp / "transformer")
            self.text_encoder.save_pretrained(tmp, subfolder="text_encoder", tokenizer_subfolder="tokenizer")
            self.scheduler.save_pretrained(tmp / "scheduler")
            index = {
                "_class_name": "WanPipeline",
                "_diffusers_version": diffusers.__version__,
                "scheduler": ["diffusers", type(self.scheduler).__name__],
                "text_encoder": ["transformers", type(self.text_encoder.model).__name__],
                "tokenizer": ["transformers", type(self.text_encoder.tokenizer).__name__],
                "transformer": ["diffusers", type(self.transformer).__name__],
                "vae": ["diffusers", type(self.vae).__name__],
            }
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
            settings = {"text_max_length": self.text_encoder.max_length}
            (tmp / VIST3A_CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n")
        return Path(directory)

    # ------------------------------------------------------------------ memory / placement
    def set_offload(self, mode: str) -> WanGenerator:
        """Choose the placement policy (see the class docstring); ``"sequential"`` is one-way."""
        if mode not in OFFLOAD_MODES:
            raise ValueError(f"`offload` must be one of {list(OFFLOAD_MODES)}, got {mode!r}")
        if mode == "auto":
            mode = self.resolve_auto_offload()
        if self.offload == "sequential" and mode != "sequential":
            raise ValueError("offload='sequential' cannot be undone; reload the generator instead")
        if getattr(self.text_encoder, "streamed", False) and mode == "none":
            raise ValueError("the text encoder streams its weights (offload='text' on CUDA); reload to undo that")
        self.offload = mode
        self.text_encoder.device = self.device
        self.text_encoder.offload_after_encode = mode != "none"
        if mode in ("none", "text"):
            self.vae.to(self.device)
            self.transformer.to(self.device)
            if mode == "none":
                self.text_encoder.to(self.device)
            elif self.device.type == "cuda":
                self.text_encoder.enable_streamed_offload()
            else:
                self.text_encoder.offload()
        elif mode == "model":
            self.vae.to("cpu")
            self.transformer.to("cpu")
            self.text_encoder.offload()
        else:
            from accelerate import cpu_offload

            for module in (self.vae, self.transformer, self.text_encoder.model):
                module.to("cpu")
                cpu_offload(module, execution_device=self.device)
            self.text_encoder.offload_after_encode = False
        return self

    def resolve_auto_offload(self) -> str:
        """``offload="auto"``: ``"none"`` if all weights fit on the GPU with headroom, else ``"text"``."""
        if getattr(self.text_encoder, "streamed", False):
            return "text"  # streaming cannot be undone
        if self.device.type != "cuda":
            return "none"
        free, _ = torch.cuda.mem_get_info(self.device)
        modules = (self.vae, self.transformer, self.text_encoder.model)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        placed = torch.device("cuda", index)
        need = sum(t.numel() * t.element_size() for m in modules for t in _tensors(m) if t.device != placed)
        mode = "none" if need + AUTO_HEADROOM_BYTES <= free else "text"
        logger.info("offload=auto -> %s (weights to place %.1f GiB, free %.1f GiB, headroom %.0f GiB)", mode,
                    need / 2**30, free / 2**30, AUTO_HEADROOM_BYTES / 2**30)
        return mode

    def to(self, device: torch.device | str) -> WanGenerator:
        """Change the execution device (re-applies the offload policy)."""
        if self.offload == "sequential":
            raise ValueError("cannot move a generator under offload='sequential'; reload it on the new device")
        self.device = torch.device(device)
        return self.set_offload(self.offload)

    def enable_vae_tiling(self, **kwargs: Any) -> None:
        """Decode/encode in overlapping spatial tiles (``AutoencoderKLWan.enable_tiling``) to save memory."""
        self.vae.enable_tiling(**kwargs)

    def enable_vae_slicing(self) -> None:
        """Decode/encode one batch item at a time (``AutoencoderKLWan.enable_slicing``)."""
        self.vae.enable_slicing()

    @contextlib.contextmanager
    def _placed(self, module: torch.nn.Module) -> Iterator[None]:
        """Under ``offload="model"``, keep ``module`` on the execution device for the block only."""
        if self.offload != "model":
            yield
            return
        module.to(self.device)
        try:
            yield
        finally:
            module.to("cpu")

    # ------------------------------------------------------------------ shapes and spaces
    @property
    def scale_factors(self) -> tuple[int, int]:
        """``(temporal, spatial)`` compression of the VAE (4, 8 for Wan 2.1; 4, 16 for Wan 2.2)."""
        return self.vae_adapter.factors

    @property
    def resolution_multiple(self) -> tuple[int, int]:
        """Pixel sizes must be multiples of this: VAE spatial factor x transformer patch (16, 16 for Wan)."""
        _, spatial = self.scale_factors
        patch = self.transformer.config.patch_size
        return spatial * patch[1], spatial * patch[2]

    def latent_shape(
        self, num_frames: int, height: int, width: int, round_frames: bool = False
    ) -> tuple[int, int, int, int]:
        """``(C, T_lat, h, w)`` for a clip, after validating frames (the VAE's rule, 4k+1 for Wan) and sizes
        (multiples of :attr:`resolution_multiple`)."""
        frames = self.vae_adapter.check_num_frames(num_frames, round_up=round_frames)
        check_resolution(height, width, self.resolution_multiple)
        return self.vae_adapter.latent_shape(frames, height, width)

    def normalize(self, raw_latents: torch.Tensor) -> torch.Tensor:
        """Raw (VAE-space) -> normalised (diffusion-space) latents, ``[B, C, T_lat, h, w]``."""
        return self.vae_adapter.normalize(raw_latents)

    def denormalize(self, normalized_latents: torch.Tensor) -> torch.Tensor:
        """Normalised (diffusion-space) -> raw (VAE-space) latents, ``[B, C, T_lat, h, w]``."""
        return self.vae_adapter.denormalize(normalized_latents)

    # ------------------------------------------------------------------ generation
    def encode_prompts(
        self, prompts: Sequence[str], negative_prompt: str | Sequence[str] | None = "", guidance_scale: float = 7.5
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(prompt_embeds [B, L, D], negative_embeds [B, L, D] or None)`` on the execution device.

        The negative embeddings are only computed when ``guidance_scale != 1``; ``None`` means "".
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if float(guidance_scale) == 1.0:
            return self.text_encoder.encode(prompts)[0], None
        negatives = negative_prompt if negative_prompt is not None else ""
        negatives = [negatives] * len(prompts) if isinstance(negatives, str) else list(negatives)
        if len(negatives) != len(prompts):
            raise ValueError(f"`negative_prompt` must be one str or {len(prompts)} of them, got {len(negatives)}")
        both, _ = self.text_encoder.encode(prompts + negatives)  # one pass (one weight transfer when offloaded)
        return both[: len(prompts)], both[len(prompts) :]

    def encode_text(
        self,
        prompts: Sequence[str],
        negative_prompt: str | Sequence[str] | None = NEGATIVE_PROMPT,
        template: str | None = "orbit",
        guidance_scale: float = 7.5,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`encode_prompts` after applying the camera-motion ``template`` (as :meth:`generate_latents`)."""
        return self.encode_prompts([apply_template(p, template) for p in prompts], negative_prompt, guidance_scale)

    @torch.no_grad()
    def generate_latents(
        self,
        prompts: str | Sequence[str],
        *,
        negative_prompt: str | Sequence[str] | None = NEGATIVE_PROMPT,
        template: str | None = "orbit",
        num_frames: int = 13,
        height: int = 512,
        width: int = 512,
        num_steps: int = 50,
        guidance_scale: float = 7.5,
        scheduler: str | Any = "unipc",
        shift: float = 5.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        round_frames: bool = False,
        callback: StepCallback | None = None,
        progress: bool = True,
        embeds: tuple[torch.Tensor, torch.Tensor | None] | None = None,
        progress_bar_config: dict[str, Any] | None = None,
        step_cache: StepCache | None = None,
    ) -> torch.Tensor:
        """Text -> **normalised** latents ``[B, C, T_lat, h, w]`` (float32), inference only (no gradients).

        Defaults are the release's: orbit template, its negative prompt, 13 frames of 512x512, 50 UniPC steps
        with flow shift 5, CFG 7.5. ``template=None`` uses the prompts as given. ``seed`` builds a CPU
        generator (same noise on every device); ``generator`` overrides it. ``scheduler`` is ``"unipc"``,
        ``"euler"`` or a ready scheduler object (then ``shift`` is ignored). For training, call
        :func:`vist3a.video.sampler.sample` directly. ``embeds``: ``(cond, uncond)`` from :meth:`encode_text`
        to skip text encoding here (the pipeline times it as its own stage). ``step_cache``: a
        :class:`~vist3a.video.step_cache.StepCache` to skip transformer work on some steps (close to, not equal to,
        the uncached result).
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("`prompts` must contain at least one prompt, got an empty list")
        shape = (len(prompts), *self.latent_shape(num_frames, height, width, round_frames=round_frames))
        if embeds is None:
            embeds = self.encode_text(prompts, negative_prompt, template, guidance_scale)
        cond, uncond = embeds
        if isinstance(scheduler, str):
            train_steps = int(self.scheduler.config.get("num_train_timesteps", 1000))
            scheduler = make_scheduler(scheduler, shift=shift, num_train_timesteps=train_steps)
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(int(seed))
        cache = step_cache.applied(self.transformer, num_steps) if step_cache is not None else contextlib.nullcontext()
        with self._placed(self.transformer), cache:
            return sample(
                self.transformer,
                scheduler,
                cond,
                uncond,
                shape,
                num_steps=num_steps,
                guidance_scale=guidance_scale,
                generator=generator,
                latents=latents,
                dtype=self.dtype,
                device=self.device,
                callback=callback,
                progress=progress,
                progress_bar_config=progress_bar_config,
            )

    # ------------------------------------------------------------------ VAE
    def decode(self, raw_latents: torch.Tensor) -> torch.Tensor:
        """Raw latents ``[B, C, T_lat, h, w]`` -> frames ``[B, T, 3, H, W]`` float32 in ``[0, 1]``.

        ``T = (T_lat - 1) * temporal + 1``, ``H = spatial * h``. Runs under the caller's grad mode (alignment
        backpropagates through it). The VAE's own output is ``[B, 3, T, H, W]`` in ``[-1, 1]``; the adapter rescales
        and reorders.
        """
        with self._placed(self.vae):
            return self.vae_adapter.decode(raw_latents, device=self.device)

    def encode(
        self, frames: torch.Tensor, *, sample_posterior: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Frames ``[B, T, 3, H, W]`` in ``[0, 1]`` -> **raw** latents ``[B, C, T_lat, h, w]`` (float32).

        Returns the posterior mean, or a sample of it (``sample_posterior``, seeded by ``generator``).
        ``T`` must follow the VAE's frame rule (4k+1) and ``H``, ``W`` be multiples of its spatial factor.
        """
        with self._placed(self.vae):
            return self.vae_adapter.encode(frames, sample=sample_posterior, generator=generator,
                                           device=self.device).float()


def _load_scheduler(folder: Path) -> Any:
    """Instantiate the scheduler class named in ``scheduler_config.json`` (a diffusers flow scheduler)."""
    import diffusers

    config_path = folder / "scheduler_config.json"
    if not config_path.is_file():
        raise UserInputError(f"Wan generator: '{config_path}' is missing")
    name = json.loads(config_path.read_text()).get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(f"unknown scheduler class {name!r} in '{config_path}'")
    return cls.from_pretrained(folder)
