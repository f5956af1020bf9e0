"""Turn a preset (plain data) into loaded components: ``(WanGenerator, StitchedDecoder)``.

Kept apart from :mod:`vist3a.pipeline` so that the pipeline reads as its stages; this module is the only
place that knows how each kind of preset is materialised (built-in nano / tiny-random models, a saved
pipeline folder, or Hub repos of the real release).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)


def load_components(
    preset: dict[str, Any],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    local_files_only: bool | None = None,
    offload: str = "none",
) -> tuple[Any, torch.nn.Module]:
    """``(generator, decoder)`` for ``preset``; see the module docstring for the kinds of preset."""
    builtin = preset.get("builtin")
    if builtin is not None:
        loaders = {"tiny-random": _tiny_random, "nano": _nano}
        if builtin not in loaders:
            raise UserInputError(f"preset {preset['name']!r} names an unknown built-in model set {builtin!r}")
        generator, decoder = loaders[builtin](preset, device, dtype or torch.float32)
        return (generator.set_offload(offload) if offload != "none" else generator), decoder
    if "folder" in preset:
        return _folder(Path(preset["folder"]), device, dtype, offload)
    return _hub(preset, device, dtype, local_files_only, offload)


def _tiny_random(preset: dict[str, Any], device: torch.device, dtype: torch.dtype) -> tuple[Any, torch.nn.Module]:
    from vist3a.recon.hub import random_tiny_model
    from vist3a.stitching.decoder import StitchedDecoder
    from vist3a.video.tiny import build_tiny_generator

    seed = int(preset.get("seed", 0))
    vae = preset.get("generator", {}).get("vae", "wan2.1")  # the tiny generator's family
    generator = build_tiny_generator(seed, device=device, dtype=dtype, vae=vae)
    recon = random_tiny_model(preset.get("recon", {}).get("model", "anysplat"), seed=seed)
    stitched = preset["stitched"]
    video = generator.vae_adapter
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = StitchedDecoder.from_recon(recon, stitched["layer"], stitched["spec"],
                                             latent_channels=video.latent_channels,
                                             temporal_factor=video.temporal_factor)
    decoder = decoder.to(device)
    if dtype != torch.float32:
        decoder = torch.nn.Module.to(decoder, dtype=dtype)  # every module may be half (no fp32-keep list)
    return generator, decoder.eval()


def _nano(preset: dict[str, Any], device: torch.device, dtype: torch.dtype) -> tuple[Any, torch.nn.Module]:
    """The weights shipped inside the package (sha256-verified against their manifest)."""
    from vist3a.nano.weights import load_nano_component, load_nano_generator, nano_available

    if not nano_available():
        raise UserInputError(
            "the nano weights are not installed in this copy of vist3a (src/vist3a/nano/weights/); train and "
            "install them with `vist3a nano train all` + `vist3a nano install`, or use --preset tiny-random"
        )
    generator = load_nano_generator(device=device, dtype=dtype)
    decoder = load_nano_component("stitch", device=device, dtype=torch.float32)
    return generator, decoder.eval()


def _folder(
    folder: Path, device: torch.device, dtype: torch.dtype | None, offload: str
) -> tuple[Any, torch.nn.Module]:
    from vist3a.stitching.decoder import StitchedDecoder
    from vist3a.video.generator import WanGenerator

    index = folder / "generator" / "model_index.json"
    is_cogvideox = index.is_file() and json.loads(index.read_text()).get("_class_name") == "CogVideoXPipeline"
    cls = WanGenerator
    if is_cogvideox:
        cls = _generator_class({"name": str(folder), "generator": {"family": "cogvideox"}})
    generator = cls.from_pretrained(
        folder / "generator", dtype=dtype, device=device, offload=offload, local_files_only=True
    )
    decoder = StitchedDecoder.from_pretrained(folder / "decoder")
    return generator, decoder.to(device).eval()


def _hub(
    preset: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype | None,
    local_files_only: bool | None,
    offload: str,
) -> tuple[Any, torch.nn.Module]:
    """The release's components from their Hub repos (or the local cache when offline); a preset whose
    ``stitched`` names a ``folder`` (a ``vist3a stitch train`` result: no released stitched weights exist for Wan 2.2
    or CogVideoX) loads the decoder from there, and ``generator.family`` picks the generator class."""
    if "folder" in preset["stitched"]:
        return _hub_with_decoder_folder(preset, device, dtype, local_files_only, offload)
    from vist3a.recon.hub import anysplat_from_pretrained
    from vist3a.stitching.decoder import StitchedDecoder
    from vist3a.video._hub import resolve_pretrained_dir
    from vist3a.video.generator import WanGenerator
    from vist3a.video.lora import load_lora

    gen_cfg, lora_cfg = preset["generator"], preset.get("lora")
    recon_cfg, stitched_cfg = preset["recon"], preset["stitched"]
    needed = [
        (gen_cfg["repo_id"], None),
        (recon_cfg["repo_id"], None),
        (stitched_cfg["repo_id"], [stitched_cfg["filename"]]),
    ]
    if lora_cfg:
        needed.append((lora_cfg["repo_id"], [f"{lora_cfg['subfolder']}/*"]))
    missing, resolved = [], {}
    for repo_id, patterns in needed:  # check every repo first: one error naming all that are missing
        try:
            resolved[(repo_id, tuple(patterns or ()))] = resolve_pretrained_dir(
                repo_id, allow_patterns=patterns, local_files_only=local_files_only, what=preset["name"]
            )
        except UserInputError:
            missing.append(repo_id)
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        raise UserInputError(
            f"preset {preset['name']!r} needs weights that are not available here: {names}. Download them on a "
            f"machine with internet (`hf download <repo>`) and copy the Hugging Face cache, or unset HF_HUB_OFFLINE"
        )
    generator = WanGenerator.from_pretrained(
        gen_cfg["repo_id"], dtype=dtype, device=device, offload=offload, local_files_only=True
    )
    if lora_cfg:
        load_lora(generator.transformer, lora_cfg["repo_id"], subfolder=lora_cfg["subfolder"], merge=True,
                  local_files_only=True)
    base = anysplat_from_pretrained(recon_cfg["repo_id"], local_files_only=True)
    stitched_dir = resolved[(stitched_cfg["repo_id"], (stitched_cfg["filename"],))]
    decoder = StitchedDecoder.from_official_checkpoint(
        base,
        stitched_dir / stitched_cfg["filename"],
        layer=stitched_cfg["layer"],
        spec=stitched_cfg["spec"],
        lora_alpha=float(stitched_cfg.get("lora_alpha", 32)),
    )
    del base
    decoder_dtype = dtype if device.type == "cuda" else torch.float32
    # plain nn.Module.to: diffusers' override warns about an (empty) list of modules to keep in float32
    return generator, torch.nn.Module.to(decoder, device=device, dtype=decoder_dtype).eval()


def _generator_class(preset: dict[str, Any]) -> Any:
    from vist3a.video.cogvideox import CogVideoXGenerator
    from vist3a.video.generator import WanGenerator

    family = preset["generator"].get("family", "wan")
    classes = {"wan": WanGenerator, "cogvideox": CogVideoXGenerator}
    if family not in classes:
        raise UserInputError(f"preset {preset['name']!r}: generator family must be one of {list(classes)}, "
                             f"got {family!r}")
    return classes[family]


def _hub_with_decoder_folder(
    preset: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype | None,
    local_files_only: bool | None,
    offload: str,
) -> tuple[Any, torch.nn.Module]:
    """A Hub generator + the user's stitched decoder folder (``preset["stitched"]["folder"]``)."""
    from vist3a.stitching.decoder import StitchedDecoder

    folder = preset["stitched"]["folder"]
    if not folder or not (Path(folder) / "config.json").is_file():
        raise UserInputError(
            f"preset {preset['name']!r} needs your stitched decoder (no released one exists): train one with "
            f"`vist3a stitch search|train --vae {preset['generator']['repo_id']} ...`, copy this preset to a .json "
            f"file, set stitched.folder to the run's final/ folder and pass --preset <that .json>"
            + (f" (now: {folder!r} has no config.json)" if folder else "")
        )
    generator = _generator_class(preset).from_pretrained(
        preset["generator"]["repo_id"], dtype=dtype, device=device, offload=offload, local_files_only=local_files_only
    )
    decoder = StitchedDecoder.from_pretrained(folder)
    video = generator.vae_adapter
    if (decoder.config.latent_channels, decoder.config.temporal_factor) != (video.latent_channels,
                                                                          video.temporal_factor):
        raise UserInputError(
            f"the stitched decoder in {folder} takes {decoder.config.latent_channels}-channel latents (temporal factor "
            f"{decoder.config.temporal_factor}), the {video.name} VAE of {preset['generator']['repo_id']} gives "
            f"{video.latent_channels} (factor {video.temporal_factor}): stitch it on this VAE"
        )
    decoder_dtype = dtype if device.type == "cuda" else torch.float32
    return generator, torch.nn.Module.to(decoder, device=device, dtype=decoder_dtype).eval()
