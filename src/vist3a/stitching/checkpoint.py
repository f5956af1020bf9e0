"""Checkpoint formats of the stitched decoder.

1. **Released VIST3A stitching checkpoint** (``anysplat_stitched.pth``): ``torch.save`` of a dict with

   - ``lora``: ``{<module>.lora_A, <module>.lora_B, <module>.bias}`` for every ``nn.Linear``/``nn.Conv2d`` of the
     stitched AnySplat, in official key names relative to it (``encoder.aggregator.patch_embed.blocks.0...`` with the
     remaining DINO blocks renumbered from 0, ``encoder.gaussian_param_head...``); modules without bias have no
     ``bias`` entry. Base weights are not in the file (they come from AnySplat).
   - ``stitching_layer``: ``{weight, bias}`` of the Conv3d; ``mask_token``, ``cls_token``, ``register_tokens``.

   Linear LoRA: ``lora_A [r, in]``, ``lora_B [out, r]``, ``ΔW = lora_B @ lora_A · α/r``. Conv2d LoRA (k x k):
   ``lora_A [r·k, in·k]``, ``lora_B [out·k, r·k]``, ``ΔW = (lora_B @ lora_A).view(out, in, k, k) · α/r``.
   ``α`` is not stored (release: r=64, α=32). :func:`read_official_checkpoint` flattens the file to
   ``"lora/<key>"``, ``"stitching_layer/weight"``, ... (a flat safetensors file with those names is read as is).

2. **Training checkpoints** (``RUN/checkpoint-<step>/``): ``trainable.safetensors`` (the trained parameters by
   name), ``optimizer.pt``, ``scheduler.pt``, ``rng.pt`` and ``meta.json`` (``step``, config), written
   atomically; see :func:`save_training_checkpoint` / :func:`load_training_checkpoint`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vist3a.checkpoints import META_FILE
from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_dir
from vist3a.stitching.lora import LORA_MODULE_TYPES, has_lora

logger = logging.getLogger(__name__)

OFFICIAL_TOKEN_KEYS = ("mask_token", "cls_token", "register_tokens")

TRAINABLE_FILE = "trainable.safetensors"

# ---------------------------------------------------------------------------- official layout
def flatten_official(tree: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested ``{lora: {...}, stitching_layer: {...}, cls_token: t}`` -> ``{"lora/<key>": t, ...}``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_official(value, name + "/"))
        elif isinstance(value, torch.Tensor):
            out[name] = value
        else:
            raise ValueError(f"official checkpoint entry {name!r} is a {type(value).__name__}, not a tensor")
    return out


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a released stitching checkpoint (``.pth``/``.pt`` torch file or ``.safetensors``) as flat entries."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"stitching checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    tree = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(tree, Mapping):
        raise ValueError(f"{path}: expected a dict of tensors, got {type(tree).__name__}")
    if "state_dict" in tree and isinstance(tree["state_dict"], Mapping):
        tree = tree["state_dict"]
    return flatten_official(tree)


def _official_module_name(vist3a_name: str) -> str:
    from vist3a.recon.convert import vist3a_key_to_official

    key = vist3a_key_to_official("anysplat", vist3a_name + ".weight")
    if key is None:
        raise ValueError(f"module {vist3a_name!r} has no official AnySplat name")
    return key[: -len(".weight")]


def expected_official_entries(decoder: nn.Module) -> dict[str, tuple[str, str]]:
    """``{official entry: (kind, vist3a module)}`` that a released checkpoint must hold for ``decoder``.

    ``kind`` is ``lora_A``, ``lora_B``, ``bias``, ``stitching_layer`` or ``token``.
    """
    out: dict[str, tuple[str, str]] = {}
    for name, module in decoder.recon.named_modules():
        if not name or not isinstance(module, LORA_MODULE_TYPES):
            continue
        official = _official_module_name(name)
        out[f"lora/{official}.lora_A"] = ("lora_A", name)
        out[f"lora/{official}.lora_B"] = ("lora_B", name)
        if module.bias is not None:
            out[f"lora/{official}.bias"] = ("bias", name)
    for key in decoder.stitching_layer.state_dict():
        out[f"stitching_layer/{key}"] = ("stitching_layer", key)
    for key in OFFICIAL_TOKEN_KEYS:
        out[key] = ("token", key)
    return out


def _preview(names: list[str], limit: int = 10) -> str:
    names = sorted(names)
    more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def official_lora_delta(
    module: nn.Module, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float
) -> torch.Tensor:
    """The release's weight update for one module: ``(B @ A).view(weight.shape) · scaling`` (Linear or Conv2d)."""
    weight = module.weight
    delta = (lora_b.double() @ lora_a.double()) * scaling
    if delta.numel() != weight.numel():
        raise ValueError(
            f"LoRA factors {list(lora_a.shape)} / {list(lora_b.shape)} do not fit a weight of shape "
            f"{list(weight.shape)}"
        )
    return delta.reshape(weight.shape)


def _lora_rank(module: nn.Module, lora_a: torch.Tensor) -> int:
    k = module.kernel_size[0] if isinstance(module, nn.Conv2d) else 1
    return lora_a.shape[0] // k


@torch.no_grad()
def apply_official_checkpoint(decoder: nn.Module, entries: Mapping[str, torch.Tensor], lora_alpha: float) -> None:
    """Load released-layout ``entries`` into a LoRA-free ``decoder`` strictly, merging the LoRA into the weights.

    Raises ``ValueError`` naming every missing / unexpected entry and any shape mismatch.
    """
    if has_lora(decoder.recon):
        raise ValueError("apply_official_checkpoint needs a decoder without PEFT LoRA (lora_rank=0)")
    expected = expected_official_entries(decoder)
    missing = sorted(set(expected) - set(entries))
    unexpected = sorted(set(entries) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing entries: {_preview(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected entries: {_preview(unexpected)}")
        raise ValueError(
            f"stitching checkpoint does not fit a {decoder.config.recon_type} stitched at {decoder.config.layer}: "
            + "; ".join(parts)
        )
    modules = dict(decoder.recon.named_modules())
    ranks = set()
    updates: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, (kind, name) in expected.items():
        if kind == "lora_A":
            official = key[: -len(".lora_A")]
            lora_a, lora_b = entries[key], entries[official + ".lora_B"]
            ranks.add(_lora_rank(modules[name], lora_a))
            updates[name] = (lora_a, lora_b)
    if len(ranks) != 1:
        raise ValueError(f"LoRA factors of the checkpoint have different ranks: {sorted(ranks)}")
    rank = ranks.pop()
    scaling = lora_alpha / rank
    for name, (lora_a, lora_b) in updates.items():
        module = modules[name]
        delta = official_lora_delta(module, lora_a, lora_b, scaling)
        module.weight.copy_((module.weight.double() + delta).to(module.weight.dtype))
    for key, (kind, name) in expected.items():
        value = entries[key]
        if kind == "bias":
            target = modules[name].bias
        elif kind == "stitching_layer":
            target = getattr(decoder.stitching_layer, name)
        elif kind == "token":
            target = _token_param(decoder, name)
        else:
            continue
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"checkpoint entry {key!r} has shape {list(value.shape)}, the model {list(target.shape)}")
        target.copy_(value.to(target.dtype))
    logger.info(
        "loaded released stitching checkpoint: %d LoRA modules (r=%d, alpha=%g) merged", len(updates), rank, lora_alpha
    )


def _token_param(decoder: nn.Module, name: str) -> nn.Parameter:
    dino = decoder.adapter.dino(decoder.recon)
    param = getattr(dino, name, None)
    if param is None:
        raise ValueError(f"the model has no DINO {name}")
    return param


# ---------------------------------------------------------------------------- training checkpoints
# (folder names and RNG capture: vist3a.checkpoints)
def save_training_checkpoint(
    path: str | Path,
    trainable: Mapping[str, torch.Tensor],
    optimizer_state: dict,
    scheduler_state: dict,
    rng_state: dict,
    meta: dict,
) -> Path:
    """Write one checkpoint folder atomically (all files or none)."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_dir(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / TRAINABLE_FILE))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(scheduler_state, tmp / "scheduler.pt")
        torch.save(rng_state, tmp / "rng.pt")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint folder: ``{"trainable", "optimizer", "scheduler", "rng", "meta"}``."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / META_FILE).is_file():
        raise UserInputError(
            f"{path} is not a stitching training checkpoint (no {META_FILE}); pass RUN/checkpoint-<step>"
        )
    return {
        "trainable": load_file(str(path / TRAINABLE_FILE)),
        "optimizer": torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False),
        "scheduler": torch.load(path / "scheduler.pt", map_location="cpu", weights_only=False),
        "rng": torch.load(path / "rng.pt", map_location="cpu", weights_only=False),
        "meta": json.loads((path / META_FILE).read_text()),
    }
