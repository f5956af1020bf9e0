"""Frame-count and resolution rules of the Wan VAE, derived from its config.

The Wan VAE is causal in time: the first frame gets its own latent frame and every further
``temporal_factor`` frames share one, so a clip of ``T`` frames maps to ``(T - 1) / temporal_factor + 1``
latent frames and only ``T = temporal_factor * k + 1`` is valid (9, 13, 17, ... for the 4x VAE). Spatially
the VAE downsamples by ``spatial_factor`` (8), and the transformer then patchifies by its ``patch_size``
(2 x 2), so pixel sizes must be multiples of ``spatial_factor * patch`` (16).
"""

from __future__ import annotations

import logging
from typing import Any

from vist3a.video.latents import _config_value

logger = logging.getLogger(__name__)


def vae_scale_factors(vae_config: Any) -> tuple[int, int]:
    """``(temporal_factor, spatial_factor)`` of a Wan VAE, derived from its architecture.

    Each entry of ``temperal_downsample`` (sic, diffusers' key) is one 2x spatial downsampling stage, and a
    ``True`` entry also halves time; an optional ``patch_size`` (Wan 2.2 VAE) multiplies the spatial factor.
    If the config also states ``scale_factor_temporal`` / ``scale_factor_spatial``, they must agree.
    """
    stages = list(_config_value(vae_config, "temperal_downsample"))
    get = vae_config.get if hasattr(vae_config, "get") else lambda k, d=None: getattr(vae_config, k, d)
    patch = get("patch_size", None) or 1
    temporal = 2 ** sum(bool(s) for s in stages)
    spatial = 2 ** len(stages) * int(patch)
    for key, derived in (("scale_factor_temporal", temporal), ("scale_factor_spatial", spatial)):
        stated = get(key, None)
        if stated is not None and int(stated) != derived:
            raise ValueError(
                f"VAE config states `{key}`={stated}, but its architecture (temperal_downsample={stages}, "
                f"patch_size={get('patch_size', None)}) gives {derived}"
            )
    return temporal, spatial


def check_num_frames(num_frames: int, temporal_factor: int = 4, round_up: bool = False) -> int:
    """Return ``num_frames`` if it is ``temporal_factor * k + 1``; else round it up (``round_up``) or raise.

    Rounding goes up to the next valid count (12 -> 13) and is logged, never silent.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        raise ValueError(f"`num_frames` must be an int, got {num_frames!r}")
    if isinstance(temporal_factor, bool) or not isinstance(temporal_factor, int) or temporal_factor < 1:
        raise ValueError(f"`temporal_factor` must be a positive int, got {temporal_factor!r}")
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be at least 1, got {num_frames}")
    if (num_frames - 1) % temporal_factor == 0:
        return num_frames
    valid = -(-(num_frames - 1) // temporal_factor) * temporal_factor + 1
    if round_up:
        logger.warning("Adjusting num_frames %d -> %d (must be %dk+1)", num_frames, valid, temporal_factor)
        return valid
    examples = ", ".join(str(temporal_factor * k + 1) for k in range(2, 5))
    raise ValueError(
        f"num_frames must be {temporal_factor}k+1 (..., {examples}, ...), got {num_frames}; "
        f"pass --round-frames (round_up=True) to use {valid}"
    )


def num_latent_frames(num_frames: int, temporal_factor: int = 4) -> int:
    """Latent frames of a valid clip: ``(num_frames - 1) // temporal_factor + 1``."""
    return (check_num_frames(num_frames, temporal_factor) - 1) // temporal_factor + 1


def check_resolution(height: int, width: int, multiple: int | tuple[int, int] = 16) -> tuple[int, int]:
    """Return ``(height, width)`` if both are positive multiples of ``multiple`` (``(mh, mw)`` or one int).

    For Wan the multiple is the VAE's spatial factor times the transformer patch (8 * 2 = 16).
    """
    mh, mw = (multiple, multiple) if isinstance(multiple, int) else multiple
    if mh < 1 or mw < 1:
        raise ValueError(f"`multiple` must be positive, got {multiple!r}")
    bad = [
        f"`{name}`={value}"
        for name, value, m in (("height", height, mh), ("width", width, mw))
        if isinstance(value, bool) or not isinstance(value, int) or value < m or value % m
    ]
    if bad:
        suggestion = (max(mh, round(height / mh) * mh), max(mw, round(width / mw) * mw))
        raise ValueError(
            f"`height` and `width` must be positive multiples of ({mh}, {mw}) (VAE downsampling x transformer "
            f"patch), got {', '.join(bad)}; e.g. use {suggestion[0]}x{suggestion[1]}"
        )
    return height, width


def latent_shape(num_frames: int, height: int, width: int, vae_config: Any) -> tuple[int, int, int, int]:
    """``(C, T_lat, h, w)`` of the latents of a ``num_frames`` x ``height`` x ``width`` clip (no batch axis).

    ``C = z_dim``; ``T_lat = (num_frames - 1) / temporal_factor + 1``; ``h, w`` = pixels / spatial_factor.
    Raises ``ValueError`` for an invalid frame count or sizes that are not multiples of the spatial factor.
    """
    temporal, spatial = vae_scale_factors(vae_config)
    frames = check_num_frames(num_frames, temporal)
    check_resolution(height, width, spatial)
    z_dim = int(_config_value(vae_config, "z_dim"))
    return z_dim, (frames - 1) // temporal + 1, height // spatial, width // spatial
