"""Alignment checkpoints: ``RUN/checkpoint-<step>/``, written atomically.

Layout (``step`` = completed training steps):

- ``lora/``: the trained LoRA as a PEFT adapter folder (:func:`vist3a.video.lora.save_lora`);
- ``lora_ema/``: the EMA of the LoRA in the same format, what inference uses
  (``vist3a generate --lora RUN/checkpoint-<step>/lora_ema``);
- ``training_state.pt``: optimizer, learning-rate scheduler, EMA shadows (float32), RNG states and counters,
  loadable with ``torch.load(weights_only=True)``;
- ``meta.json``: ``{"step", "skipped_steps", "config", ...}``.

``--resume RUN/checkpoint-<step>`` restores all of it and continues at ``step``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from vist3a.alignment.ema import EMA
from vist3a.checkpoints import (  # noqa: F401  (re-exported: the alignment API names them)
    CHECKPOINT_PREFIX,
    META_FILE,
    capture_rng_state,
    checkpoint_dir,
    list_checkpoints,
    restore_rng_state,
)
from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_dir
from vist3a.video.lora import save_lora

LORA_DIR, LORA_EMA_DIR = "lora", "lora_ema"
STATE_FILE = "training_state.pt"


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    transformer: torch.nn.Module,
    ema: EMA,
    optimizer: Any,
    lr_scheduler: Any,
    step: int,
    skipped_steps: int,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (a reader sees the old folder or the complete new one).

    ``transformer`` must be the unwrapped module holding the injected LoRA (the EMA's parameters).
    """
    with atomic_dir(directory) as tmp:
        save_lora(transformer, tmp / LORA_DIR)
        with ema.swapped():
            save_lora(transformer, tmp / LORA_EMA_DIR)
        state = {
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_scheduler.state_dict(),
            "ema": ema.state_dict(),
            "rng": capture_rng_state(),
            "step": int(step),
            "skipped_steps": int(skipped_steps),
        }
        torch.save(state, tmp / STATE_FILE)
        info = {"step": int(step), "skipped_steps": int(skipped_steps), **(meta or {})}
        (tmp / META_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return Path(directory)


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """``meta.json`` of a checkpoint; :class:`UserInputError` if ``directory`` is not a complete checkpoint."""
    folder = Path(directory).expanduser()
    missing = [n for n in (META_FILE, STATE_FILE, LORA_DIR) if not (folder / n).exists()]
    if not folder.is_dir() or missing:
        raise UserInputError(
            f"--resume: '{folder}' is not an alignment checkpoint (expected RUN/{CHECKPOINT_PREFIX}<step>/ with "
            f"{META_FILE}, {STATE_FILE} and {LORA_DIR}/; missing {missing or 'the folder'})"
        )
    meta = json.loads((folder / META_FILE).read_text())
    if not isinstance(meta.get("step"), int) or meta["step"] < 0:
        raise UserInputError(f"--resume: '{folder / META_FILE}' has no valid 'step', got {meta.get('step')!r}")
    return meta


def load_training_state(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``training_state.pt`` of a checkpoint (optimizer, lr_scheduler, ema, rng, step, skipped_steps)."""
    return torch.load(Path(directory) / STATE_FILE, map_location=map_location, weights_only=True)
