"""The models the stitching stages work on: a video VAE, a reconstruction model, and the sizes between them.

:func:`resolve_stitch_models` is the one place that turns a preset name (+ optional ``--recon`` / ``--vae``
sources) into loaded models:

- ``tiny-random``: tiny random Wan VAE (:mod:`vist3a.video.tiny`) + tiny random AnySplat
  (:func:`vist3a.recon.random_tiny_model`): seconds on a CPU, for tests and CI;
- ``nano``: the shipped nano VAE + AnySplat (:mod:`vist3a.nano`) when they are installed; otherwise models of the
  nano sizes with random weights (logged as a warning and recorded as ``weights: "random-init"``);
- ``release``: the Wan 2.1 VAE + AnySplat of the VIST3A release (Hugging Face ids, 13 frames, 512 px VAE input,
  448 px model input).

The stitching spec is derived from the sizes (:func:`derive_spec`): kernel ``5x3x3``, padding ``2x1x1`` as in the
release, output channels = the model's token width, spatial stride = latent grid / token grid.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from vist3a.errors import UserInputError
from vist3a.stitching.adapters import ReconAdapter, adapter_for_model

logger = logging.getLogger(__name__)

PRESETS = ("tiny-random", "nano", "release")
RELEASE_SOURCES = {"vae": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "recon": "lhjiang/anysplat"}
SPEC_KERNEL = "5x3x3"
SPEC_PADDING = "2x1x1"
POOL_CHUNK = 8  # clips rendered per call when pooling synthetic training clips
MAX_POOL_WORKERS = 8


@dataclass
class StitchModels:
    """A VAE and a reconstruction model with the clip geometry that connects them.

    Attributes:
        vae: ``diffusers.AutoencoderKLWan`` (frozen, eval).
        recon: the reconstruction model (frozen, eval).
        adapter: its stitching adapter.
        num_frames: default frames per clip (``4n + 1``).
        vae_size, recon_size: square input sizes (pixels) of the VAE and of the reconstruction model.
        spec: stitching-layer spec that maps the latent grid onto the token grid.
        view_choices: default views per training clip.
        sources: where the weights came from (recorded in reports).
    """

    vae: torch.nn.Module
    recon: torch.nn.Module
    adapter: ReconAdapter
    num_frames: int
    vae_size: int
    recon_size: int
    spec: str
    view_choices: tuple[int, ...] = (9, 13, 17, 21)
    sources: dict[str, Any] = field(default_factory=dict)

    @property
    def temporal_factor(self) -> int:
        from vist3a.video.frames import vae_scale_factors

        return vae_scale_factors(self.vae.config)[0]

    @property
    def latent_hw(self) -> tuple[int, int]:
        from vist3a.video.frames import vae_scale_factors

        spatial = vae_scale_factors(self.vae.config)[1]
        return self.vae_size // spatial, self.vae_size // spatial

    def to(self, device: torch.device | str) -> StitchModels:
        self.vae.to(device)
        self.recon.to(device)
        return self


def derive_spec(recon: torch.nn.Module, adapter: ReconAdapter, vae: torch.nn.Module, vae_size: int,
                recon_size: int) -> str:
    """``conv3d_k5x3x3_o<width>_s1x<s>x<s>_p2x1x1`` with ``s = latent side / token-grid side`` (must divide)."""
    from vist3a.video.frames import vae_scale_factors

    spatial = vae_scale_factors(vae.config)[1]
    if vae_size % spatial:
        raise UserInputError(f"VAE size {vae_size} must be a multiple of the VAE's spatial factor {spatial}")
    latent = vae_size // spatial
    own = adapter.stitch_spec(recon, latent, recon_size)
    if own is not None:
        return own
    grid = adapter.token_grid(recon, recon_size)[0]
    if latent % grid:
        raise UserInputError(
            f"the latent grid ({latent} for {vae_size} px) is not a multiple of the token grid ({grid} for "
            f"{recon_size} px); pick sizes with an integer ratio or pass --spec"
        )
    s = latent // grid
    return f"conv3d_k{SPEC_KERNEL}_o{adapter.token_width(recon)}_s1x{s}x{s}_p{SPEC_PADDING}"


def _tiny_vae(seed: int) -> torch.nn.Module:
    from diffusers import AutoencoderKLWan

    from vist3a.video.tiny import tiny_vae_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKLWan(**tiny_vae_config())


def load_vae(source: str) -> torch.nn.Module:
    """``AutoencoderKLWan`` from a Hub repo id or a folder (a diffusers pipeline folder with ``vae/``, or the VAE
    folder itself)."""
    from diffusers import AutoencoderKLWan

    from vist3a.video._hub import resolve_pretrained_dir

    root = resolve_pretrained_dir(source, allow_patterns=["vae/*"], what="VAE")
    folder = root / "vae" if (root / "vae").is_dir() else root
    if not (folder / "config.json").is_file():
        raise UserInputError(f"VAE: {source} has no config.json (neither in vae/ nor at the top)")
    return AutoencoderKLWan.from_pretrained(folder, local_files_only=True)


def load_recon(source: str, recon_type: str, preset: str = "release") -> torch.nn.Module:
    """A reconstruction model from a Hub repo id or folder (official or vist3a format). MV-DUSt3R by name:
    ``mvdust3r`` / ``mvdust3r-plus`` (release weights, CC BY-NC 4.0, with ``preset="release"``; with the built-in
    small presets a tiny random model of that kind, as their own models are) or ``tiny-random-mvdust3r[-plus]``."""
    from vist3a.recon import anysplat_from_pretrained, mvdust3r_from_pretrained, random_tiny_model, vggt_from_pretrained

    if source in ("mvdust3r", "mvdust3r-plus"):
        if preset != "release":
            logger.warning("--recon %s with --preset %s: a tiny %s with RANDOM weights (the release model needs "
                           "--preset release, or its file / hub id with --recon-type mvdust3r)", source, preset, source)
            return random_tiny_model(source)
        return mvdust3r_from_pretrained(None, source)
    if source in ("tiny-random-mvdust3r", "tiny-random-mvdust3r-plus"):
        return random_tiny_model(source.removeprefix("tiny-random-"))
    loaders = {"anysplat": anysplat_from_pretrained, "vggt": vggt_from_pretrained, "mvdust3r": mvdust3r_from_pretrained}
    if recon_type not in loaders:
        raise UserInputError(f"--recon-type must be one of {sorted(loaders)}, got {recon_type!r}")
    return loaders[recon_type](source)


def _nano_component(name: str) -> torch.nn.Module | None:
    """The shipped nano component ``name`` ("vae", "recon"), or None when the nano weights are not installed."""
    from vist3a.nano.weights import load_nano_component

    try:
        return load_nano_component(name)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        logger.warning("nano %s weights are not available: %s", name, exc)
        return None


def _preset_tiny(seed: int) -> dict[str, Any]:
    from vist3a.recon import random_tiny_model

    return {
        "vae": _tiny_vae(seed), "recon": random_tiny_model("anysplat", seed=seed), "num_frames": 5, "views": (5,),
        "vae_size": 32, "recon_size": 56, "sources": {"vae": "tiny-random", "recon": "tiny-random", "seed": seed},
    }


def _preset_nano(seed: int) -> dict[str, Any]:
    from diffusers import AutoencoderKLWan

    from vist3a.nano.configs import NANO_VIDEO, nano_anysplat_config, nano_vae_config
    from vist3a.recon import AnySplat

    vae, recon = _nano_component("vae"), _nano_component("recon")
    sources = {"vae": "nano (shipped)", "recon": "nano (shipped)"}
    if vae is None or recon is None:
        logger.warning("the nano weights are not installed: using nano-size models with RANDOM weights "
                       "(the results say nothing about the nano models)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = vae if vae is not None else AutoencoderKLWan(**nano_vae_config())
            recon = recon if recon is not None else AnySplat(**nano_anysplat_config())
        sources = {"vae": "nano", "recon": "nano", "weights": "random-init", "seed": seed}
    return {"vae": vae, "recon": recon, "num_frames": NANO_VIDEO.num_frames, "views": (9, 13),
            "vae_size": NANO_VIDEO.height,
            "recon_size": NANO_VIDEO.recon_size, "sources": sources}


def _preset_release(seed: int) -> dict[str, Any]:
    return {"vae": None, "recon": None, "num_frames": 13, "views": (9, 13, 17, 21), "vae_size": 512,
            "recon_size": 448,
            "sources": dict(RELEASE_SOURCES)}


_PRESET_BUILDERS = {"tiny-random": _preset_tiny, "nano": _preset_nano, "release": _preset_release}


def resolve_stitch_models(
    preset: str = "nano",
    recon: str | None = None,
    vae: str | None = None,
    recon_type: str = "anysplat",
    vae_size: int | None = None,
    recon_size: int | None = None,
    num_frames: int | None = None,
    spec: str | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> StitchModels:
    """Load the VAE and reconstruction model of ``preset``; ``recon`` / ``vae`` (Hub ids or folders) replace the
    preset's, sizes and ``spec`` override its defaults. Both models come back frozen, in eval mode, on ``device``."""
    if preset not in _PRESET_BUILDERS:
        raise UserInputError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    base = _PRESET_BUILDERS[preset](seed)
    if recon is not None:
        base["recon"], base["sources"]["recon"] = load_recon(recon, recon_type, preset), recon
        if preset != "release" and recon in ("mvdust3r", "mvdust3r-plus"):
            base["sources"]["recon"] = f"tiny-random-{recon} (random weights)"
    elif base["recon"] is None:
        base["recon"] = load_recon(base["sources"]["recon"], recon_type)
    if vae is not None:
        base["vae"], base["sources"]["vae"] = load_vae(vae), vae
    elif base["vae"] is None:
        base["vae"] = load_vae(base["sources"]["vae"])
    recon_model, vae_model = base["recon"], base["vae"]
    for model in (recon_model, vae_model):
        model.eval().requires_grad_(False).to(device)
    adapter = adapter_for_model(recon_model)
    vae_px = int(vae_size or base["vae_size"])
    if recon_size is None:  # the adapter may prefer another size for this latent (e.g. MV-DUSt3R: patch 16)
        from vist3a.video.frames import vae_scale_factors

        latent = vae_px // vae_scale_factors(vae_model.config)[1]
        recon_size = adapter.default_recon_size(recon_model, latent, int(base["recon_size"]))
    recon_px = int(recon_size)
    spec = spec or derive_spec(recon_model, adapter, vae_model, vae_px, recon_px)
    return StitchModels(
        vae=vae_model, recon=recon_model, adapter=adapter, num_frames=int(num_frames or base["num_frames"]),
        vae_size=vae_px, recon_size=recon_px, spec=spec, view_choices=tuple(base["views"]), sources=base["sources"],
    )


def resolve_clips(data: str, num_clips: int, num_frames: int, size: int, seed: int = 0, render_once: bool = False,
                  device: torch.device | str = "cpu") -> Any:
    """The clip dataset named by ``--data``: ``"synthetic"`` (the nano world, ``num_clips`` clips rendered at
    ``size`` px), ``"dl3dv:<folder>"`` (:class:`~vist3a.data.DL3DVClips`) or a folder of videos / image
    sequences (:class:`~vist3a.data.FolderClips`).

    ``render_once`` (training, which draws clips again and again): the synthetic clips are rendered once, on
    ``device`` when it is a GPU, into an in-memory pool (:class:`~vist3a.nano.clips.ClipCache`, uint8 frames:
    ``num_clips · num_frames · 3 · size²`` bytes) and served from there; a shorter clip is then the first frames of
    a pooled one. Without it the world renders each clip on access (the layer search reads every clip once).
    File-backed data is read on access either way.
    """
    from vist3a.data import DL3DVClips, FolderClips, SyntheticClips

    if data == "synthetic":
        render_device = torch.device(device)
        clips = SyntheticClips(num_clips, num_frames=num_frames, size=size, seed=seed, split="train",
                               device=render_device if render_once else "cpu")
        return _render_pool(clips, render_device) if render_once else clips
    if data.startswith("dl3dv:"):
        return DL3DVClips(data.removeprefix("dl3dv:"), num_frames=num_frames, seed=seed)
    return FolderClips(data, num_frames=num_frames, seed=seed)


def _render_pool(clips: Any, device: torch.device) -> Any:
    """Every clip of ``clips`` rendered once into a CPU :class:`~vist3a.nano.clips.ClipCache` (CPU worker processes
    when rendering on the CPU and there is more than one chunk to render)."""
    from vist3a.nano.clips import ClipCache

    chunks = math.ceil(len(clips) / POOL_CHUNK)
    workers = 0 if device.type == "cuda" else min(os.cpu_count() or 1, MAX_POOL_WORKERS, chunks)
    logger.info("rendering a pool of %d synthetic clips on %s", len(clips), device)
    return ClipCache.build(clips, device="cpu", chunk_size=POOL_CHUNK, num_workers=workers if workers > 1 else 0,
                           desc="rendering the clip pool")
