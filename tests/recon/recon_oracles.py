"""Helpers shared by the recon oracle tests: the README tolerance and cached oracle cases/models."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from safetensors.torch import load_file


def assert_oracle_close(x: torch.Tensor, ref: torch.Tensor, name: str = "") -> None:
    """Oracle README tolerance, elementwise: ``|x − ref| ≤ 1e-4·max|ref| + 1e-3·|ref|``."""
    assert tuple(x.shape) == tuple(ref.shape), f"{name}: shape {list(x.shape)} != {list(ref.shape)}"
    x, ref = x.detach().double(), ref.double()
    bound = 1e-4 * ref.abs().max() + 1e-3 * ref.abs()
    excess = float(((x - ref).abs() - bound).max())
    assert excess <= 0, f"{name}: exceeds the oracle tolerance by {excess:.3g}"


class OracleCase:
    """Files of one oracle case folder (loaded lazily)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = json.loads((folder / "config.json").read_text())

    def load(self, stem: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.folder / f"{stem}.safetensors"))


@functools.cache
def oracle_case(folder: Path) -> OracleCase:
    return OracleCase(folder)


@functools.cache
def oracle_vggt(folder: Path, with_track: bool = True):
    """The vist3a VGGT of an oracle case with its official weights loaded (eval mode)."""
    from vist3a.recon import VGGT, load_official_state_dict

    case = oracle_case(folder)
    model = VGGT.from_official_config(case.config["constructor"])
    if not with_track:
        model = VGGT.from_official_config(case.config["constructor"], heads=("camera", "depth", "point"))
    ignore = () if with_track else ("track_head.",)
    load_official_state_dict(model, "vggt", case.load("state_dict"), ignore_prefixes=ignore)
    return model.eval()


@functools.cache
def oracle_anysplat(folder: Path):
    """The vist3a AnySplat of an oracle case with its official weights loaded (eval mode)."""
    from vist3a.recon import AnySplat, load_official_state_dict

    case = oracle_case(folder)
    model = AnySplat.from_official_config(case.config["constructor"])
    load_official_state_dict(model, "anysplat", case.load("state_dict"))
    return model.eval()
