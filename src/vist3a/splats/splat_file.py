"""The compact ``.splat`` format of antimatter15's WebGL viewer (and many web viewers after it).

No header; 32 bytes per splat, little endian::

    position  3 x float32   world coordinates
    scale     3 x float32   linear standard deviations
    rgba      4 x uint8     colour from the SH DC term (0.5 + SH_C0 * dc, clipped to [0, 1]) and opacity
    rotation  4 x uint8     unit quaternion (w, x, y, z) mapped by round(q * 128 + 128), clipped to [0, 255]

Splats are sorted by descending ``prod(scale) * opacity`` ("importance"), the order the viewer expects
when it streams the file. Only the DC colour survives: higher SH bands are dropped, so
:func:`load_splat` returns SH degree 0.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_path
from vist3a.splats.gaussians import Gaussians, rgb_to_sh_dc, sh_dc_to_rgb

logger = logging.getLogger(__name__)

SPLAT_DTYPE = np.dtype([("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))])
BYTES_PER_SPLAT = SPLAT_DTYPE.itemsize  # 32


def splat_importance(gaussians: Gaussians) -> torch.Tensor:
    """``[N]`` volume times opacity, the sort key of the ``.splat`` format (larger first)."""
    return gaussians.scales.prod(dim=1) * gaussians.opacities


def save_splat(gaussians: Gaussians, path: str | os.PathLike) -> Path:
    """Write ``gaussians`` as a ``.splat`` file (atomically); returns the path.

    Raises ``ValueError`` for zero splats or non-finite parameters.
    """
    path = Path(path)
    n = len(gaussians)
    if n == 0:
        raise ValueError(f"save_splat: gaussians must contain at least one splat, got 0 (path {path})")
    bad = int((~gaussians.is_finite()).sum())
    if bad:
        raise ValueError(f"save_splat: {bad} of {n} splats have NaN or infinite parameters; filter them first")
    if gaussians.sh_degree > 0:
        logger.info("save_splat: .splat keeps only the DC colour; SH bands 1..%d dropped", gaussians.sh_degree)

    g = gaussians.detach().to(device="cpu", dtype=torch.float64)
    order = torch.argsort(splat_importance(g), descending=True, stable=True)
    g = g[order]
    rgb = sh_dc_to_rgb(g.sh[:, 0, :])
    rgba = torch.cat([rgb, g.opacities[:, None]], dim=1)
    quats = g.quats / g.quats.norm(dim=1, keepdim=True)

    records = np.empty(n, dtype=SPLAT_DTYPE)
    records["position"] = g.means.numpy()
    records["scale"] = g.scales.numpy()
    records["rgba"] = (rgba * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    records["rot"] = (quats * 128.0 + 128.0).round().clamp(0, 255).to(torch.uint8).numpy()
    with atomic_path(path) as tmp:
        tmp.write_bytes(records.tobytes())
    logger.info("wrote %d splats to %s", n, path)
    return path


def load_splat(
    path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Gaussians:
    """Read a ``.splat`` file into :class:`Gaussians` (SH degree 0); ``UserInputError`` for bad files."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: file does not exist")
    raw = path.read_bytes()
    if len(raw) == 0:
        raise UserInputError(f"{path}: contains zero splats")
    if len(raw) % BYTES_PER_SPLAT:
        raise UserInputError(
            f"{path}: size {len(raw)} bytes is not a multiple of {BYTES_PER_SPLAT}; not a .splat file or truncated"
        )
    records = np.frombuffer(raw, dtype=SPLAT_DTYPE)
    means = torch.from_numpy(records["position"].astype(np.float64))
    scales = torch.from_numpy(records["scale"].astype(np.float64))
    if not (torch.isfinite(means).all() and torch.isfinite(scales).all()):
        raise UserInputError(f"{path}: contains NaN or infinite positions or scales")
    rgba = torch.from_numpy(records["rgba"].astype(np.float64)) / 255.0
    quats = (torch.from_numpy(records["rot"].astype(np.float64)) - 128.0) / 128.0
    norms = quats.norm(dim=1, keepdim=True)
    if bool((norms < 1e-6).any()):
        raise UserInputError(f"{path}: contains zero-length rotation quaternions")
    g = Gaussians(
        means=means,
        quats=quats / norms,
        scales=scales,
        opacities=rgba[:, 3],
        sh=rgb_to_sh_dc(rgba[:, None, :3]),
    )
    return g.to(device=device, dtype=dtype)
