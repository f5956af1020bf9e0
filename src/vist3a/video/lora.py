"""LoRA adapters on the Wan transformer, through ``peft``, in the PEFT adapter-folder format.

The released ``vist3a_1.3b_lora_ema/`` / ``vist3a_14b_lora_ema/`` folders are what ``PeftModel.save_pretrained``
writes for a ``WanTransformer3DModel``: ``adapter_config.json`` plus ``adapter_model.safetensors`` with keys
``base_model.model.<module path>.lora_{A,B}.weight``. Reward alignment adds LoRA ``r=8, alpha=16`` on
``attn1``/``attn2`` ``to_q``/``to_k``/``to_v``/``to_out.0`` of every block.

Adapters are injected into the transformer in place (``peft.inject_adapter_in_model``), so it stays a
``WanTransformer3DModel`` with its config and call signature; no ``PeftModel`` wrapper.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from vist3a.errors import UserInputError
from vist3a.hub import resolve_dir
from vist3a.io_utils import atomic_dir

logger = logging.getLogger(__name__)

#: Reward-alignment LoRA targets (suffixes of module names in every Wan block).
DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
)
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
_LEGACY_WEIGHTS_NAME = "adapter_model.bin"
#: Key prefixes that adapter files put before the module path (PEFT's wrapper, diffusers' pipeline format).
_KEY_PREFIXES = ("base_model.model.", "transformer.")
_SAVE_PREFIX = "base_model.model."


def _tuner_layers(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(name, m) for name, m in module.named_modules() if isinstance(m, BaseTunerLayer)]


def has_lora(model: torch.nn.Module) -> bool:
    """Whether any (unmerged) LoRA layer is injected in ``model``."""
    return bool(_tuner_layers(model))


def lora_adapter_names(transformer: torch.nn.Module) -> list[str]:
    """Names of the adapters injected in ``transformer`` (empty if none)."""
    return list(getattr(transformer, "peft_config", {}) or {}) if has_lora(transformer) else []


def _set_trainable(transformer: torch.nn.Module, adapter_name: str, trainable: bool, freeze_base: bool) -> None:
    marker = f".{adapter_name}."
    for name, param in transformer.named_parameters():
        if "lora_" in name and marker in name:
            param.requires_grad_(trainable)
        elif freeze_base:
            param.requires_grad_(False)


def add_lora(
    transformer: torch.nn.Module,
    r: int = 8,
    alpha: float = 16,
    target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
    *,
    adapter_name: str = "default",
    dropout: float = 0.0,
    freeze_base: bool = True,
):
    """Inject a fresh LoRA adapter for training (``lora_B = 0``, so outputs are unchanged at first).

    Only the new adapter's ``lora_A``/``lora_B`` require grad afterwards when ``freeze_base`` (default).
    ``delta W = (alpha / r) * B @ A``. Returns the ``peft.LoraConfig``.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"`r` (LoRA rank) must be a positive int, got {r!r}")
    if not alpha > 0:
        raise ValueError(f"`alpha` must be positive, got {alpha}")
    if not target_modules:
        raise ValueError("`target_modules` must name at least one module suffix, got an empty sequence")
    if adapter_name in lora_adapter_names(transformer):
        raise ValueError(f"`adapter_name` {adapter_name!r} is already injected in the transformer")
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules), init_lora_weights=True
    )
    inject_adapter_in_model(config, transformer, adapter_name=adapter_name)
    _set_trainable(transformer, adapter_name, trainable=True, freeze_base=freeze_base)
    return config


def _read_adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    weights = folder / ADAPTER_WEIGHTS_NAME
    if weights.is_file():
        from safetensors.torch import load_file

        return load_file(weights)
    legacy = folder / _LEGACY_WEIGHTS_NAME
    if legacy.is_file():
        return torch.load(legacy, map_location="cpu", weights_only=True)
    raise UserInputError(f"LoRA: '{folder}' has no {ADAPTER_WEIGHTS_NAME} (nor {_LEGACY_WEIGHTS_NAME})")


def _strip_prefix(key: str) -> str:
    for prefix in _KEY_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def load_lora(
    transformer: torch.nn.Module,
    path: str | os.PathLike,
    *,
    merge: bool = False,
    adapter_name: str = "default",
    trainable: bool = False,
    subfolder: str | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
) -> torch.nn.Module:
    """Load a PEFT LoRA adapter folder (or ``subfolder`` of a Hub repo) into ``transformer`` in place.

    Every tensor in the file must land on an injected LoRA weight and every injected weight must be filled
    (else ``ValueError``). ``merge=True`` folds the adapter into the base weights (:func:`merge_lora`).
    ``trainable`` sets ``requires_grad`` of the loaded LoRA weights (resuming training). Returns
    ``transformer``.
    """
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    patterns = [f"{subfolder}/*"] if subfolder else None
    root = resolve_dir(
        path, allow_patterns=patterns, revision=revision, local_files_only=local_files_only, what="LoRA"
    )
    folder = root / subfolder if subfolder else root
    config_path = folder / ADAPTER_CONFIG_NAME
    if not config_path.is_file():
        raise UserInputError(f"LoRA: '{folder}' is not a PEFT adapter folder (no {ADAPTER_CONFIG_NAME})")
    peft_type = json.loads(config_path.read_text()).get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        raise ValueError(f"LoRA: adapter in '{folder}' has peft_type {peft_type!r}, expected 'LORA'")
    if adapter_name in lora_adapter_names(transformer):
        raise ValueError(f"`adapter_name` {adapter_name!r} is already injected in the transformer")
    config = LoraConfig.from_pretrained(str(folder))
    state = {_strip_prefix(k): v for k, v in _read_adapter_weights(folder).items()}
    inject_adapter_in_model(config, transformer, adapter_name=adapter_name)
    try:
        result = set_peft_model_state_dict(transformer, state, adapter_name=adapter_name)
    except RuntimeError as exc:  # shape mismatches
        _drop_adapter(transformer, adapter_name)
        raise ValueError(f"LoRA: adapter in '{folder}' does not fit the transformer: {exc}") from exc
    expected = {name for name, _ in transformer.named_parameters() if "lora_" in name and f".{adapter_name}." in name}
    missing = sorted(k for k in result.missing_keys if k in expected)
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected or not expected:
        _drop_adapter(transformer, adapter_name)
        raise ValueError(
            f"LoRA: adapter in '{folder}' does not fit the transformer: {len(missing)} LoRA weights not in the file "
            f"(e.g. {missing[:3]}), {len(unexpected)} file entries without a target (e.g. {unexpected[:3]})"
        )
    _set_trainable(transformer, adapter_name, trainable=trainable, freeze_base=False)
    logger.info("Loaded LoRA %r from %s (%d tensors, r=%s)", adapter_name, folder, len(state), config.r)
    return merge_lora(transformer) if merge else transformer


def _drop_adapter(transformer: torch.nn.Module, adapter_name: str) -> None:
    """Remove ``adapter_name`` without merging it (used to undo a failed load)."""
    configs = getattr(transformer, "peft_config", {}) or {}
    if set(configs) - {adapter_name}:
        for _, layer in _tuner_layers(transformer):
            if adapter_name in getattr(layer, "lora_A", {}):
                layer.delete_adapter(adapter_name)
        configs.pop(adapter_name, None)
        return
    for name, layer in _tuner_layers(transformer):
        parent_name, _, child = name.rpartition(".")
        parent = transformer.get_submodule(parent_name) if parent_name else transformer
        setattr(parent, child, layer.get_base_layer())
    if hasattr(transformer, "peft_config"):
        del transformer.peft_config


def merge_lora(transformer: torch.nn.Module) -> torch.nn.Module:
    """Fold the active LoRA adapters into the base weights and remove the LoRA layers (in place).

    Afterwards the transformer is a plain ``WanTransformer3DModel`` again (``save_pretrained`` works) and
    runs at base speed; outputs equal the adapted ones up to rounding.
    """
    merge_lora_layers(transformer)
    return transformer


@torch.no_grad()
def merge_lora_layers(model: torch.nn.Module) -> int:
    """Fold every PEFT adapter of ``model`` into its base weight and put the plain module back (in place); the one
    merge of vist3a (the Wan transformer here, the stitched 3D model in :mod:`vist3a.stitching.lora`). Returns
    the number of merged modules; afterwards the module tree and parameter names are the original ones."""
    layers = _tuner_layers(model)
    for name, layer in layers:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    if layers:
        logger.info("merged LoRA into %d modules", len(layers))
    return len(layers)


def lora_state_dict(transformer: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's tensors keyed by module path without adapter name (PEFT layout, no ``base_model`` prefix)."""
    from peft import get_peft_model_state_dict

    if adapter_name not in lora_adapter_names(transformer):
        raise ValueError(f"`adapter_name` {adapter_name!r} is not injected; have {lora_adapter_names(transformer)}")
    return get_peft_model_state_dict(transformer, adapter_name=adapter_name)


def save_lora(transformer: torch.nn.Module, directory: str | os.PathLike, adapter_name: str = "default") -> Path:
    """Write the adapter as a PEFT folder that ``load_lora`` and ``peft.PeftModel.from_pretrained`` both read."""
    from safetensors.torch import save_file

    state = lora_state_dict(transformer, adapter_name)
    tensors = {_SAVE_PREFIX + k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    config = transformer.peft_config[adapter_name]
    with atomic_dir(directory) as tmp:
        config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
    return Path(directory)
