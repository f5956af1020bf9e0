"""Loading VGGT / AnySplat weights: official Hub repos or folders, and vist3a-format folders.

Accepted sources (``repo_id_or_dir``):

* an official Hub repo (``facebook/VGGT-1B``, ``lhjiang/anysplat``) or a local copy of one: an optional
  ``config.json`` with the official constructor arguments and a weight file (``model.safetensors``,
  ``model.pt``, ``pytorch_model.bin`` or ``model.pth``) with official key names;
* a folder written by ``model.save_pretrained(folder)`` (vist3a config with ``_class_name`` and
  ``diffusion_pytorch_model.safetensors``).

Weights are loaded strictly; a missing download in offline mode raises :class:`~vist3a.errors.UserInputError`
naming the repo id.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vist3a.errors import UserInputError
from vist3a.hub import looks_like_path, resolve_file
from vist3a.recon.anysplat import AnySplat
from vist3a.recon.convert import check_state_dict, config_from_official, load_official_state_dict
from vist3a.recon.vggt import VGGT

logger = logging.getLogger(__name__)

OFFICIAL_WEIGHT_FILES = ("model.safetensors", "model.pt", "pytorch_model.bin", "model.pth")
VIST3A_WEIGHT_FILE = "diffusion_pytorch_model.safetensors"
CONFIG_FILE = "config.json"
DEFAULT_REPOS = {"vggt": "facebook/VGGT-1B", "anysplat": "lhjiang/anysplat", "mvdust3r": "Zhenggang/MV-DUSt3R",
                 "mvdust3r-plus": "Zhenggang/MV-DUSt3R"}
MODEL_CLASSES: dict[str, type[nn.Module]] = {"vggt": VGGT, "anysplat": AnySplat}


# ----------------------------------------------------------------------------- file resolution
def _download(
    repo_id: str, filename: str, local_files_only: bool | None, revision: str | None, cache_dir: str | None
) -> Path | None:
    """One file of a Hub repo (``None`` if the repo has no such file), through :mod:`vist3a.hub`."""
    return resolve_file(repo_id, filename, local_files_only=local_files_only, revision=revision,
                        cache_dir=cache_dir, missing_ok=True, what=f"weights of {repo_id!r}")


def _resolve_files(
    source: str | os.PathLike, local_files_only: bool | None, revision: str | None, cache_dir: str | None
) -> tuple[Path | None, Path, str]:
    """``(config.json or None, weight file, "official" | "vist3a")`` for a folder or Hub repo id."""
    path = Path(source)
    if path.is_dir():
        config = path / CONFIG_FILE
        config = config if config.is_file() else None
        for name in (VIST3A_WEIGHT_FILE, *OFFICIAL_WEIGHT_FILES):
            if (path / name).is_file():
                return config, path / name, "vist3a" if name == VIST3A_WEIGHT_FILE else "official"
        raise UserInputError(
            f"folder {path} has no weight file (expected one of {[VIST3A_WEIGHT_FILE, *OFFICIAL_WEIGHT_FILES]})"
        )
    text = str(source)
    if looks_like_path(source) or text.count("/") != 1:
        raise UserInputError(f"weights {text!r}: no such folder, and not a Hugging Face repo id (owner/name)")
    config = _download(text, CONFIG_FILE, local_files_only, revision, cache_dir)
    for name in (VIST3A_WEIGHT_FILE, *OFFICIAL_WEIGHT_FILES):
        weights = _download(text, name, local_files_only, revision, cache_dir)
        if weights is not None:
            return config, weights, "vist3a" if name == VIST3A_WEIGHT_FILE else "official"
    raise UserInputError(f"Hugging Face repo {text!r} has none of the weight files {list(OFFICIAL_WEIGHT_FILES)}")


def load_weight_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch pickle (tensors only; a ``{"model": ...}`` wrapper is undone)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(data, dict) and set(data) == {wrapper}:
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserInputError(f"{path} does not hold a state dict of tensors")
    return data


# ----------------------------------------------------------------------------- model construction
def _empty_model(cls: type[nn.Module], kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate without allocating parameters (buffers stay real); weights are assigned afterwards."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return cls(**kwargs)


def _official_kwargs(kind: str, config: dict) -> dict[str, Any]:
    if kind == "anysplat" and not any(k == "encoder_cfg" or k.startswith("AnySplat.encoder_cfg") for k in config):
        config = {"encoder_cfg": {}, **config}
    got, kwargs = config_from_official(config)
    if got != kind:
        raise UserInputError(f"the official config describes a {got} model, not {kind}")
    return kwargs


def _from_pretrained(
    kind: str,
    source: str | os.PathLike,
    *,
    local_files_only: bool | None,
    revision: str | None,
    cache_dir: str | None,
    device: str | torch.device | None,
    dtype: torch.dtype | None,
    overrides: dict[str, Any],
    ignore_prefixes: tuple[str, ...],
) -> nn.Module:
    cls = MODEL_CLASSES[kind]
    config_path, weights_path, layout = _resolve_files(source, local_files_only, revision, cache_dir)
    config = json.loads(config_path.read_text()) if config_path is not None else {}
    state_dict = load_weight_file(weights_path)
    if layout == "vist3a":
        name = config.get("_class_name")
        if name != cls.__name__:
            raise UserInputError(f"{source} holds a {name!r} model, not {cls.__name__}")
        kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
        kwargs.update(overrides)
        model = _empty_model(cls, kwargs)
        check_state_dict(model, state_dict, f"{weights_path}")
        model.load_state_dict(state_dict, strict=True, assign=True)
    else:
        kwargs = _official_kwargs(kind, config)
        kwargs.update(overrides)
        model = _empty_model(cls, kwargs)
        load_official_state_dict(model, kind, state_dict, ignore_prefixes=ignore_prefixes, assign=True)
    logger.info("loaded %s weights from %s", cls.__name__, weights_path)
    # nn.Module.to: diffusers' ModelMixin.to warns about float32-pinned modules on every dtype cast (there are none)
    return nn.Module.to(model, device=device, dtype=dtype or torch.float32).eval()


def vggt_from_pretrained(
    repo_id_or_dir: str | os.PathLike = DEFAULT_REPOS["vggt"],
    *,
    local_files_only: bool | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    load_track_head: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> VGGT:
    """Load VGGT (default: ``facebook/VGGT-1B``) in eval mode, float32 unless ``dtype``.

    ``load_track_head``: also build and load the track head (the checkpoint must have it); otherwise its
    ``track_head.*`` weights are skipped.
    """
    heads = ("camera", "depth", "point", "track") if load_track_head else ("camera", "depth", "point")
    ignore = () if load_track_head else ("track_head.",)
    return _from_pretrained("vggt", repo_id_or_dir, overrides={"heads": heads}, ignore_prefixes=ignore,
                            **_load_kwargs(local_files_only, revision, cache_dir, device, dtype))


def anysplat_from_pretrained(
    repo_id_or_dir: str | os.PathLike = DEFAULT_REPOS["anysplat"],
    *,
    local_files_only: bool | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> AnySplat:
    """Load AnySplat (default: ``lhjiang/anysplat``) in eval mode, float32 unless ``dtype``.

    ``overrides``: AnySplat config values to change (e.g. ``voxel_size=0.005``, ``voxelize=False``).
    """
    return _from_pretrained("anysplat", repo_id_or_dir, overrides=overrides, ignore_prefixes=(),
                            **_load_kwargs(local_files_only, revision, cache_dir, device, dtype))


def _load_kwargs(local_files_only: bool | None, revision: str | None, cache_dir: str | None,
                 device: str | torch.device | None, dtype: torch.dtype | None) -> dict[str, Any]:
    """The loading options both public loaders pass through to :func:`_from_pretrained`."""
    return {"local_files_only": local_files_only, "revision": revision, "cache_dir": cache_dir, "device": device,
            "dtype": dtype}


# ----------------------------------------------------------------------------- tiny random models
def tiny_config(kind: str) -> dict[str, Any]:
    """Kwargs of a tiny model (embed 32, 4 aggregator layers, 112 px positional grid) for tests and demos."""
    aggregator = {
        "img_size": 112,
        "embed_dim": 32,
        "depth": 4,
        "num_heads": 2,
        "patch_embed": {"depth": 2, "num_heads": 2},
    }
    dpt = {"features": 16, "out_channels": [8, 16, 32, 32], "intermediate_layer_idx": [0, 1, 2, 3]}
    camera = {"trunk_depth": 1, "num_heads": 2}
    if kind == "vggt":
        return {"aggregator_config": aggregator, "camera_config": camera, "depth_config": dpt, "point_config": dpt}
    if kind == "anysplat":
        return {
            "aggregator_config": aggregator,
            "camera_config": camera,
            "depth_config": dpt,
            "gaussian_config": dpt,
            "intermediate_layer_idx": (0, 1, 2, 3),
            "sh_degree": 1,
            "voxel_size": 0.05,
        }
    raise ValueError(f"`kind` must be one of {sorted(MODEL_CLASSES)}, got {kind!r}")


def random_tiny_model(kind: str, seed: int = 0, **overrides: Any) -> nn.Module:
    """A tiny randomly initialised VGGT / AnySplat / MV-DUSt3R(+) (no download), in eval mode; the global RNG is
    left untouched."""
    if kind in ("mvdust3r", "mvdust3r-plus"):
        from vist3a.recon.mvdust3r_hub import random_tiny_mvdust3r

        return random_tiny_mvdust3r(kind, seed, **overrides)
    kwargs = {**tiny_config(kind), **overrides}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODEL_CLASSES[kind](**kwargs)
    return model.eval()
