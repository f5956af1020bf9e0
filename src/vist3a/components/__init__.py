"""One registry of component providers: the answer to "which models does this preset mean?".

Every command (``generate``, ``reconstruct``, ``stitch``, ``align``, ``nano eval``) asks :func:`load_components`
for the *parts* it needs of a preset:

============== ===============================================================================================
part           what comes back
============== ===============================================================================================
``vae``        a diffusers video VAE (fp32) that :func:`vist3a.video.vae_adapters.vae_adapter` knows
``transformer`` ``diffusers.WanTransformer3DModel`` (``CogVideoXTransformer3DModel`` for CogVideoX presets)
``text_encoder`` :class:`vist3a.video.text.HFTextEncoder`
``scheduler``  a diffusers flow-matching scheduler
``recon``      the plain 3D model (:class:`~vist3a.recon.AnySplat` / :class:`~vist3a.recon.VGGT`)
``stitched``   :class:`~vist3a.stitching.StitchedDecoder` (raw latents [+ frames] -> 3D)
``scorer``     ``scorer_for(name) -> ImageTextScorer`` (the image-text models of the reward mix)
============== ===============================================================================================

When all four generator parts are asked for, :attr:`Components.generator` also holds them assembled as a
:class:`~vist3a.video.WanGenerator` (or its subclass ``CogVideoXGenerator``; placement/offload applied). A
*provider* knows how to load the parts of one family of presets; the preset names its provider (``"provider"``;
default ``"hub"`` for presets with repo ids, ``"folder"`` for saved pipelines). Built-ins: ``tiny-random``,
``nano`` (registered by module path, so this layer never imports the nano package), ``hub`` and ``folder``.
Adding a model = :func:`register_provider` + a preset.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from vist3a.errors import UserInputError
from vist3a.presets import load_preset

logger = logging.getLogger(__name__)

PARTS = ("vae", "transformer", "text_encoder", "scheduler", "recon", "stitched", "scorer")
GENERATOR_PARTS = frozenset({"vae", "transformer", "text_encoder", "scheduler"})
#: What a text-to-scene pipeline needs.
PIPELINE_PARTS = GENERATOR_PARTS | {"stitched"}


@dataclass
class LoadOptions:
    """How to load: placement, precision, the offline rule, and per-command extras.

    ``random_fallback``: a built-in provider whose weights are not installed may build models of the same sizes
    with random weights (the stitching and alignment stages use this for smoke runs; logged as a warning and
    recorded as ``sources["weights"] = "random-init"``); otherwise a missing install is a ``UserInputError``.
    ``recon_model``: the 3D model family when the preset allows a choice (``anysplat`` / ``vggt``).
    ``text_max_length``: token length of the text encoder of a random built-in. ``load_lora``: merge the preset's
    released LoRA into the transformer (alignment trains a fresh one instead).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype | None = None
    offload: str = "none"
    local_files_only: bool | None = None
    seed: int = 0
    random_fallback: bool = False
    recon_model: str | None = None
    text_max_length: int | None = None
    scorer_dtype: torch.dtype | None = None
    load_lora: bool = True


@dataclass
class Components:
    """The loaded parts of a preset (``None`` for parts not asked for) and where each came from."""

    preset: dict[str, Any]
    vae: Any = None
    transformer: Any = None
    text_encoder: Any = None
    scheduler: Any = None
    recon: Any = None
    stitched: Any = None
    scorer: Callable[[str], Any] | None = None
    generator: Any = None
    sources: dict[str, Any] = field(default_factory=dict)

    def set_generator(self, generator: Any) -> None:
        """Record an assembled :class:`~vist3a.video.WanGenerator` and its four parts."""
        self.generator = generator
        self.vae, self.transformer = generator.vae, generator.transformer
        self.text_encoder, self.scheduler = generator.text_encoder, generator.scheduler


class Provider(Protocol):
    """Loads ``parts`` of ``preset`` into ``components`` (it may fill more parts than asked, never fewer)."""

    def load(self, preset: dict[str, Any], parts: frozenset[str], options: LoadOptions,
             components: Components) -> None: ...


_PROVIDERS: dict[str, Provider | str] = {
    "tiny-random": "vist3a.components.builtin:TinyRandomProvider",
    "hub": "vist3a.components.builtin:HubProvider",
    "folder": "vist3a.components.builtin:FolderProvider",
    "nano": "vist3a.nano.provider:NanoProvider",
}


def register_provider(name: str, provider: Provider | str) -> None:
    """Register ``provider`` (an object, or ``"module:Class"`` imported on first use) under ``name``."""
    _PROVIDERS[name] = provider


def available_providers() -> list[str]:
    return sorted(_PROVIDERS)


def get_provider(name: str) -> Provider:
    """The provider registered as ``name`` (imported and instantiated on first use)."""
    if name not in _PROVIDERS:
        raise UserInputError(f"unknown component provider {name!r}; registered: {', '.join(available_providers())}")
    provider = _PROVIDERS[name]
    if isinstance(provider, str):
        module, _, attr = provider.partition(":")
        provider = getattr(importlib.import_module(module), attr)()
        _PROVIDERS[name] = provider
    return provider


def provider_name(preset: dict[str, Any]) -> str:
    """The provider a preset names (``builtin`` is the older spelling), ``folder`` for saved pipelines, else ``hub``."""
    name = preset.get("provider") or preset.get("builtin")
    if name:
        return str(name)
    return "folder" if "folder" in preset else "hub"


def resolve_preset(preset: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A preset dict from a name (old names accepted with a deprecation message), a preset file or a saved folder."""
    if isinstance(preset, dict):
        return preset
    path = Path(preset)
    if path.is_dir():
        if not (path / "preset.json").is_file():
            raise UserInputError(f"'{path}' is not a vist3a pipeline folder (no preset.json)")
        data = load_preset(path / "preset.json")
        data["folder"] = str(path)
        return data
    return load_preset(preset)


def load_components(
    preset: str | Path | dict[str, Any],
    parts: Iterable[str] = PIPELINE_PARTS,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    offload: str = "none",
    local_files_only: bool | None = None,
    **options: Any,
) -> Components:
    """Load ``parts`` (see :data:`PARTS`) of ``preset`` through its provider; every command comes through here.

    ``local_files_only=None`` follows ``HF_HUB_OFFLINE`` (:mod:`vist3a.hub`); a preset whose weights are
    missing raises one :class:`UserInputError` naming every missing repo. ``options``: fields of
    :class:`LoadOptions` (``seed``, ``random_fallback``, ``recon_model``, ...).
    """
    data = resolve_preset(preset)
    wanted = frozenset(parts)
    unknown = wanted - set(PARTS)
    if unknown:
        raise ValueError(f"unknown component parts {sorted(unknown)}; choose from {list(PARTS)}")
    opts = LoadOptions(device=torch.device(device), dtype=dtype, offload=offload,
                       local_files_only=local_files_only, **options)
    components = Components(preset=data, sources={"preset": data["name"]})
    get_provider(provider_name(data)).load(data, wanted, opts, components)
    missing = [p for p in wanted if getattr(components, p) is None]
    if missing:
        raise UserInputError(f"preset {data['name']!r} provides no {', '.join(sorted(missing))}")
    return components


def recon_preset(kind: str, weights: str | None) -> str | dict[str, Any]:
    """The preset behind ``vist3a reconstruct --model KIND --weights WEIGHTS``: a preset name or file as every
    command accepts (``tiny-random``, ``nano``, ...), else a one-part ``hub`` preset for a repo id or folder
    (``None``: the official release of ``kind``)."""
    from vist3a.presets import DEPRECATED_NAMES, available_presets
    from vist3a.recon.hub import DEFAULT_REPOS

    if weights is not None and (weights in available_presets() or weights in DEPRECATED_NAMES
                                or (weights.endswith(".json") and Path(weights).is_file())):
        return weights
    repo = weights or DEFAULT_REPOS.get(kind, "")
    return {"name": repo, "provider": "hub", "recon": {"model": kind, "repo_id": repo}, "defaults": {}}


def stitching_sizes(preset: dict[str, Any]) -> dict[str, Any]:
    """The preset's ``stitching`` block (VAE / recon input sizes, frames, view counts) with its checks."""
    block = preset.get("stitching")
    if not block:
        raise UserInputError(f"preset {preset['name']!r} has no 'stitching' block (vae_size, recon_size, num_frames, "
                             "views); add one or choose another preset")
    for key in ("vae_size", "recon_size", "num_frames", "views"):
        if key not in block:
            raise UserInputError(f"preset {preset['name']!r}: its 'stitching' block lacks {key!r}")
    return block


def single_scorer(scorer: Any, label: str) -> Callable[[str], Any]:
    """``scorer_for`` of a preset with one image-text model: every reward scorer name maps to it."""
    seen: set[str] = set()

    def scorer_for(name: str) -> Any:
        if name not in seen:
            seen.add(name)
            logger.info("reward scorer %r -> the %s image-text model", name, label)
        return scorer

    return scorer_for


__all__ = [
    "GENERATOR_PARTS", "PARTS", "PIPELINE_PARTS", "Components", "LoadOptions", "Provider", "available_providers",
    "get_provider", "load_components", "provider_name", "recon_preset", "register_provider", "resolve_preset",
    "single_scorer", "stitching_sizes",
]
