"""The built-in providers: ``tiny-random`` (seeded random models of the real classes), ``hub`` (the release's
repos or local copies of them) and ``folder`` (a pipeline written by ``Text2ScenePipeline.save_pretrained``).

The VAE family of a preset is ``generator.vae`` for ``tiny-random`` (``wan2.1``, ``wan2.2``, ``cogvideox``) and
``generator.family`` (``wan`` / ``cogvideox``: the generator class) for ``hub``; the ``vae`` part is any diffusers
video VAE that :func:`vist3a.video.vae_adapters.vae_adapter` knows."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from vist3a.components import GENERATOR_PARTS, Components, LoadOptions, single_scorer
from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

#: 3D models whose loader resolves a checkpoint file, a folder or a Hub repo itself (MV-DUSt3R's release is
#: ``.pth`` files in one repo).
SELF_RESOLVING_RECON = ("mvdust3r", "mvdust3r-plus")


def place_generator(generator: Any, options: LoadOptions) -> Any:
    """Apply the offload policy to a freshly built generator (``none`` leaves it as built)."""
    return generator.set_offload(options.offload) if options.offload != "none" else generator


def stitch_recon(recon: torch.nn.Module, preset: dict[str, Any], seed: int, vae: Any = None) -> torch.nn.Module:
    """``recon`` stitched at the preset's ``stitched.layer`` / ``spec`` with a seeded fresh stitching layer that
    takes the latents of ``vae`` (its channels and temporal factor; ``None``: the Wan 2.1 release's)."""
    from vist3a.stitching.decoder import StitchedDecoder

    stitched = preset.get("stitched", {})
    if "layer" not in stitched or "spec" not in stitched:
        raise UserInputError(f"preset {preset['name']!r} must give stitched.layer and stitched.spec")
    latent: dict[str, int] = {}
    if vae is not None:
        from vist3a.video.vae_adapters import vae_adapter

        video = vae_adapter(vae)
        latent = {"latent_channels": video.latent_channels, "temporal_factor": video.temporal_factor}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StitchedDecoder.from_recon(recon, stitched["layer"], stitched["spec"], **latent)


def tiny_vae_family(preset: dict[str, Any]) -> str:
    """The VAE family of a ``tiny-random`` preset (``generator.vae``; default ``wan2.1``)."""
    return str(preset.get("generator", {}).get("vae", "wan2.1"))


def generator_class(preset: dict[str, Any]) -> Any:
    """The generator class of a ``hub`` preset's ``generator.family`` (``wan``, the default, or ``cogvideox``)."""
    from vist3a.video.cogvideox import CogVideoXGenerator
    from vist3a.video.generator import WanGenerator

    classes = {"wan": WanGenerator, "cogvideox": CogVideoXGenerator}
    family = preset.get("generator", {}).get("family", "wan")
    if family not in classes:
        raise UserInputError(f"preset {preset['name']!r}: generator.family must be one of {list(classes)}, "
                             f"got {family!r}")
    return classes[family]


def saved_generator_class(folder: Path) -> Any:
    """The generator class of a saved generator folder, read from its ``model_index.json``."""
    from vist3a.video.cogvideox import CogVideoXGenerator
    from vist3a.video.generator import WanGenerator

    index = folder / "model_index.json"
    name = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    return CogVideoXGenerator if name == "CogVideoXPipeline" else WanGenerator


class TinyRandomProvider:
    """Tiny random generator / VAE of the preset's family (``generator.vae``: Wan 2.1, Wan 2.2, CogVideoX), tiny
    random AnySplat or VGGT, tiny random scorer: seconds on a CPU."""

    def load(self, preset: dict[str, Any], parts: frozenset[str], options: LoadOptions, out: Components) -> None:
        from vist3a.recon.hub import random_tiny_model

        seed, dtype, family = options.seed, options.dtype or torch.float32, tiny_vae_family(preset)
        out.sources.update(weights="random-init", seed=seed, vae_family=family)
        if parts & (GENERATOR_PARTS - {"vae"}):
            from vist3a.video.tiny import build_tiny_generator

            generator = build_tiny_generator(seed, device=options.device, dtype=dtype,
                                             text_max_length=options.text_max_length or 16, vae=family)
            out.set_generator(place_generator(generator, options))
        elif parts & {"vae", "stitched"}:
            from vist3a.video.vae_adapters import tiny_vae

            out.vae = tiny_vae(family, seed)
        if parts & {"recon", "stitched"}:
            kind = options.recon_model or preset.get("recon", {}).get("model", "anysplat")
            recon = random_tiny_model(kind, seed=seed)
            out.recon = recon
            if "stitched" in parts:
                decoder = stitch_recon(recon, preset, seed, out.vae).to(options.device)
                if dtype != torch.float32:
                    decoder = torch.nn.Module.to(decoder, dtype=dtype)  # every module may be half
                out.stitched = decoder.eval()
        if "scorer" in parts:
            from vist3a.alignment.scorers import TinyImageTextScorer

            out.scorer = single_scorer(TinyImageTextScorer(seed=seed).to(options.device), "tiny random")


class FolderProvider:
    """A folder written by ``Text2ScenePipeline.save_pretrained``: ``generator/`` (a diffusers Wan or CogVideoX
    pipeline folder) + ``decoder/``."""

    def load(self, preset: dict[str, Any], parts: frozenset[str], options: LoadOptions, out: Components) -> None:
        from vist3a.stitching.decoder import StitchedDecoder

        folder = Path(preset["folder"])
        out.sources["folder"] = str(folder)
        if parts & GENERATOR_PARTS:
            out.set_generator(saved_generator_class(folder / "generator").from_pretrained(
                folder / "generator", dtype=options.dtype, device=options.device, offload=options.offload,
                local_files_only=True,
            ))
        if parts & {"stitched", "recon"}:
            out.stitched = _place_decoder(StitchedDecoder.from_pretrained(folder / "decoder"), options)
        if "recon" in parts:
            raise UserInputError(f"'{folder}' holds a stitched decoder, not a plain 3D model (part 'recon')")


class HubProvider:
    """The release's components from Hub repos or local folders, all resolved first (one error for all missing).

    Preset keys: ``generator.repo_id`` / ``generator.family`` (``wan`` or ``cogvideox``), ``lora`` (merged into the
    transformer for generation, not for alignment), ``recon.repo_id`` / ``recon.model``, ``stitched`` (official
    checkpoint file, layer, spec; or ``stitched.folder``: a decoder the user trained with ``vist3a stitch train``,
    for pairs without released stitched weights such as Wan 2.2, CogVideoX or MV-DUSt3R; see
    :func:`user_stitched_path`). MV-DUSt3R weights (a file, folder or repo) are resolved by their own loader.
    """

    def load(self, preset: dict[str, Any], parts: frozenset[str], options: LoadOptions, out: Components) -> None:
        from vist3a import hub

        gen_cfg, lora_cfg = preset.get("generator", {}), preset.get("lora")
        recon_cfg, stitched_cfg = preset.get("recon", {}), preset.get("stitched", {})
        whole_generator = bool(parts & (GENERATOR_PARTS - {"vae"}))
        own_stitched = "folder" in stitched_cfg
        user_decoder = user_stitched_path(preset) if "stitched" in parts and own_stitched else None
        needed: list[tuple[str, list[str] | None]] = []
        if whole_generator:
            needed.append((gen_cfg.get("repo_id"), None))
            if lora_cfg and options.load_lora:
                needed.append((lora_cfg["repo_id"], [f"{lora_cfg['subfolder']}/*"]))
        elif "vae" in parts:
            needed.append((gen_cfg.get("repo_id"), ["vae/*"]))
        kind = options.recon_model or recon_cfg.get("model", "anysplat")
        base_needed = "recon" in parts or ("stitched" in parts and not own_stitched)
        if base_needed and kind not in SELF_RESOLVING_RECON:
            needed.append((recon_cfg.get("repo_id"), None))
        if "stitched" in parts and not own_stitched:
            needed.append((stitched_cfg.get("repo_id"), [stitched_cfg.get("filename")]))
        if not all(repo for repo, _ in needed) or (base_needed and not recon_cfg.get("repo_id")):
            raise UserInputError(f"preset {preset['name']!r} names no repo for each of the parts {sorted(parts)}")
        folders = hub.require(needed, local_files_only=options.local_files_only, what=f"preset {preset['name']!r}")
        out.sources.update({k: v for k, v in (("generator", gen_cfg), ("recon", recon_cfg),
                                               ("stitched", stitched_cfg)) if v})
        if whole_generator:
            out.set_generator(self._generator(preset, options))
        elif "vae" in parts:
            from vist3a.video.vae_adapters import load_video_vae

            out.vae = load_video_vae(str(folders[gen_cfg["repo_id"]]))[0]
        if base_needed:
            base = self._recon(recon_cfg, options)
            out.recon = base if "recon" in parts else None
            if "stitched" in parts and not own_stitched:
                out.stitched = self._stitched(base, folders[stitched_cfg["repo_id"]], stitched_cfg, options)
        if user_decoder is not None:
            out.sources["stitched"] = str(user_decoder)
            out.stitched = _place_decoder(_user_decoder(user_decoder, preset, out.vae), options)
        if "scorer" in parts:
            from vist3a.alignment.scorers import load_scorer

            dtype = options.scorer_dtype or (torch.bfloat16 if options.device.type == "cuda" else torch.float32)
            out.scorer = lambda name: load_scorer(name, options.device, dtype)

    @staticmethod
    def _generator(preset: dict[str, Any], options: LoadOptions) -> Any:
        generator = generator_class(preset).from_pretrained(preset["generator"]["repo_id"], dtype=options.dtype,
                                                            device=options.device, offload=options.offload,
                                                            local_files_only=True)
        lora_cfg = preset.get("lora")
        if lora_cfg and options.load_lora:
            from vist3a.video.lora import load_lora

            load_lora(generator.transformer, lora_cfg["repo_id"], subfolder=lora_cfg["subfolder"], merge=True,
                      local_files_only=True)
        elif lora_cfg:
            logger.info("the preset's released LoRA %s is not loaded (a fresh LoRA is trained)", lora_cfg)
        return generator

    @staticmethod
    def _recon(recon_cfg: dict[str, Any], options: LoadOptions) -> torch.nn.Module:
        from vist3a.recon import anysplat_from_pretrained, mvdust3r_from_pretrained, vggt_from_pretrained

        kind = options.recon_model or recon_cfg.get("model", "anysplat")
        loaders = {"anysplat": anysplat_from_pretrained, "vggt": vggt_from_pretrained}
        if kind in SELF_RESOLVING_RECON:
            return mvdust3r_from_pretrained(recon_cfg["repo_id"], kind, local_files_only=options.local_files_only)
        if kind not in loaders:
            choices = sorted(loaders) + list(SELF_RESOLVING_RECON)
            raise UserInputError(f"3D model must be one of {choices}, got {kind!r}")
        return loaders[kind](recon_cfg["repo_id"], local_files_only=True)

    @staticmethod
    def _stitched(base: torch.nn.Module, folder: Path, cfg: dict[str, Any], options: LoadOptions) -> torch.nn.Module:
        from vist3a.stitching.decoder import StitchedDecoder

        decoder = StitchedDecoder.from_official_checkpoint(
            base, folder / cfg["filename"], layer=cfg["layer"], spec=cfg["spec"],
            lora_alpha=float(cfg.get("lora_alpha", 32)),
        )
        return _place_decoder(decoder, options)


def decoder_dtype(options: LoadOptions) -> torch.dtype:
    """A stitched decoder's dtype: the run's on CUDA (bf16 for the real presets: the release-size AnySplat tail
    decodes in 0.24 s there against 1.29 s in float32, docs/benchmarks.md), float32 on the CPU."""
    return options.dtype if options.device.type == "cuda" and options.dtype is not None else torch.float32


def _place_decoder(decoder: torch.nn.Module, options: LoadOptions) -> torch.nn.Module:
    """A stitched decoder on the device, in :func:`decoder_dtype`, in eval mode."""
    # plain nn.Module.to: diffusers' override warns about an (empty) list of modules to keep in float32
    return torch.nn.Module.to(decoder, device=options.device, dtype=decoder_dtype(options)).eval()


def user_stitched_path(preset: dict[str, Any]) -> Path:
    """The stitched-decoder folder a preset's ``stitched.folder`` names (``~`` and ``$VARS`` expanded): a
    ``vist3a stitch train`` ``final/`` folder, for pairs whose stitching the release does not ship (Wan 2.2,
    CogVideoX, MV-DUSt3R). Checked before anything is downloaded."""
    import os

    raw = preset["stitched"].get("folder")
    folder = Path(os.path.expandvars(os.path.expanduser(str(raw)))) if raw else None
    if folder is None or not (folder / "config.json").is_file():
        vae = preset.get("generator", {}).get("repo_id", "<the generator repo>")
        where = f" ({raw} -> {folder} has no config.json)" if raw else " (stitched.folder is not set)"
        raise UserInputError(
            f"preset {preset['name']!r} needs your stitched decoder{where}: no released one exists; train one with "
            f"`vist3a stitch search --vae {vae} ...` then `vist3a stitch train ...` and set stitched.folder (or the "
            "variable it names) in a copy of this preset to the run's final/ folder, then pass --preset <that .json>"
        )
    return folder


def _user_decoder(folder: Path, preset: dict[str, Any], vae: Any) -> torch.nn.Module:
    """The user's stitched decoder, checked against the latents of the preset's VAE (when it is loaded)."""
    from vist3a.stitching.decoder import StitchedDecoder

    decoder = StitchedDecoder.from_pretrained(folder)
    if vae is not None:
        from vist3a.video.vae_adapters import vae_adapter

        video, cfg = vae_adapter(vae), decoder.config
        if (cfg.latent_channels, cfg.temporal_factor) != (video.latent_channels, video.temporal_factor):
            raise UserInputError(
                f"the stitched decoder in {folder} takes {cfg.latent_channels}-channel latents (temporal factor "
                f"{cfg.temporal_factor}), the {video.name} VAE of preset {preset['name']!r} gives "
                f"{video.latent_channels} (factor {video.temporal_factor}): stitch it on this VAE"
            )
    return decoder
