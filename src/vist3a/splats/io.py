"""Pick the splat file format from the file name: ``.ply`` (3DGS INRIA layout) or ``.splat`` (antimatter15)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vist3a.errors import UserInputError
from vist3a.splats.gaussians import Gaussians
from vist3a.splats.ply import is_point_cloud_ply, load_ply, read_point_ply, save_ply
from vist3a.splats.points import point_file_splats
from vist3a.splats.sh import DEFAULT_SH_DEGREE
from vist3a.splats.splat_file import load_splat, save_splat

SPLAT_SUFFIXES = (".ply", ".splat")


def load_gaussians(
    path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    point_clouds: bool = False,
) -> Gaussians:
    """Load a ``.ply`` or ``.splat`` file; ``UserInputError`` for other suffixes or bad files.

    ``point_clouds``: a PLY of plain coloured points (a pointmap preset's ``points.ply``) comes back as round
    splats (:func:`~vist3a.splats.points.point_file_splats`) instead of being refused.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply" and point_clouds and is_point_cloud_ply(path):
        xyz, rgb, _ = read_point_ply(path)
        splats = point_file_splats(torch.from_numpy(xyz), torch.from_numpy(rgb))
        return splats.to(device=device, dtype=dtype)
    if suffix == ".ply":
        return load_ply(path, device=device, dtype=dtype)
    if suffix == ".splat":
        return load_splat(path, device=device, dtype=dtype)
    if not path.exists():
        raise UserInputError(f"{path}: file does not exist")
    raise UserInputError(f"{path}: unknown splat file type {suffix!r}; expected one of {', '.join(SPLAT_SUFFIXES)}")


def save_gaussians(
    gaussians: Gaussians, path: str | os.PathLike, *, sh_degree: int | None = DEFAULT_SH_DEGREE
) -> Path:
    """Save as ``.ply`` or ``.splat`` depending on the suffix of ``path`` (atomic); ``sh_degree`` as in
    :func:`~vist3a.splats.ply.save_ply` (``.splat`` keeps only the DC colour anyway)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return save_ply(gaussians, path, sh_degree=sh_degree)
    if suffix == ".splat":
        return save_splat(gaussians, path)
    raise UserInputError(f"{path}: unknown splat file type {suffix!r}; expected one of {', '.join(SPLAT_SUFFIXES)}")
