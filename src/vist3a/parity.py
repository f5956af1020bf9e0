"""Reproduce the official golden vectors (``shared/oracles/<case>/``) with vist3a's own models.

``run_case(case_dir)`` reads the case's ``config.json``, builds the vist3a model from the *official*
constructor arguments, loads the official ``state_dict.safetensors`` strictly (through
:mod:`vist3a.recon.convert`), runs the forward the case describes on ``inputs.safetensors`` and returns one
dict per ``outputs*.safetensors`` file of the case, keyed by file stem, with the official tensor names.

Dispatch is on the ``"class"`` (or ``"function"``) entry of ``config.json`` through :data:`CASE_HANDLERS`;
unknown cases raise ``ValueError``. This module is for verification only: product code must not import it.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

Results = dict[str, dict[str, torch.Tensor]]


def _lazy(module: str, function: str) -> Callable[[Path], Results]:
    """A handler implemented elsewhere, imported on first use."""

    def handler(case_dir: Path) -> Results:
        return getattr(importlib.import_module(module), function)(case_dir)

    handler.__name__ = f"{module}.{function}"
    return handler


def _read_case(case_dir: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    from safetensors.torch import load_file

    config = json.loads((case_dir / "config.json").read_text())
    state_dict = load_file(case_dir / "state_dict.safetensors")
    inputs = load_file(case_dir / "inputs.safetensors")
    stems = sorted(p.stem for p in case_dir.glob("outputs*.safetensors"))
    return config, state_dict, inputs, stems


def _check_stems(stems: list[str], known: set[str], case_dir: Path) -> None:
    unknown = sorted(set(stems) - known)
    if unknown:
        raise ValueError(f"case {case_dir} has output files {unknown} this handler does not produce ({sorted(known)})")


@torch.no_grad()
def run_vggt_case(case_dir: Path) -> Results:
    """``VGGT.forward(images[, query_points])`` -> ``outputs`` (+ ``outputs_track``)."""
    from vist3a.recon import VGGT
    from vist3a.recon.convert import config_from_official, load_official_state_dict

    config, state_dict, inputs, stems = _read_case(case_dir)
    _check_stems(stems, {"outputs", "outputs_track"}, case_dir)
    _, kwargs = config_from_official(config["constructor"])
    with_track = "outputs_track" in stems
    heads = [h for h in kwargs["heads"] if h != "track"] + (["track"] if with_track else [])
    model = VGGT(**{**kwargs, "heads": tuple(heads)}).eval()
    load_official_state_dict(model, "vggt", state_dict, ignore_prefixes=() if with_track else ("track_head.",))
    out = model(inputs["images"], query_points=inputs.get("query_points") if with_track else None)
    results: Results = {
        "outputs": {
            "pose_enc": out.cameras.pose_enc,
            "pose_enc_list": torch.stack(out.cameras.pose_enc_list),
            "depth": out.depth[..., None],
            "depth_conf": out.depth_conf,
            "world_points": out.world_points,
            "world_points_conf": out.world_points_conf,
        }
    }
    if with_track:
        results["outputs_track"] = {
            "track": out.tracks.tracks,
            "vis": out.tracks.visibility,
            "conf": out.tracks.confidence,
            "track_list": torch.stack(out.tracks.tracks_list),
        }
    return results


def _anysplat_gaussians(official: dict[str, torch.Tensor], ratio: float, scene_scale: torch.Tensor) -> dict:
    out = {f"gaussians.{k}": v for k, v in official.items()}
    out["infos.scene_scale"] = scene_scale
    out["infos.voxelize_ratio"] = torch.tensor(ratio, dtype=torch.float32)
    return out


@torch.no_grad()
def run_anysplat_case(case_dir: Path) -> Results:
    """``AnySplat.inference(images, training_for_stitching=True)`` -> ``outputs``, ``outputs_extra``,
    ``outputs_novoxel`` (the same forward with ``voxelize=False``)."""
    from vist3a.recon import AnySplat, gaussian_ops
    from vist3a.recon.convert import load_official_state_dict

    config, state_dict, inputs, stems = _read_case(case_dir)
    _check_stems(stems, {"outputs", "outputs_extra", "outputs_novoxel"}, case_dir)
    model = AnySplat.from_official_config(config["constructor"]).eval()
    load_official_state_dict(model, "anysplat", state_dict)
    images = inputs["images"]
    out = model(images)
    image_hw = tuple(images.shape[-2:])
    cams = out.cameras
    results: Results = {}
    main = _anysplat_gaussians(out.gaussians_official, out.voxelize_ratio, out.scene_scale)
    main.update(
        {
            "pred_pose_enc_list": torch.stack(cams.pose_enc_list),
            "pred_context_pose.extrinsic": cams.c2w,
            "pred_context_pose.intrinsic": cams.normalized_K(image_hw),
            "depth_dict.depth": out.depth[..., None],
            "depth_dict.conf_valid_mask": out.conf_valid_mask,
        }
    )
    results["outputs"] = main
    results["outputs_extra"] = {
        "anchor_feats": out.gaussian_raw,
        "conf": out.gaussian_conf,
        "depth_conf": out.depth_conf,
    }
    if "outputs_novoxel" in stems:
        official, counts = model.gaussians_from_pixels(
            out.points, out.gaussian_raw, out.gaussian_conf, out.conf_valid_mask, voxelize=False
        )
        pixels = images.shape[1] * image_hw[0] * image_hw[1]
        ratio = gaussian_ops.voxelize_ratio(max(counts), pixels)
        results["outputs_novoxel"] = _anysplat_gaussians(official, ratio, out.scene_scale)
    return {stem: results[stem] for stem in stems}


CASE_HANDLERS: dict[str, Callable[[Path], Results]] = {
    "VGGT": run_vggt_case,
    "AnySplat": run_anysplat_case,
    "StitchVAE3D": _lazy("vist3a.stitching.parity_cases", "run_stitched_case"),
    "find_layer_for_stitching.fit_conv3d_streaming": _lazy("vist3a.stitching.parity_cases", "run_ridge_case"),
    "AsymmetricCroCo3DStereoMultiView": _lazy("vist3a.recon.parity_mvdust3r", "run_mvdust3r_case"),
}
"""Official entry point named in ``config.json`` (``class`` or ``function``, first identifier) -> handler."""


def case_handler_name(config: dict) -> str:
    """The :data:`CASE_HANDLERS` key of a case: the leading identifier of its ``class`` or ``function``."""
    for field in ("class", "function"):
        value = config.get(field)
        if value:
            match = re.match(r"[A-Za-z_][\w.]*", value.strip())
            if match:
                return match.group(0)
    raise ValueError("case config.json has neither a 'class' nor a 'function' entry naming the official code")


def run_case(case_dir: str | Path) -> Results:
    """Run one oracle case folder; returns ``{file stem: {tensor name: tensor}}`` for its ``outputs*`` files."""
    case_dir = Path(case_dir)
    config_path = case_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"`case_dir` must be an oracle case folder with a config.json, got {case_dir}")
    name = case_handler_name(json.loads(config_path.read_text()))
    if name not in CASE_HANDLERS:
        raise ValueError(
            f"no parity handler for official entry point {name!r} (case {case_dir}); known: {sorted(CASE_HANDLERS)}"
        )
    logger.info("running parity case %s with handler %s", case_dir, name)
    return CASE_HANDLERS[name](case_dir)
