"""The models and data an alignment run needs, resolved from a preset name.

- ``tiny-random``: tiny random Wan generator (:func:`vist3a.video.build_tiny_generator`), a stitched tiny random
  AnySplat (layer and spec from the preset file) and :class:`~vist3a.alignment.scorers.TinyImageTextScorer`;
  seconds to build on a CPU, for tests and CI. The output is meaningless.
- ``nano``: the shipped nano generator, stitched decoder and reward image-text model (``"nano-clip"``, the
  component ``clip``); missing generator / decoder weights fall back to models of the nano sizes with random
  weights (logged as a warning and recorded as ``weights: "random-init"``), a missing ``clip`` to the tiny random
  scorer (warning; recorded as ``scorer: "tiny-random"``).
- any preset with ``generator`` / ``recon`` / ``stitched`` entries (``vist3a-1.3b``, ``vist3a-14b``): the base Wan
  generator (alignment trains a fresh LoRA; the preset's released LoRA is not loaded), the released stitched
  AnySplat, and the real scorers of the reward mix (DFN5B-CLIP, HPSv2.1, PickScore).

The tiny and nano presets have a single image-text model: every scorer name of a reward mix maps to it, so
``--reward-mix paper`` keeps its structure (terms, weights, views) on them.

Flow-matching clips: ``"synthetic"`` (:class:`vist3a.data.SyntheticClips`, the nano world) or a folder of
videos / image sequences (:class:`vist3a.data.FolderClips`) with captions in ``captions.json``
(``{item name: caption}``) when present.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vist3a.alignment.scene import SceneDecoder, StitchedSceneDecoder
from vist3a.alignment.scorers import ImageTextScorer, TinyImageTextScorer, load_scorer
from vist3a.errors import UserInputError
from vist3a.presets import load_preset

logger = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.json"
#: Token length of the tiny-random text encoder (camera templates + prompt fit without truncation).
TINY_TEXT_TOKENS = 64


@dataclass
class AlignComponents:
    """Everything :class:`~vist3a.alignment.trainer.AlignTrainer` uses besides its config.

    Attributes:
        generator: a :class:`~vist3a.video.WanGenerator` (VAE, transformer, text encoder); its transformer gets
            the LoRA, the rest stays frozen.
        scene_decoder: raw latents -> decoded frames + renders (:class:`~vist3a.alignment.scene.SceneDecoder`).
        scorer_for: scorer name -> :class:`~vist3a.alignment.scorers.ImageTextScorer` (used by the reward mix).
        clips: map-style dataset of captioned :class:`~vist3a.data.MultiViewClip` for the flow-matching loss
            (``None`` when that loss is off).
        num_frames, height, width: default rollout / clip geometry.
        sources: where each model came from (recorded in checkpoints).
    """

    generator: Any
    scene_decoder: SceneDecoder
    scorer_for: Callable[[str], ImageTextScorer]
    clips: Any
    num_frames: int
    height: int
    width: int
    sources: dict[str, Any] = field(default_factory=dict)


def _single_scorer(scorer: ImageTextScorer, label: str) -> Callable[[str], ImageTextScorer]:
    seen: set[str] = set()

    def scorer_for(name: str) -> ImageTextScorer:
        if name not in seen:
            seen.add(name)
            logger.info("reward scorer %r -> the %s image-text model", name, label)
        return scorer

    return scorer_for


def make_clips(
    source: str | None, num_frames: int, height: int, width: int, seed: int, num_clips: int = 256
) -> Any:
    """The flow-matching dataset: ``"synthetic"`` (nano world), a folder path, or ``None`` (no clips)."""
    if source is None:
        return None
    if source == "synthetic":
        from vist3a.data import SyntheticClips

        if height != width:
            raise UserInputError(f"synthetic clips are square; got a {height}x{width} video size")
        return SyntheticClips(num_clips, num_frames=num_frames, size=height, seed=seed)
    from vist3a.data import FolderClips

    root = Path(source).expanduser()
    if not root.is_dir():
        raise UserInputError(f"--clips must be 'synthetic' or an existing folder, got {source!r}")
    captions_path = root / CAPTIONS_FILE
    captions = json.loads(captions_path.read_text(encoding="utf-8")) if captions_path.is_file() else None
    if captions is None:
        logger.warning("no %s in %s: clips train with the empty caption", CAPTIONS_FILE, root)
    if height != width:
        raise UserInputError(f"folder clips are centre-cropped to squares; got a {height}x{width} video size")
    return FolderClips(root, num_frames=num_frames, size=height, seed=seed, captions=captions)


def _stitched_tiny(preset: dict[str, Any], generator: Any, seed: int) -> torch.nn.Module:
    from vist3a.recon import random_tiny_model
    from vist3a.stitching.decoder import StitchedDecoder

    stitched = preset.get("stitched", {})
    if "layer" not in stitched or "spec" not in stitched:
        raise ValueError(f"preset {preset.get('name')!r} must give stitched.layer and stitched.spec, got {stitched}")
    video = generator.vae_adapter
    return StitchedDecoder.from_recon(
        random_tiny_model(preset.get("recon", {}).get("model", "anysplat"), seed=seed),
        stitched["layer"],
        stitched["spec"],
        latent_channels=video.latent_channels,
        temporal_factor=video.temporal_factor,
    )


def _nano_loader() -> Callable[[str], Any] | None:
    for module_name in ("vist3a.nano.weights", "vist3a.nano"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        loader = getattr(module, "load_nano_component", None)
        if loader is not None:
            return loader
    return None


def _try_nano(loader: Callable[[str], Any] | None, *names: str) -> Any:
    if loader is None:
        return None
    for name in names:
        try:
            return loader(name)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            logger.debug("nano component %r not available: %s", name, exc)
    return None


def nano_reward_scorer(text_encoder: Any, device: torch.device | str, seed: int = 0) -> tuple[ImageTextScorer, str]:
    """``(scorer, name)``: the shipped nano reward model ("nano-clip", sharing the generator's MiniLM
    ``text_encoder``) or, when it is not installed, a tiny random scorer ("tiny-random") with a warning."""
    from vist3a.alignment.scorers import nano_clip_scorer
    from vist3a.nano.weights import nano_available

    if nano_available(["clip"]):
        return nano_clip_scorer("clip", device, text_encoder=text_encoder), "nano-clip"
    logger.warning(
        "the nano image-text reward model ('clip') is not installed: the rewards use a tiny RANDOM scorer, so "
        "the reward terms mean nothing; train it with `vist3a nano train clip` and `vist3a nano install`"
    )
    return TinyImageTextScorer(seed=seed).to(device), "tiny-random"


def _random_nano(seed: int, device: torch.device) -> tuple[Any, torch.nn.Module]:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vist3a.nano.configs import (
        NANO_SAMPLING,
        NANO_VIDEO,
        nano_anysplat_config,
        nano_stitch_spec,
        nano_transformer_config,
        nano_vae_config,
        stitch_candidates,
    )
    from vist3a.recon import AnySplat
    from vist3a.stitching.decoder import StitchedDecoder
    from vist3a.video.generator import WanGenerator
    from vist3a.video.sampler import make_scheduler
    from vist3a.video.text import load_minilm_text_encoder

    anysplat_config = nano_anysplat_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**nano_vae_config())
        transformer = WanTransformer3DModel(**nano_transformer_config())
        recon = AnySplat(**anysplat_config)
    text = load_minilm_text_encoder(max_length=NANO_VIDEO.text_max_length)
    scheduler = make_scheduler(NANO_SAMPLING.scheduler, shift=NANO_SAMPLING.flow_shift)
    generator = WanGenerator(vae, transformer, text, scheduler, device=device)
    stitched = StitchedDecoder.from_recon(recon, stitch_candidates(anysplat_config)[0], nano_stitch_spec())
    return generator, stitched


def load_components(
    preset: str = "nano",
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    clips: str | None = "synthetic",
    num_clips: int = 256,
    render_size: int | None = None,
    checkpoint_vae: bool = True,
    gradient_checkpointing: bool = True,
    scorer_dtype: torch.dtype | None = None,
) -> AlignComponents:
    """Resolve ``preset`` (a shipped name or a preset JSON path) to :class:`AlignComponents` on ``device``.

    ``clips``: see :func:`make_clips`. ``render_size``: passed to the scene decoder (``None``: the 3D model's
    input size). Frozen parts are put in eval mode without gradients.
    """
    device = torch.device(device)
    data = load_preset(preset)
    defaults = data["defaults"]
    builtin = data.get("builtin")
    sources: dict[str, Any] = {"preset": data["name"]}
    if builtin == "tiny-random":
        from vist3a.video.tiny import build_tiny_generator

        generator = build_tiny_generator(seed=seed, device=device, text_max_length=TINY_TEXT_TOKENS)
        stitched = _stitched_tiny(data, generator, seed)
        scorer_for = _single_scorer(TinyImageTextScorer(seed=seed).to(device), "tiny random")
        sources.update(weights="random-init", seed=seed)
    elif builtin == "nano":
        from vist3a.nano.weights import load_nano_generator, nano_available

        loader = _nano_loader()
        installed = nano_available()
        generator = load_nano_generator(device=device) if installed else None
        stitched = _try_nano(loader, "stitch") if installed else None
        if generator is None or stitched is None:
            logger.warning(
                "the nano generator / stitched decoder are not installed: aligning nano-size models with RANDOM "
                "weights (the results say nothing about the nano models)"
            )
            generator, stitched = _random_nano(seed, device)
            sources.update(weights="random-init", seed=seed)
        else:
            generator.to(device)
            sources.update(weights="nano (shipped)")
        scorer, sources["scorer"] = nano_reward_scorer(generator.text_encoder, device, seed)
        scorer_for = _single_scorer(scorer, sources["scorer"])
    elif "generator" in data and "stitched" in data:
        generator, stitched = _load_release(data, device)
        dtype = scorer_dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        scorer_for = lambda name: load_scorer(name, device, dtype)
        sources.update(generator=data["generator"], stitched=data["stitched"], recon=data.get("recon"))
    else:
        raise UserInputError(f"preset {data['name']!r} names no generator and stitched decoder to align")
    generator.vae.requires_grad_(False)
    generator.text_encoder.model.requires_grad_(False)
    stitched = stitched.to(device).eval().requires_grad_(False)
    if gradient_checkpointing and getattr(stitched, "_supports_gradient_checkpointing", False):
        stitched.enable_gradient_checkpointing()
    scene = StitchedSceneDecoder(generator.decode, stitched, render_size=render_size, checkpoint_vae=checkpoint_vae)
    frames, height, width = int(defaults["num_frames"]), int(defaults["height"]), int(defaults["width"])
    return AlignComponents(
        generator=generator,
        scene_decoder=scene,
        scorer_for=scorer_for,
        clips=make_clips(clips, frames, height, width, seed, num_clips),
        num_frames=frames,
        height=height,
        width=width,
        sources=sources,
    )


def _load_release(data: dict[str, Any], device: torch.device) -> tuple[Any, torch.nn.Module]:
    """Base Wan generator + the released stitched AnySplat of a real preset (Hub ids or folders)."""
    from vist3a.recon import anysplat_from_pretrained
    from vist3a.stitching.decoder import StitchedDecoder
    from vist3a.video.generator import WanGenerator

    gen_cfg, stitched_cfg, recon_cfg = data["generator"], data["stitched"], data.get("recon", {})
    generator = WanGenerator.from_pretrained(gen_cfg["repo_id"], device=device)
    if data.get("lora"):
        logger.info("alignment trains a fresh LoRA; the preset's released LoRA %s is not loaded", data["lora"])
    base = anysplat_from_pretrained(recon_cfg.get("repo_id", "lhjiang/anysplat"))
    checkpoint = _resolve_file(stitched_cfg["repo_id"], stitched_cfg["filename"])
    stitched = StitchedDecoder.from_official_checkpoint(
        base,
        checkpoint,
        layer=stitched_cfg.get("layer", "enc_blocks_2"),
        spec=stitched_cfg.get("spec", "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"),
        lora_alpha=float(stitched_cfg.get("lora_alpha", 32.0)),
    )
    return generator, stitched


def _resolve_file(repo_or_dir: str, filename: str) -> Path:
    """``filename`` inside a local folder, or downloaded from / found in the cache of a Hub repo."""
    folder = Path(repo_or_dir).expanduser()
    if folder.is_dir():
        path = folder / filename
        if not path.is_file():
            raise UserInputError(f"'{path}' does not exist")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_or_dir, filename))
    except Exception as exc:  # offline, missing repo or file: one clear message
        raise UserInputError(
            f"cannot get '{filename}' from the Hub repo '{repo_or_dir}' ({type(exc).__name__}: {exc}); download it "
            f"with `hf download {repo_or_dir} {filename}` or pass a local folder"
        ) from None
