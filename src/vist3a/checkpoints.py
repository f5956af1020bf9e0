"""Training checkpoints shared by every trainer: the ``RUN/checkpoint-<step>/`` folder names and the global RNG
state that makes a resumed run take exactly the steps of an uninterrupted one.

A checkpoint counts as complete once its ``meta.json`` exists (folders are written atomically). What goes inside
is each trainer's business (:mod:`vist3a.alignment.checkpoint`, :mod:`vist3a.stitching.checkpoint`).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_PREFIX = "checkpoint-"
META_FILE = "meta.json"
_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


def checkpoint_dir(run_dir: str | os.PathLike, step: int) -> Path:
    """``run_dir/checkpoint-<step>``."""
    return Path(run_dir) / f"{CHECKPOINT_PREFIX}{int(step)}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of the complete checkpoints in ``run_dir`` (those with ``meta.json``), by step."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / META_FILE).is_file()]
    return sorted(found)


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states (Python, torch CPU, CUDA when initialised) as ``weights_only``-loadable values."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only when the same number of devices is present)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
