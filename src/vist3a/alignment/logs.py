"""Training logs of an alignment run: ``logs/metrics.csv`` (one row per step) and decoded-vs-rendered PNGs."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from vist3a.io_utils import atomic_path


class MetricsLog:
    """A CSV with a fixed header; rows are appended and flushed at once (safe to read during training).

    On resume (``start_step > 0``) rows of steps ``>= start_step`` are dropped first, so a resumed run's CSV
    reads like the uninterrupted one. A header that differs from ``columns`` starts a fresh file.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], start_step: int = 0) -> None:
        self.path = Path(path)
        self.columns = ["step", *[c for c in columns if c != "step"]]
        kept: list[dict[str, str]] = []
        if start_step > 0 and self.path.is_file():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames == self.columns:
                    kept = [row for row in reader if int(row["step"]) < start_step]
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(kept)

    def append(self, row: Mapping[str, float | int | str | None]) -> None:
        """Write one row; missing columns stay empty, unknown keys raise ``ValueError``."""
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise ValueError(f"metrics row has columns {unknown} that are not in the header {self.columns}")
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns).writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(value: float | int | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def read_metrics(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a metrics CSV as dicts of strings."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def save_comparison_png(path: str | os.PathLike, decoded: torch.Tensor, rendered: torch.Tensor | None) -> Path:
    """A grid PNG: decoded frames ``[k, 3, H, W]`` on the top row, the matching renders below (if any).

    Values are clamped to ``[0, 1]``; written atomically.
    """
    import imageio.v3 as iio

    rows = [decoded] if rendered is None else [decoded, rendered]
    for name, images in zip(("decoded", "rendered"), rows, strict=False):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`{name}` must be [k, 3, H, W], got {tuple(images.shape)}")
    if rendered is not None and rendered.shape != decoded.shape:
        raise ValueError(f"`rendered` {tuple(rendered.shape)} must match `decoded` {tuple(decoded.shape)}")
    grid = torch.cat([torch.cat(list(r.detach().float().clamp(0, 1).cpu()), dim=2) for r in rows], dim=1)
    pixels = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, pixels)
    return path
