"""Loading MV-DUSt3R / MV-DUSt3R+ weights: release checkpoints, vist3a folders, Hub repos, tiny random models.

Accepted ``source`` values of :func:`mvdust3r_from_pretrained`:

* a checkpoint file: the release's ``MVD.pth`` / ``MVDp_s1.pth`` / ``MVDp_s2.pth`` (``torch.save({"model": ...,
  "args": ...})``), or a ``.safetensors`` / ``.pt`` / ``.pth`` state dict with the official key names;
* a folder: written by ``model.save_pretrained`` (vist3a config + ``diffusion_pytorch_model.safetensors``), or
  holding one official checkpoint (the variant's release file name first);
* a Hub repo id (``owner/name``): a vist3a folder layout, else the variant's release file
  (``checkpoints/MVD.pth`` or ``checkpoints/MVDp_s2.pth``, the layout of the release repo ``Zhenggang/MV-DUSt3R``);
* ``None``: the release repo and file of the variant.

The model configuration of an official checkpoint is read from the state dict's shapes (widths, depths, multi-path,
heads); head counts come from the checkpoint's ``args.model`` constructor string when present, else ``width / 64``
(the released models). Loading is strict: missing, unexpected and mis-shaped keys are named.

Licence: the released MV-DUSt3R weights are CC BY-NC 4.0 (non-commercial use only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vist3a.errors import UserInputError
from vist3a.recon.hub import DEFAULT_REPOS
from vist3a.recon.mvdust3r import MVDust3r

logger = logging.getLogger(__name__)

RELEASE_REPO = DEFAULT_REPOS["mvdust3r"]
RELEASE_FILES = {"mvdust3r": "checkpoints/MVD.pth", "mvdust3r-plus": "checkpoints/MVDp_s2.pth"}
VARIANTS = tuple(RELEASE_FILES)
LICENCE = "CC BY-NC 4.0 (non-commercial use only)"
VIST3A_WEIGHTS = "diffusion_pytorch_model.safetensors"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UserInputError(f"MV-DUSt3R variant must be one of {list(VARIANTS)}, got {variant!r}")


# ----------------------------------------------------------------------------- reading files
def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """``(state_dict, constructor string or None)`` of a release checkpoint or a plain state dict file.

    Pickles are read with ``weights_only=True`` (tensors, containers and the ``argparse.Namespace`` of the
    training arguments only; no code runs).
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path), None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling raises many types
        raise UserInputError(
            f"{path}: cannot read as a PyTorch checkpoint with weights_only=True ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); if you trust the file, save its state dict once with "
            f"torch.save(torch.load(path, weights_only=False)['model'], 'model.pth') and pass that"
        ) from None
    constructor = None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        args = data.get("args")
        constructor = getattr(args, "model", None) if args is not None else None
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserInputError(f"{path} does not hold a state dict of tensors")
    return data, constructor if isinstance(constructor, str) else None


def config_from_state_dict(state_dict: dict[str, torch.Tensor], constructor: str | None = None) -> dict[str, Any]:
    """:class:`MVDust3r` kwargs that fit an official state dict (see the module docstring)."""

    def count(prefix: str) -> int:
        ids = {int(m.group(1)) for k in state_dict if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
        return max(ids) + 1 if ids else 0

    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise UserInputError(f"the checkpoint has no {key!r}: not an MV-DUSt3R state dict")
        return tuple(state_dict[key].shape)

    def arg(name: str, default: int) -> int:
        match = re.search(rf"\b{name}\s*=\s*(\d+)", constructor or "")
        return int(match.group(1)) if match else default

    enc_dim, _, patch, _ = shape("patch_embed.proj.weight")
    dec_dim = shape("decoder_embed.weight")[0]
    kwargs: dict[str, Any] = {
        "patch_size": patch,
        "enc_embed_dim": enc_dim,
        "enc_depth": count("enc_blocks"),
        "enc_num_heads": arg("enc_num_heads", max(1, enc_dim // 64)),
        "dec_embed_dim": dec_dim,
        "dec_depth": count("dec_blocks"),
        "dec_num_heads": arg("dec_num_heads", max(1, dec_dim // 64)),
        "mlp_ratio": shape("enc_blocks.0.mlp.fc1.weight")[0] / enc_dim,
        "multi_path": count("dec_same_view_blocks") > 0,
        "gaussian_head": "downstream_GS_head.0.norm.weight" in state_dict,
        "point_skip": "downstream_head1.skip_proj.0.conv.weight" in state_dict,
    }
    if kwargs["multi_path"]:
        kwargs["n_ref"] = arg("n_ref", 4)
    if kwargs["gaussian_head"]:
        rgb_out, kwargs["gs_mlp_dim"] = shape("downstream_GS_head.0.mlp_rgb.2.weight")
        kwargs["sh_degree"] = round((rgb_out / (3 * patch * patch)) ** 0.5) - 1
    if kwargs["point_skip"]:
        kwargs["skip_dim"] = shape("downstream_head1.skip_proj.0.conv.weight")[0]
    return kwargs


def _load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    from vist3a.recon.convert import check_state_dict

    try:
        check_state_dict(model, state_dict, what)
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    model.load_state_dict(state_dict, strict=True, assign=True)


def _empty(kwargs: dict[str, Any]) -> MVDust3r:
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return MVDust3r(**kwargs)


def load_official_checkpoint(path: Path, variant: str | None = None) -> MVDust3r:
    """A release checkpoint (or official-key state dict) -> :class:`MVDust3r` (CPU, float32, eval)."""
    state_dict, constructor = read_checkpoint(path)
    if not any(k.startswith("dec_blocks2.") for k in state_dict):  # DUSt3R checkpoints share the decoder
        state_dict.update({k.replace("dec_blocks.", "dec_blocks2.", 1): v for k, v in list(state_dict.items())
                           if k.startswith("dec_blocks.")})
    kwargs = config_from_state_dict(state_dict, constructor)
    if variant is not None and kwargs["multi_path"] != (variant == "mvdust3r-plus"):
        raise UserInputError(
            f"{path} holds an {'MV-DUSt3R+' if kwargs['multi_path'] else 'MV-DUSt3R'} checkpoint, but "
            f"{variant!r} was asked for; use --model {'mvdust3r-plus' if kwargs['multi_path'] else 'mvdust3r'}"
        )
    model = _empty(kwargs)
    _load_strict(model, state_dict, f"checkpoint {path}")
    return model


def _load_vist3a_folder(config_path: Path, weights_path: Path) -> MVDust3r:
    from safetensors.torch import load_file

    config = json.loads(config_path.read_text())
    if config.get("_class_name") != MVDust3r.__name__:
        raise UserInputError(f"{config_path.parent} holds a {config.get('_class_name')!r} model, not MVDust3r")
    model = _empty({k: v for k, v in config.items() if not k.startswith("_")})
    _load_strict(model, load_file(weights_path), f"{weights_path}")
    return model


def _folder_checkpoint(folder: Path, variant: str | None) -> Path:
    preferred = Path(RELEASE_FILES[variant]).name if variant else None
    files = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    for f in files:
        if f.name == preferred:
            return f
    if len(files) == 1:
        return files[0]
    raise UserInputError(
        f"folder {folder} has {'no' if not files else 'several'} checkpoint files "
        f"({[f.name for f in files]}); pass the file itself"
    )


def mvdust3r_from_pretrained(
    source: str | os.PathLike | None = None,
    variant: str | None = None,
    *,
    local_files_only: bool | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MVDust3r:
    """Load MV-DUSt3R (``variant="mvdust3r"``) or MV-DUSt3R+ (``"mvdust3r-plus"``) in eval mode.

    ``source``: file, folder or Hub repo id (see the module docstring); ``None`` = the release file of
    ``variant`` (required then). ``variant`` also checks that a checkpoint holds that model. Released weights
    are CC BY-NC 4.0.
    """
    from vist3a.recon.hub import _download

    if variant is not None:
        _check_variant(variant)
    if source is None:
        if variant is None:
            raise UserInputError("give a weights source or a variant ('mvdust3r' or 'mvdust3r-plus')")
        source = RELEASE_REPO
    path = Path(source).expanduser()
    if path.is_file():
        model = load_official_checkpoint(path, variant)
    elif path.is_dir():
        if (path / "config.json").is_file() and (path / VIST3A_WEIGHTS).is_file():
            model = _load_vist3a_folder(path / "config.json", path / VIST3A_WEIGHTS)
        else:
            model = load_official_checkpoint(_folder_checkpoint(path, variant), variant)
    else:
        text = str(source)
        if text.startswith((".", "/", "~")) or text.count("/") != 1:
            raise UserInputError(f"weights {text!r}: no such file or folder, and not a Hugging Face repo id")
        config = _download(text, "config.json", local_files_only, revision, cache_dir)
        weights = _download(text, VIST3A_WEIGHTS, local_files_only, revision, cache_dir) if config else None
        if config is not None and weights is not None:
            model = _load_vist3a_folder(config, weights)
        else:
            names = [RELEASE_FILES[variant]] if variant else list(RELEASE_FILES.values())
            found = None
            for name in names:
                found = _download(text, name, local_files_only, revision, cache_dir)
                if found is not None:
                    break
            if found is None:
                raise UserInputError(f"Hugging Face repo {text!r} has none of {names} and no vist3a model folder")
            model = load_official_checkpoint(found, variant)
        if text == RELEASE_REPO:
            logger.warning("MV-DUSt3R release weights are licensed %s", LICENCE)
    logger.info("loaded %s (%s)", "MV-DUSt3R+" if model.config.multi_path else "MV-DUSt3R", source)
    return nn.Module.to(model, device=device, dtype=dtype or torch.float32).eval()


# ----------------------------------------------------------------------------- tiny random models
def tiny_mvdust3r_config(variant: str = "mvdust3r") -> dict[str, Any]:
    """Kwargs of a tiny MV-DUSt3R(+) (encoder 32 wide / 2 blocks, decoder 24 wide / 2 layers) for tests."""
    _check_variant(variant)
    config = {"enc_embed_dim": 32, "enc_depth": 2, "enc_num_heads": 2, "dec_embed_dim": 24, "dec_depth": 2,
              "dec_num_heads": 2, "gs_mlp_dim": 16, "skip_dim": 8}
    if variant == "mvdust3r-plus":
        config.update(multi_path=True, n_ref=4)
    return config


def random_tiny_mvdust3r(variant: str = "mvdust3r", seed: int = 0, **overrides: Any) -> MVDust3r:
    """A tiny randomly initialised MV-DUSt3R(+) in eval mode (global RNG untouched). Its point heads get a
    positive depth bias so the random pointmaps lie in front of the cameras (usable for end-to-end tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MVDust3r(**{**tiny_mvdust3r_config(variant), **overrides})
        pp = model.config.patch_size ** 2
        with torch.no_grad():
            for head in (model.downstream_head1, model.downstream_head2):
                head.proj.weight.mul_(0.1)
                head.proj.bias.zero_()
                head.proj.bias[2 * pp: 3 * pp] = 1.5  # z channel: expm1(1.5) ~ 3.5 in front of the camera
    return model.eval()
