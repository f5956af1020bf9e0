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

import torch

from vist3a.data.clip import check_num_frames  # the one 4k+1 check (re-exported here)
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


def frames_to_vae(frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[B, T, 3, H, W]`` in ``[0, 1]`` -> the Wan VAE's input ``[B, 3, T, H, W]`` in ``[-1, 1]``."""
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"`frames` must be shaped [B, T, 3, H, W], got {tuple(frames.shape)}")
    return frames.permute(0, 2, 1, 3, 4) * 2.0 - 1.0


def vae_to_frames(video: torch.Tensor) -> torch.Tensor:
    """The Wan VAE's output ``[B, 3, T, H, W]`` in ``[-1, 1]`` -> frames ``[B, T, 3, H, W]`` float32 in ``[0, 1]``."""
    return ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 1, 3, 4)
