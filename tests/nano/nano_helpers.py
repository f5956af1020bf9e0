"""Helpers of the nano preset tests (imported by name: pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch


def install_tiny_components(tmp_path: Path, models: dict[str, Callable[[], torch.nn.Module]]) -> Path:
    """Save ``{component: model factory}`` as training runs under ``tmp_path/runs`` (float16) and install them into
    ``tmp_path/weights``; returns that weights folder (for ``VIST3A_NANO_WEIGHTS``)."""
    from vist3a.nano.training import save_component
    from vist3a.nano.weights import install_components

    for name, make in models.items():
        save_component(make(), tmp_path / "runs" / name, torch.float16)
    install_components(tmp_path / "runs", root=tmp_path / "weights")
    return tmp_path / "weights"
