"""LoRA on the tail of a stitched reconstruction model (PEFT), and merging it back into plain weights.

The release adds LoRA to *every* ``nn.Linear`` and ``nn.Conv2d`` of the stitched model, heads included
(``ConvTranspose2d`` is not a ``Conv2d`` and gets none), with r=64, α=32, and also trains the biases of those
modules. Here the adapters are PEFT's (``lora_A``/``lora_B`` per module, scaling ``α / r``); for inference they
can be merged (:func:`merge_lora`), which leaves the original module tree with updated weights.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from torch import nn

from vist3a.video.lora import has_lora as has_lora  # re-exported: one implementation
from vist3a.video.lora import merge_lora_layers

logger = logging.getLogger(__name__)

LORA_MODULE_TYPES = (nn.Linear, nn.Conv2d)
"""Module types that receive LoRA (as in the release's ``add_lora``)."""


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters. ``rank = 0`` means no LoRA."""

    rank: int = 64
    alpha: float = 32.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise ValueError(f"LoRA rank must be >= 0, got {self.rank}")
        if self.rank and not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank if self.rank else 0.0


def lora_target_names(model: nn.Module) -> list[str]:
    """Names (relative to ``model``) of every ``nn.Linear`` / ``nn.Conv2d`` not yet wrapped by LoRA."""
    from peft.tuners.lora import LoraLayer

    names = []
    wrapped = {name for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    for name, module in model.named_modules():
        if not name or not isinstance(module, LORA_MODULE_TYPES):
            continue
        if any(name == w or name.startswith(w + ".") for w in wrapped):
            continue
        names.append(name)
    return names


def add_lora(model: nn.Module, settings: LoraSettings) -> list[str]:
    """Wrap every Linear/Conv2d of ``model`` with a PEFT LoRA adapter (in place); returns the wrapped names.

    ``lora_B`` starts at zero, so the model's function is unchanged. Parameter names change to
    ``<module>.base_layer.weight``, ``<module>.lora_A.default.weight``, ``<module>.lora_B.default.weight``.
    Every parameter's ``requires_grad`` is left to the caller (PEFT freezes the rest; see :func:`lora_parameters`).
    """
    if settings.rank == 0:
        return []
    from peft import LoraConfig, inject_adapter_in_model

    names = lora_target_names(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear / nn.Conv2d modules to add LoRA to")
    pattern = "^(?:" + "|".join(re.escape(n) for n in names) + ")$"
    config = LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=pattern, bias="none"
    )
    inject_adapter_in_model(config, model)
    logger.info("added LoRA r=%d alpha=%g to %d modules", settings.rank, settings.alpha, len(names))
    return names


def lora_parameters(model: nn.Module, include_biases: bool = True) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` of every LoRA factor (and, with ``include_biases``, of the wrapped modules' biases)."""
    from peft.tuners.lora import LoraLayer

    out: dict[str, nn.Parameter] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        prefix = f"{name}." if name else ""
        for sub in ("lora_A", "lora_B"):
            for pname, param in getattr(module, sub).named_parameters():
                out[f"{prefix}{sub}.{pname}"] = param
        bias = getattr(module.get_base_layer(), "bias", None)
        if include_biases and bias is not None:
            out[f"{prefix}base_layer.bias"] = bias
    return out


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter into its base weight and put the plain module back (in place); returns the number
    of merged modules (:func:`vist3a.video.lora.merge_lora_layers`)."""
    return merge_lora_layers(model)
