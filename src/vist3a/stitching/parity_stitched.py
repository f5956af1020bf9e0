"""The ``anysplat_stitched_tiny`` oracle case: VIST3A's ``StitchVAE3D.forward_with_latent`` re-run with
:class:`~vist3a.stitching.decoder.StitchedDecoder` (used by the parity tests, never by the product path).

A case folder holds ``config.json`` (official constructor arguments), ``state_dict.safetensors`` (the official
state dict of the stitched model *before* ``eval()``: LoRA unmerged), ``inputs.safetensors`` (``latent``
``[B, 16, T_lat, h, w]`` raw, ``feedforward_image`` ``[B, 3, V, H, W]`` in ``[-1, 1]``) and the reference outputs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vist3a.stitching.decoder import StitchedDecoder

logger = logging.getLogger(__name__)

_LORA_SECTION = "LoRA"
_STITCH_SECTION = "StitchVAE3D"


def _section(constructor: Mapping[str, Any], name: str) -> dict[str, Any]:
    for key, value in constructor.items():
        if re.split(r"[\s(]", key.strip(), maxsplit=1)[0] == name:
            return dict(value)
    raise ValueError(f"config.json constructor has no {name!r} section; sections: {sorted(constructor)}")


def _resolution(stitch: Mapping[str, Any]) -> int:
    for key, value in stitch.items():
        if key.split(" ")[0] == "resolution":
            return int(value)
    raise ValueError("the StitchVAE3D section has no 'resolution' entry")


def merge_official_stitched_state(
    state_dict: Mapping[str, torch.Tensor], scaling: float
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Official ``StitchVAE3D`` state dict (unmerged LoRA) -> (merged AnySplat-stitched keys, stitching layer).

    Drops the ``X.conv.*`` duplicates of Conv2d LoRA modules and merges ``W += (B @ A).view(W.shape)·scaling``
    (computed in float64). Returned recon keys are official (``encoder.*``) and relative to the stitched model.
    """
    recon: dict[str, torch.Tensor] = {}
    stitch: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("stitching_layer."):
            stitch[key.removeprefix("stitching_layer.")] = value
        elif key.startswith("stitched_3d_model."):
            recon[key.removeprefix("stitched_3d_model.")] = value
        else:
            raise ValueError(f"unexpected key {key!r} in the stitched state dict")
    merged: dict[str, torch.Tensor] = {}
    for key, value in recon.items():
        if ".conv." in key or key.endswith((".lora_A", ".lora_B")):
            continue
        merged[key] = value
    for key in recon:
        if not key.endswith(".lora_A"):
            continue
        module = key[: -len(".lora_A")]
        weight = merged[module + ".weight"]
        delta = recon[module + ".lora_B"].double() @ recon[key].double()
        merged[module + ".weight"] = (weight.double() + delta.reshape(weight.shape) * scaling).to(weight.dtype)
    return merged, stitch


def official_anysplat_outputs(out: Any, image_hw: tuple[int, int]) -> dict[str, dict[str, torch.Tensor]]:
    """:class:`~vist3a.recon.outputs.AnySplatOutput` -> the oracle's ``outputs`` / ``outputs_extra`` key layout."""
    cams = out.cameras
    outputs = {f"gaussians.{k}": v for k, v in out.gaussians_official.items()}
    outputs.update(
        {
            "pred_pose_enc_list": torch.stack(list(cams.pose_enc_list)),
            "pred_context_pose.extrinsic": cams.c2w,
            "pred_context_pose.intrinsic": cams.normalized_K(image_hw),
            "depth_dict.depth": out.depth[..., None],
            "depth_dict.conf_valid_mask": out.conf_valid_mask,
            "infos.scene_scale": out.scene_scale,
            "infos.voxelize_ratio": torch.tensor(float(out.voxelize_ratio)),
            "last_pred_pose_enc": cams.pose_enc,
        }
    )
    extra = {"anchor_feats": out.gaussian_raw, "conf": out.gaussian_conf, "depth_conf": out.depth_conf}
    return {"outputs": outputs, "outputs_extra": extra}


def build_case_decoder(case_dir: str | Path) -> StitchedDecoder:
    """The case's stitched model as a :class:`StitchedDecoder` with the official weights (LoRA merged)."""
    from safetensors.torch import load_file

    from vist3a.recon.convert import check_state_dict, config_from_official, official_to_vist3a_state_dict

    case_dir = Path(case_dir)
    constructor = json.loads((case_dir / "config.json").read_text())["constructor"]
    stitch_cfg = _section(constructor, _STITCH_SECTION)
    lora_cfg = _section(constructor, _LORA_SECTION)
    kind, recon_kwargs = config_from_official(constructor)
    if kind != "anysplat":
        raise ValueError(f"{case_dir}: the stitched case must wrap AnySplat, got {kind!r}")
    spec_cfg = stitch_cfg.get("parsed_conv_spec", {})
    latent_res = _resolution(stitch_cfg) // 8
    decoder = StitchedDecoder(
        recon_type="anysplat",
        recon_config=get_recon_config(recon_kwargs),
        layer=stitch_cfg["stitching_layer_location"],
        spec=stitch_cfg["stitching_layer_config"],
        latent_channels=int(spec_cfg.get("in_channels", 16)),
        latent_hw=(latent_res, latent_res),
    )
    scaling = float(lora_cfg["alpha"]) / float(lora_cfg["r"])
    merged, stitch = merge_official_stitched_state(load_file(str(case_dir / "state_dict.safetensors")), scaling)
    converted = official_to_vist3a_state_dict("anysplat", merged)
    check_state_dict(decoder.recon, converted, f"{case_dir.name} stitched state dict")
    decoder.recon.load_state_dict(converted, strict=True)
    decoder.load_stitching_layer(stitch)
    return decoder.eval()


def get_recon_config(recon_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The recon kwargs of :func:`vist3a.recon.convert.config_from_official` as a JSON-friendly config dict."""
    return json.loads(json.dumps(dict(recon_kwargs)))


@torch.no_grad()
def run_stitched_case(case_dir: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Reproduce every ``outputs*.safetensors`` (and the stitched ``intermediates``) of a stitched case folder.

    Returns ``{"outputs", "outputs_extra", "outputs_novoxel", "intermediates"}`` with the files' key names.
    """
    from safetensors.torch import load_file

    from vist3a.recon import gaussian_ops

    case_dir = Path(case_dir)
    decoder = build_case_decoder(case_dir)
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    latent = inputs["latent"].float()
    frames = ((inputs["feedforward_image"].float() + 1) / 2).permute(0, 2, 1, 3, 4)  # b c v h w -> b v c h w
    image_hw = tuple(frames.shape[-2:])
    if decoder.image_size(tuple(latent.shape[-2:])) != image_hw:
        raise ValueError(
            f"{case_dir.name}: the stitched tokens give images of {decoder.image_size(tuple(latent.shape[-2:]))}, "
            f"but feedforward_image is {image_hw}"
        )

    intermediates: dict[str, torch.Tensor] = {}
    layer = decoder.stitching_layer
    intermediates["stitch.latent_upsampled"] = layer.upsample(latent)
    intermediates["stitch.tokens_bcvhw"] = layer.project(intermediates["stitch.latent_upsampled"])
    dino = decoder.adapter.dino(decoder.recon)
    hooks = [
        block.register_forward_hook(lambda m, a, o, i=i: intermediates.__setitem__(f"dino.block_out.{i}", o))
        for i, block in enumerate(dino.blocks)
    ]
    try:
        out = decoder(latent, frames, voxelize=True, return_aggregator=True)
    finally:
        for hook in hooks:
            hook.remove()
    for i, tokens in enumerate(out.aggregator.tokens):
        intermediates[f"aggregated_tokens.{i}"] = tokens
    intermediates["pts_all"] = out.points
    intermediates["pose.extrinsic_w2c_3x4"] = out.cameras.w2c
    intermediates["pose.intrinsic_pixels"] = out.cameras.K
    points, feats, conf = gaussian_ops.flatten_pixels(out.gaussian_raw[0], out.points[0], out.gaussian_conf[0])
    fused_pts, fused_feats = gaussian_ops.voxel_fuse(points, feats, conf, decoder.recon.config.voxel_size)
    intermediates["voxel.0.out_pts"], intermediates["voxel.0.out_feats"] = fused_pts, fused_feats
    result = official_anysplat_outputs(out, image_hw)
    novoxel = decoder(latent, frames, voxelize=False)
    nv = official_anysplat_outputs(novoxel, image_hw)["outputs"]
    result["outputs_novoxel"] = {k: v for k, v in nv.items() if k.startswith(("gaussians.", "infos."))}
    result["intermediates"] = intermediates
    logger.info("stitched case %s: %d Gaussians (voxelised), %d (per pixel)", case_dir.name,
                out.num_gaussians[0], novoxel.num_gaussians[0])
    return result
