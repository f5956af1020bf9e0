"""The models the stitching stages work on: a video VAE, a reconstruction model, and the sizes between them.

:func:`resolve_stitch_models` asks :func:`vist3a.components.load_components` for the parts ``vae`` and ``recon``
of a preset (any preset name every command accepts: ``tiny-random``, ``nano``, ``vist3a-1.3b``, ``vist3a-14b``, a
preset file) and reads the sizes from the preset's ``stitching`` block (VAE input size, 3D-model input size,
frames, view counts). ``--recon`` / ``--vae`` sources (Hub ids or folders) replace the preset's models. The
built-in presets fall back to random weights of their sizes when their weights are not installed (a warning;
``sources["weights"] = "random-init"``).

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

SPEC_KERNEL = "5x3x3"
SPEC_PADDING = "2x1x1"
POOL_CHUNK = 8  # clips rendered per call when pooling synthetic training clips
MAX_POOL_WORKERS = 8
MVDUST3R_NAMES = ("mvdust3r", "mvdust3r-plus")  # --recon by name


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


def load_vae(source: str) -> torch.nn.Module:
    """``AutoencoderKLWan`` from a Hub repo id or a folder (a diffusers pipeline folder with ``vae/``, or the VAE
    folder itself)."""
    from diffusers import AutoencoderKLWan

    from vist3a.hub import resolve_dir

    root = resolve_dir(source, allow_patterns=["vae/*"], what="VAE")
    folder = root / "vae" if (root / "vae").is_dir() else root
    if not (folder / "config.json").is_file():
        raise UserInputError(f"VAE: {source} has no config.json (neither in vae/ nor at the top)")
    return AutoencoderKLWan.from_pretrained(folder, local_files_only=True)


def load_recon(source: str, recon_type: str, preset: dict[str, Any] | None = None) -> torch.nn.Module:
    """A reconstruction model from a Hub repo id or folder (official or vist3a format). MV-DUSt3R by name:
    ``mvdust3r`` / ``mvdust3r-plus`` (the release weights, CC BY-NC 4.0, with a ``hub`` preset such as
    ``vist3a-1.3b``; with the built-in small presets, ``nano`` and ``tiny-random``, a tiny random model of that kind,
    as their own models are) or ``tiny-random-mvdust3r[-plus]``."""
    from vist3a.components import provider_name
    from vist3a.recon import anysplat_from_pretrained, mvdust3r_from_pretrained, random_tiny_model, vggt_from_pretrained

    if source in MVDUST3R_NAMES:
        if preset is not None and provider_name(preset) != "hub":
            logger.warning("--recon %s with --preset %s: a tiny %s with RANDOM weights (the release model needs a "
                           "release preset such as vist3a-1.3b, or its file / hub id with --recon-type mvdust3r)",
                           source, preset["name"], source)
            return random_tiny_model(source)
        return mvdust3r_from_pretrained(None, source)
    if source in ("tiny-random-mvdust3r", "tiny-random-mvdust3r-plus"):
        return random_tiny_model(source.removeprefix("tiny-random-"))
    loaders = {"anysplat": anysplat_from_pretrained, "vggt": vggt_from_pretrained, "mvdust3r": mvdust3r_from_pretrained}
    if recon_type not in loaders:
        raise UserInputError(f"--recon-type must be one of {sorted(loaders)}, got {recon_type!r}")
    return loaders[recon_type](source)


def resolve_stitch_models(
    preset: str = "nano",
    recon: str | None = None,
    vae: str | None = None,
    recon_type: str | None = None,
    vae_size: int | None = None,
    recon_size: int | None = None,
    num_frames: int | None = None,
    spec: str | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> StitchModels:
    """Load the VAE and reconstruction model of ``preset``; ``recon`` / ``vae`` (Hub ids or folders) replace the
    preset's, sizes and ``spec`` override its defaults. Both models come back frozen, in eval mode, on ``device``."""
    from vist3a.components import load_components, provider_name, resolve_preset, stitching_sizes

    data = resolve_preset(preset)
    sizes = stitching_sizes(data)
    parts = {p for p, given in (("vae", vae), ("recon", recon)) if given is None}
    loaded = load_components(data, parts, seed=seed, random_fallback=True, recon_model=recon_type) if parts else None
    sources = dict(loaded.sources) if loaded is not None else {"preset": data["name"]}
    base = {"vae": loaded.vae if vae is None else load_vae(vae),
            "recon": loaded.recon if recon is None else load_recon(recon, recon_type or "anysplat", data),
            "num_frames": sizes["num_frames"], "views": sizes["views"], "vae_size": sizes["vae_size"],
            "recon_size": sizes["recon_size"], "sources": sources}
    for name, given in (("vae", vae), ("recon", recon)):
        sources[name] = given if given is not None else data["name"]
    if recon in MVDUST3R_NAMES and provider_name(data) != "hub":
        sources["recon"] = f"tiny-random-{recon} (random weights)"
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
    ``device`` when it is a GPU, into an in-memory pool (:class:`~vist3a.data.cache.ClipCache`, uint8 frames:
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
    """Every clip of ``clips`` rendered once into a CPU :class:`~vist3a.data.cache.ClipCache` (CPU worker processes
    when rendering on the CPU and there is more than one chunk to render)."""
    from vist3a.data.cache import ClipCache

    chunks = math.ceil(len(clips) / POOL_CHUNK)
    workers = 0 if device.type == "cuda" else min(os.cpu_count() or 1, MAX_POOL_WORKERS, chunks)
    logger.info("rendering a pool of %d synthetic clips on %s", len(clips), device)
    return ClipCache.build(clips, device="cpu", chunk_size=POOL_CHUNK, num_workers=workers if workers > 1 else 0,
                           desc="rendering the clip pool")
