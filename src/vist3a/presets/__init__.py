"""Presets: plain JSON data naming the weights and default settings of a text-to-3D system.

A preset is data, not code: ``generator`` (a diffusers-format Wan repo id or folder), ``lora`` (PEFT adapter),
``recon`` (the 3D model), ``stitched`` (the stitched-decoder checkpoint, its layer and stitching-layer spec) and
``stitching`` (VAE / 3D-model input sizes, frames and view counts of the stitching stages), ``provider`` (the
:mod:`vist3a.components` provider that loads it; default ``hub``) and ``defaults`` (generation settings). These
names are the one vocabulary of every command; old names (:data:`DEPRECATED_NAMES`) still work with a warning.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

#: Old preset names -> current ones (kept for one release).
DEPRECATED_NAMES = {"release": "vist3a-1.3b", "random-tiny": "tiny-random"}


def available_presets() -> list[str]:
    """Names of the presets shipped with vist3a."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name[: -len(".json")] for f in files if f.name.endswith(".json"))


def load_preset(name_or_path: str | Path) -> dict[str, Any]:
    """Load a shipped preset by name, or a preset JSON file by path."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        text = path.read_text()
    else:
        if str(name_or_path) in DEPRECATED_NAMES:
            new = DEPRECATED_NAMES[str(name_or_path)]
            logger.warning("the preset name %r is deprecated and will be removed in the next release; use %r",
                           str(name_or_path), new)
            name_or_path = new
        names = available_presets()
        if str(name_or_path) not in names:
            raise UserInputError(
                f"unknown preset {str(name_or_path)!r}; choose one of {', '.join(names)} or pass a preset .json file"
            )
        text = resources.files(__name__).joinpath(f"{name_or_path}.json").read_text()
    try:
        preset = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"preset {str(name_or_path)!r} is not valid JSON: {exc}") from None
    for key in ("name", "defaults"):
        if key not in preset:
            raise UserInputError(f"preset {str(name_or_path)!r} lacks the required key {key!r}")
    return preset
