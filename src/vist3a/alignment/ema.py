"""Exponential moving average of the trained (LoRA) weights, with the release's warm-up decay.

After optimiser step ``s`` (0-based) every shadow tensor moves towards its parameter:
``shadow = d * shadow + (1 - d) * param`` with ``d = min((1 + s) / (10 + s), max_decay)``, so the first
updates follow the weights closely (``d = 0.1`` at ``s = 0``) and the average settles at ``max_decay`` (0.99)
from ``s = 890`` on. Inference uses the EMA weights (``lora_ema/`` in checkpoints).

Shadows are kept in float32 whatever the parameters' dtype, so bf16 training still averages precisely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch


def ema_decay(step: int, max_decay: float = 0.99) -> float:
    """Decay used after optimiser step ``step`` (0-based): ``min((1 + step) / (10 + step), max_decay)``."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"`step` must be an int >= 0, got {step!r}")
    return min((1.0 + step) / (10.0 + step), float(max_decay))


class EMA:
    """Float32 shadows of named parameters.

    Args:
        params: ``{name: parameter}`` to average (e.g. the LoRA factors); the shadows start as copies.
        max_decay: the decay ceiling (the release: 0.99), in ``[0, 1)``.

    Example::

        ema = EMA({n: p for n, p in model.named_parameters() if p.requires_grad})
        optimizer.step(); ema.update(step)
        with ema.swapped():          # model now holds the averaged weights
            save(model)
    """

    def __init__(self, params: Mapping[str, torch.nn.Parameter], max_decay: float = 0.99) -> None:
        if not 0.0 <= float(max_decay) < 1.0:
            raise ValueError(f"`max_decay` must be in [0, 1), got {max_decay}")
        if not params:
            raise ValueError("`params` must hold at least one parameter to average, got none")
        self.max_decay = float(max_decay)
        self.params: dict[str, torch.nn.Parameter] = dict(params)
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().to(dtype=torch.float32).clone() for name, p in self.params.items()
        }

    @torch.no_grad()
    def update(self, step: int) -> float:
        """Move every shadow towards its parameter with :func:`ema_decay` of ``step``; returns the decay used."""
        decay = ema_decay(step, self.max_decay)
        for name, param in self.params.items():
            self.shadow[name].mul_(decay).add_(param.detach().to(torch.float32), alpha=1.0 - decay)
        return decay

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Overwrite the parameters with the shadows (cast to each parameter's dtype)."""
        for name, param in self.params.items():
            param.copy_(self.shadow[name].to(param.dtype))

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the parameters hold the EMA weights; the trained weights come back afterwards."""
        backup = {name: p.detach().clone() for name, p in self.params.items()}
        self.copy_to_params()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(backup[name])

    def state_dict(self) -> dict[str, object]:
        """``{"max_decay": float, "shadow": {name: float32 tensor on CPU}}``."""
        return {"max_decay": self.max_decay, "shadow": {k: v.detach().cpu().clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore shadows saved by :meth:`state_dict`; names and shapes must match exactly."""
        shadow = state.get("shadow")
        if not isinstance(shadow, Mapping):
            raise ValueError(f"EMA state must hold a 'shadow' mapping, got keys {sorted(state)}")
        if set(shadow) != set(self.shadow):
            missing, extra = sorted(set(self.shadow) - set(shadow)), sorted(set(shadow) - set(self.shadow))
            raise ValueError(f"EMA state does not fit: missing {missing[:3]}, unexpected {extra[:3]}")
        for name, value in shadow.items():
            if tuple(value.shape) != tuple(self.shadow[name].shape):
                raise ValueError(
                    f"EMA state for {name!r} has shape {tuple(value.shape)}, expected {tuple(self.shadow[name].shape)}"
                )
            self.shadow[name] = value.to(device=self.shadow[name].device, dtype=torch.float32).clone()
        self.max_decay = float(state.get("max_decay", self.max_decay))
