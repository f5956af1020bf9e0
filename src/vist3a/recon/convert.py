"""Official configurations and checkpoints <-> vist3a models.

* :func:`config_from_official` turns the official constructor arguments into vist3a model kwargs. It
  accepts the oracle ``config.json → "constructor"`` layout (sections named after the official classes:
  ``VGGT``, ``Aggregator``, ``DinoVisionTransformer``, ``CameraHead``, ``DPTHead``, ``TrackHead``,
  ``AnySplat.encoder_cfg``, ``VGGT_DPT_GS_Head`` ...) and the ``config.json`` of the released Hub repos
  (VGGT: ``img_size``/``patch_size``/``embed_dim``; AnySplat: ``encoder_cfg``/``decoder_cfg``). Sections that do
  not describe the reconstruction model (e.g. a stitching wrapper) are ignored.
* :func:`official_to_vist3a_state_dict` / :func:`vist3a_to_official_state_dict` rename keys with an explicit
  prefix map; :func:`load_official_state_dict` loads strictly and lists every missing, unexpected or
  mis-shaped key in its error.

Module names inside the models follow the official ones, so only the top-level prefixes differ:

======================================  =======================
official (``facebook/VGGT-1B``)         vist3a ``VGGT``
======================================  =======================
``aggregator.`` ``camera_head.``        identical
``depth_head.`` ``point_head.``         identical
``track_head.``                         identical
======================================  =======================

======================================  =======================
official (``lhjiang/anysplat``)         vist3a ``AnySplat``
======================================  =======================
``encoder.aggregator.``                 ``aggregator.``
``encoder.camera_head.``                ``camera_head.``
``encoder.depth_head.``                 ``depth_head.``
``encoder.gaussian_param_head.``        ``gaussian_head.``
``encoder.distill_*`` (teacher copies)  dropped (logged)
======================================  =======================
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from vist3a.recon.config import (
    AggregatorConfig,
    CameraHeadConfig,
    DPTConfig,
    PatchEmbedConfig,
    TrackHeadConfig,
    to_dict,
)

logger = logging.getLogger(__name__)

KEY_MAPS: dict[str, tuple[tuple[str, str], ...]] = {
    "vggt": (
        ("aggregator.", "aggregator."),
        ("camera_head.", "camera_head."),
        ("depth_head.", "depth_head."),
        ("point_head.", "point_head."),
        ("track_head.", "track_head."),
    ),
    "anysplat": (
        ("encoder.aggregator.", "aggregator."),
        ("encoder.camera_head.", "camera_head."),
        ("encoder.depth_head.", "depth_head."),
        ("encoder.gaussian_param_head.", "gaussian_head."),
    ),
}
"""Per model: ``(official prefix, vist3a prefix)`` pairs."""

DROPPED_PREFIXES: dict[str, tuple[str, ...]] = {"vggt": (), "anysplat": ("encoder.distill_",)}
"""Official keys that carry no inference state for vist3a (AnySplat's frozen distillation teacher)."""

# DINOv2 trunks selectable by the official ``patch_embed`` string: (embed_dim, depth, num_heads).
DINO_PRESETS = {
    "dinov2_vits14_reg": (384, 12, 6),
    "dinov2_vitb14_reg": (768, 12, 12),
    "dinov2_vitl14_reg": (1024, 24, 16),
    "dinov2_vitg2_reg": (1536, 40, 24),
}


# ----------------------------------------------------------------------------- configs
def _sections(constructor: Mapping[str, Any]) -> dict[str, Any]:
    """Oracle section names ("CameraHead (others default)") -> bare names ("CameraHead")."""
    out = {}
    for key, value in constructor.items():
        name = re.split(r"[\s(]", key.strip(), maxsplit=1)[0]
        if isinstance(value, Mapping):
            out[name] = value
        else:
            logger.debug("official config entry %r is not a section of arguments; ignored", key)
    return out


def _require(section: str, cfg: Mapping[str, Any], key: str, allowed: Iterable[Any]) -> None:
    allowed = list(allowed)
    if key in cfg and cfg[key] not in allowed:
        raise ValueError(f"official {section}.{key} = {cfg[key]!r} is not supported (supported: {allowed})")


def _check_equal(section: str, key: str, got: Any, expected: Any) -> None:
    if got is not None and got != expected:
        raise ValueError(f"official {section}.{key} = {got!r} is inconsistent with the derived value {expected!r}")


def _aggregator_config(sec: dict[str, Any]) -> AggregatorConfig:
    defaults = AggregatorConfig()
    top = dict(sec.get("VGGT") or {})
    agg = dict(sec.get("Aggregator") or {})
    fields = {k: agg.get(k, top.get(k)) for k in ("img_size", "patch_size", "embed_dim")}
    for key in (
        "depth",
        "num_heads",
        "mlp_ratio",
        "num_register_tokens",
        "qkv_bias",
        "proj_bias",
        "ffn_bias",
        "qk_norm",
        "rope_freq",
        "init_values",
        "aa_block_size",
    ):
        fields[key] = agg.get(key)
    fields["aa_order"] = tuple(agg["aa_order"]) if "aa_order" in agg else None
    fields = {k: v for k, v in fields.items() if v is not None}
    if "block_fn" in agg and "Block" not in str(agg["block_fn"]):
        raise ValueError(f"official Aggregator.block_fn = {agg['block_fn']!r} is not supported")
    embed_dim = fields.get("embed_dim", defaults.embed_dim)
    kind = agg.get("patch_embed", "dinov2_vitl14_reg")
    if "conv" in kind:
        patch_embed = PatchEmbedConfig(kind="conv")
    else:
        if kind not in DINO_PRESETS:
            raise ValueError(f"official Aggregator.patch_embed = {kind!r} is unknown; known: {sorted(DINO_PRESETS)}")
        _, depth, heads = DINO_PRESETS[kind]
        dino = dict(sec.get("DinoVisionTransformer") or {})
        _check_equal("DinoVisionTransformer", "embed_dim", dino.get("embed_dim"), embed_dim)
        _check_equal(
            "DinoVisionTransformer", "img_size", dino.get("img_size"), fields.get("img_size", defaults.img_size)
        )
        _check_equal(
            "DinoVisionTransformer", "patch_size", dino.get("patch_size"), fields.get("patch_size", defaults.patch_size)
        )
        _check_equal(
            "DinoVisionTransformer",
            "num_register_tokens",
            dino.get("num_register_tokens"),
            fields.get("num_register_tokens", defaults.num_register_tokens),
        )
        _require("DinoVisionTransformer", dino, "ffn_layer", ["mlp"])
        _require("DinoVisionTransformer", dino, "block_chunks", [0])
        for flag in ("qkv_bias", "proj_bias", "ffn_bias"):
            _require("DinoVisionTransformer", dino, flag, [True])
        patch_embed = PatchEmbedConfig(
            kind="dinov2",
            depth=dino.get("depth", depth),
            num_heads=dino.get("num_heads", heads),
            mlp_ratio=float(dino.get("mlp_ratio", 4.0)),
            init_values=float(dino.get("init_values", 1.0)),
            interpolate_antialias=bool(dino.get("interpolate_antialias", True)),
            interpolate_offset=float(dino.get("interpolate_offset", 0.0)),
        )
    return AggregatorConfig(**fields, patch_embed=patch_embed)


def _camera_config(sec: dict[str, Any], dim_in: int) -> CameraHeadConfig:
    cam = dict(sec.get("CameraHead") or {})
    _check_equal("CameraHead", "dim_in", cam.get("dim_in"), dim_in)
    _require("CameraHead", cam, "pose_encoding_type", ["absT_quaR_FoV"])
    _require("CameraHead", cam, "trans_act", ["linear"])
    _require("CameraHead", cam, "quat_act", ["linear"])
    _require("CameraHead", cam, "fl_act", ["relu"])
    kwargs = {k: cam[k] for k in ("trunk_depth", "num_heads", "mlp_ratio", "init_values") if k in cam}
    return CameraHeadConfig(**kwargs)


def _dpt_config(section_name: str, dpt: Mapping[str, Any] | None, dim_in: int, patch_size: int) -> DPTConfig:
    dpt = dict(dpt or {})
    _check_equal(section_name, "dim_in", dpt.get("dim_in"), dim_in)
    ps = dpt.get("patch_size")
    if ps is not None:
        _check_equal(
            section_name, "patch_size", list(ps) if isinstance(ps, list | tuple) else [ps, ps], [patch_size, patch_size]
        )
    kwargs = {k: dpt[k] for k in ("features", "out_channels", "intermediate_layer_idx", "pos_embed") if k in dpt}
    return DPTConfig(**kwargs)


def _track_config(sec: dict[str, Any]) -> TrackHeadConfig:
    track = dict(sec.get("TrackHead") or {})
    predictor = dict(sec.get("BaseTrackerPredictor") or {})
    former = dict(sec.get("EfficientUpdateFormer") or {})
    _require("BaseTrackerPredictor", predictor, "use_spaceatt", [True])
    kwargs = {
        k: track[k]
        for k in ("features", "iters", "stride", "corr_levels", "corr_radius", "hidden_size", "predict_conf")
        if k in track
    }
    for key in ("depth", "max_scale"):
        if key in predictor:
            kwargs[key] = predictor[key]
    for key in ("num_heads", "num_virtual_tracks", "mlp_ratio"):
        if key in former:
            kwargs[key] = former[key]
    extractor = dict(sec.get("TrackHead.feature_extractor") or {})
    if "out_channels" in extractor:
        kwargs["extractor_out_channels"] = extractor["out_channels"]
    if "intermediate_layer_idx" in extractor:
        kwargs["extractor_layer_idx"] = extractor["intermediate_layer_idx"]
    return TrackHeadConfig(**kwargs)


def config_from_official(constructor: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Official constructor arguments -> ``(kind, kwargs)`` with ``kind`` in ``{"vggt", "anysplat"}``.

    ``kwargs`` are the keyword arguments of :class:`vist3a.recon.VGGT` / :class:`vist3a.recon.AnySplat`.
    Unsupported official options raise ``ValueError`` naming the option and its value.
    """
    if not isinstance(constructor, Mapping):
        raise ValueError(f"official configuration must be a dict, got {type(constructor).__name__}")
    sec = _sections(constructor)
    if "encoder_cfg" in sec and "AnySplat.encoder_cfg" not in sec:
        sec["AnySplat.encoder_cfg"] = sec.pop("encoder_cfg")
    if not any(k in sec for k in ("VGGT", "Aggregator", "AnySplat.encoder_cfg")):
        # the Hub VGGT config.json: the three VGGT constructor arguments at top level
        top = {k: constructor[k] for k in ("img_size", "patch_size", "embed_dim") if k in constructor}
        sec = {"VGGT": top}
    agg = _aggregator_config(sec)
    dim_in = 2 * agg.embed_dim
    camera = _camera_config(sec, dim_in)
    dpt = sec.get("DPTHead")
    if "AnySplat.encoder_cfg" in sec:
        enc = dict(sec["AnySplat.encoder_cfg"])
        _require("AnySplat.encoder_cfg", enc, "pred_head_type", ["depth"])
        _require("AnySplat.encoder_cfg", enc, "pose_free", [True])
        _require("AnySplat.encoder_cfg", enc, "gs_params_head_type", ["dpt_gs"])
        _require("AnySplat.encoder_cfg", enc, "opacity_conf", [False])
        _require("AnySplat.encoder_cfg", enc, "gaussians_per_pixel", [1])
        adapter = dict(enc.get("gaussian_adapter") or {})
        sh_degree = int(adapter.get("sh_degree", 4))
        gs = dict(sec.get("VGGT_DPT_GS_Head") or {})
        from vist3a.recon.gaussian_ops import raw_gaussian_dim

        out_dim = gs.get("output_dim")
        if isinstance(out_dim, int):
            _check_equal("VGGT_DPT_GS_Head", "output_dim", out_dim, raw_gaussian_dim(sh_degree) + 1)
        kwargs = {
            "aggregator_config": to_dict(agg),
            "camera_config": to_dict(camera),
            "depth_config": to_dict(_dpt_config("DPTHead", dpt, dim_in, agg.patch_size)),
            "gaussian_config": to_dict(_dpt_config("VGGT_DPT_GS_Head", gs, dim_in, agg.patch_size)),
            "sh_degree": sh_degree,
        }
        if enc.get("intermediate_layer_idx") is not None:
            kwargs["intermediate_layer_idx"] = tuple(int(i) for i in enc["intermediate_layer_idx"])
        for ours, theirs in (
            ("voxel_size", "voxel_size"),
            ("voxelize", "voxelize"),
            ("render_conf", "render_conf"),
            ("conf_threshold", "conf_threshold"),
        ):
            if theirs in enc:
                kwargs[ours] = enc[theirs]
        mapping = dict(enc.get("opacity_mapping") or {})
        if "initial" in mapping:
            kwargs["opacity_exponent_log2"] = float(mapping["initial"])  # inference runs at global_step 0
        return "anysplat", kwargs
    heads = ["camera", "depth", "point"]
    kwargs = {
        "aggregator_config": to_dict(agg),
        "camera_config": to_dict(camera),
        "depth_config": to_dict(_dpt_config("DPTHead", dpt, dim_in, agg.patch_size)),
        "point_config": to_dict(_dpt_config("DPTHead", dpt, dim_in, agg.patch_size)),
    }
    track = _track_config(sec)
    kwargs["track_config"] = to_dict(track)
    if "TrackHead" in sec:
        heads.append("track")
    kwargs["heads"] = tuple(heads)
    return "vggt", kwargs


# ----------------------------------------------------------------------------- state dicts
def _check_kind(kind: str) -> None:
    if kind not in KEY_MAPS:
        raise ValueError(f"model kind must be one of {sorted(KEY_MAPS)}, got {kind!r}")


def official_key_to_vist3a(kind: str, key: str) -> str | None:
    """One official key -> the vist3a key (``None`` if its prefix is not mapped)."""
    _check_kind(kind)
    for theirs, ours in KEY_MAPS[kind]:
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    return None


def vist3a_key_to_official(kind: str, key: str) -> str | None:
    """One vist3a key -> the official key (``None`` if its prefix is not mapped)."""
    _check_kind(kind)
    for theirs, ours in KEY_MAPS[kind]:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    return None


def official_to_vist3a_state_dict(
    kind: str, state_dict: Mapping[str, torch.Tensor], ignore_prefixes: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Rename official keys; keys under :data:`DROPPED_PREFIXES` or ``ignore_prefixes`` are dropped (logged).

    Raises ``ValueError`` listing official keys with no mapping.
    """
    _check_kind(kind)
    drop = tuple(DROPPED_PREFIXES[kind]) + tuple(ignore_prefixes)
    out, dropped, unmapped = {}, [], []
    for key, value in state_dict.items():
        if drop and key.startswith(drop):
            dropped.append(key)
            continue
        new = official_key_to_vist3a(kind, key)
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    if dropped:
        logger.info("ignored %d official %s keys under %s", len(dropped), kind, sorted({p for p in drop}))
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} official {kind} checkpoint keys have no vist3a counterpart: {_preview(unmapped)} "
            f"(known prefixes: {[t for t, _ in KEY_MAPS[kind]]})"
        )
    return out


def vist3a_to_official_state_dict(kind: str, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename vist3a keys to the official ones (the inverse of :func:`official_to_vist3a_state_dict`)."""
    out = {}
    for key, value in state_dict.items():
        new = vist3a_key_to_official(kind, key)
        if new is None:
            raise ValueError(f"vist3a {kind} key {key!r} has no official counterpart")
        out[new] = value
    return out


def _preview(keys: list[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Raise ``ValueError`` listing missing / unexpected / mis-shaped keys of ``state_dict`` for ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: {list(state_dict[k].shape)} vs model {list(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_preview(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {_preview(shapes)}")
    if problems:
        raise ValueError(f"{what} does not fit {type(model).__name__}: " + "; ".join(problems))


def load_official_state_dict(
    model: nn.Module,
    kind: str,
    state_dict: Mapping[str, torch.Tensor],
    ignore_prefixes: Iterable[str] = (),
    assign: bool = False,
) -> None:
    """Convert an official state dict and load it strictly into ``model`` (values cast to the model's dtypes
    unless ``assign``)."""
    converted = official_to_vist3a_state_dict(kind, state_dict, ignore_prefixes)
    check_state_dict(model, converted, f"official {kind} checkpoint")
    model.load_state_dict(converted, strict=True, assign=assign)
