"""The models the stitching stages work on: a video VAE, a reconstruction model, and the sizes between them.

:func:`resolve_stitch_models` asks :func:`vist3a.components.load_components` for the parts ``vae`` and ``recon``
of a preset (any preset name every command accepts: ``tiny-random``, ``nano``, ``vist3a-1.3b``, ``vist3a-14b``, a
preset file) and reads the sizes from the preset's ``stitching`` block (VAE input size, 3D-model input size,
frames, view counts). ``--recon`` / ``--vae`` replace the preset's models. The built-in presets fall back to random
weights of their sizes when their weights are not installed (a warning; ``sources["weights"] = "random-init"``).

``--vae`` takes any video VAE (:mod:`vist3a.video.vae_adapters`): a family name (``wan2.1``, ``wan2.2``,
``cogvideox``, ``hunyuanvideo``, ``svd``, ``ltx``: a tiny random VAE of that family under the ``tiny-random`` and
``nano`` presets, the family's released VAE under the others), a Hub repo id or a folder. ``--recon`` likewise
takes a recon type name (``anysplat``, ``vggt``: the preset's model of that type, or a random one of the preset's
size) besides a Hub id or folder. Frame counts are rounded up to the VAE's frame rule.

The stitching geometry is derived from the sizes (:func:`stitch_geometry`): kernel ``5x3x3``, padding ``2x1x1`` as
in the release, output channels = the model's token width; the spatial stride maps the latent grid (VAE size /
the VAE's spatial factor) onto the token grid (model size / patch). Where the latent side is a multiple of the token
side the stride is their ratio; where it is not (e.g. LTX-Video's 32x latent: 16 for 512 px vs AnySplat's 32 tokens
for 448 px), the latent is first resampled trilinearly to ``s x grid`` with ``s = ceil(latent / grid)`` and the
stride is ``s``.
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

#: Providers whose family / type names (``--vae cogvideox``, ``--recon vggt``) mean random models of their size.
RANDOM_SIZE_PROVIDERS = ("tiny-random", "nano")

SPEC_KERNEL = "5x3x3"
SPEC_PADDING = "2x1x1"
POOL_CHUNK = 8  # clips rendered per call when pooling synthetic training clips
MAX_POOL_WORKERS = 8
MVDUST3R_NAMES = ("mvdust3r", "mvdust3r-plus")  # --recon by name


@dataclass
class StitchModels:
    """A VAE and a reconstruction model with the clip geometry that connects them.

    Attributes:
        vae: a diffusers video VAE (frozen, eval), used through its
            :class:`~vist3a.video.vae_adapters.VideoVAEAdapter`.
        recon: the reconstruction model (frozen, eval).
        adapter: its stitching adapter.
        num_frames: default frames per clip (valid for the VAE's frame rule).
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
    resample_hw: tuple[int, int] | None = None
    """Spatial size the stitching layer resamples the latent to first (``None``: the latent's own size)."""

    @property
    def vae_adapter(self) -> Any:
        """The :class:`~vist3a.video.vae_adapters.VideoVAEAdapter` of :attr:`vae`."""
        from vist3a.video.vae_adapters import vae_adapter

        return vae_adapter(self.vae)

    @property
    def temporal_factor(self) -> int:
        return self.vae_adapter.temporal_factor

    @property
    def latent_hw(self) -> tuple[int, int]:
        spatial = self.vae_adapter.spatial_factor
        return self.vae_size // spatial, self.vae_size // spatial

    def to(self, device: torch.device | str) -> StitchModels:
        self.vae.to(device)
        self.recon.to(device)
        return self


def stitch_geometry(recon: torch.nn.Module, adapter: ReconAdapter, vae: torch.nn.Module, vae_size: int,
                    recon_size: int) -> tuple[str, tuple[int, int] | None]:
    """``(spec, resample_hw)``: ``conv3d_k5x3x3_o<width>_s1x<s>x<s>_p2x1x1`` and the latent resampling size.

    ``s = latent side / token-grid side`` when it divides (``resample_hw = None``); otherwise the latent is resampled
    to ``s * grid`` with ``s = ceil(latent / grid)`` (see the module docstring).
    """
    from vist3a.video.vae_adapters import vae_adapter

    spatial = vae_adapter(vae).spatial_factor
    if vae_size % spatial:
        raise UserInputError(f"VAE size {vae_size} must be a multiple of the VAE's spatial factor {spatial}")
    latent = vae_size // spatial
    own = adapter.stitch_spec(recon, latent, recon_size)
    if own is not None:  # the model's own rule (e.g. MV-DUSt3R's paper layer k5x7x7 s1x3x3)
        return own, None
    grid = adapter.token_grid(recon, recon_size)[0]
    s = -(-latent // grid)
    resample = None if latent % grid == 0 else (s * grid, s * grid)
    return f"conv3d_k{SPEC_KERNEL}_o{adapter.token_width(recon)}_s1x{s}x{s}_p{SPEC_PADDING}", resample


def derive_spec(recon: torch.nn.Module, adapter: ReconAdapter, vae: torch.nn.Module, vae_size: int,
                recon_size: int) -> str:
    """The spec of :func:`stitch_geometry` (for sizes whose latent side is a multiple of the token side)."""
    spec, resample = stitch_geometry(recon, adapter, vae, vae_size, recon_size)
    if resample is not None:
        raise UserInputError(f"the latent of a {vae_size} px clip is no multiple of the token grid at {recon_size} px: "
                             "use stitch_geometry (it resamples the latent)")
    return spec


def load_vae(source: str, tiny: bool = False, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """A video VAE and its description from a family name, Hub repo id or folder (a diffusers pipeline folder
    with ``vae/``, or the VAE folder itself); see :func:`vist3a.video.vae_adapters.load_video_vae`."""
    from vist3a.video.vae_adapters import load_video_vae

    return load_video_vae(source, tiny=tiny, seed=seed)


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
    from vist3a.recon import random_tiny_model
    from vist3a.recon.hub import DEFAULT_REPOS
    from vist3a.video.vae_adapters import vae_adapter

    data = resolve_preset(preset)
    sizes = stitching_sizes(data)
    provider = provider_name(data)
    random_sizes = provider in RANDOM_SIZE_PROVIDERS  # family / type names mean random models of the preset's size
    recon_arg, recon_model = recon, None
    if recon is not None and recon.strip().lower() in DEFAULT_REPOS:  # a recon type name, not a repo or folder
        recon_type, recon = recon.strip().lower(), None
        if recon_type != data.get("recon", {}).get("model", "anysplat") and provider != "tiny-random":
            if random_sizes:
                recon_model = random_tiny_model(recon_type, seed=seed)
            else:
                recon = DEFAULT_REPOS[recon_type]
    parts = set()
    if vae is None:
        parts.add("vae")
    if recon is None and recon_model is None:
        parts.add("recon")
    loaded = load_components(data, parts, seed=seed, random_fallback=True, recon_model=recon_type) if parts else None
    sources = dict(loaded.sources) if loaded is not None else {"preset": data["name"]}
    sources.update(vae=data["name"], recon=recon_arg or data["name"])
    if vae is None:
        vae_model = loaded.vae
    else:
        vae_model, sources["vae"] = load_vae(vae, tiny=random_sizes, seed=seed)
    random_recon = recon_model is not None or (provider == "tiny-random" and recon_arg is not None and recon is None)
    if recon_model is None:
        recon_model = loaded.recon if recon is None else load_recon(recon, recon_type or "anysplat", data)
    if random_recon:
        sources["recon"] = f"tiny-random-{recon_type} (random weights)"
    for model in (recon_model, vae_model):
        model.eval().requires_grad_(False).to(device)
    adapter = adapter_for_model(recon_model)
    video = vae_adapter(vae_model)
    vae_px = int(vae_size or sizes["vae_size"])
    if recon_size is None:  # the adapter may prefer another size for this latent (e.g. MV-DUSt3R: patch 16)
        recon_size = adapter.default_recon_size(recon_model, vae_px // video.spatial_factor, int(sizes["recon_size"]))
    recon_px = int(recon_size)
    derived, resample = stitch_geometry(recon_model, adapter, vae_model, vae_px, recon_px)
    if spec is not None:
        resample = None
    frames = int(num_frames) if num_frames else video.check_num_frames(int(sizes["num_frames"]), round_up=True)
    views = tuple(dict.fromkeys(video.check_num_frames(int(v), round_up=True) for v in sizes["views"]))
    sources["vae_family"] = video.name
    sources.update({k: v for k, v in (("vae_arg", vae), ("recon_arg", recon_arg)) if v is not None})
    return StitchModels(
        vae=vae_model, recon=recon_model, adapter=adapter, num_frames=frames, vae_size=vae_px, recon_size=recon_px,
        spec=spec or derived, view_choices=views, sources=sources, resample_hw=resample,
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
