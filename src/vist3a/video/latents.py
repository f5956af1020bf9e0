"""The one conversion between the two spaces Wan latents live in.

* **raw** (VAE space): what ``AutoencoderKLWan.encode`` returns and ``decode`` expects, and what the stitched
  decoder consumes.
* **normalised** (diffusion space): ``(raw - latents_mean) / latents_std`` per channel; the space the Wan
  transformer was trained in, in which the sampler starts from N(0, I).

Every function in ``vist3a.video`` names the space of the latents it takes and returns. Latents are laid out
``[B, C, T_lat, h, w]`` with ``C = vae_config.z_dim`` (16 for Wan 2.1); ``latents_mean`` / ``latents_std`` are the
per-channel lists stored in the VAE's ``config.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def _config_value(vae_config: Any, name: str) -> Any:
    """Read ``name`` from a diffusers config (FrozenDict / attribute access) or a plain mapping."""
    if isinstance(vae_config, Mapping):
        if name not in vae_config:
            raise ValueError(f"`vae_config` must define `{name}`, but its keys are {sorted(vae_config)}")
        return vae_config[name]
    if not hasattr(vae_config, name):
        raise ValueError(f"`vae_config` must define `{name}`, got an object of type {type(vae_config).__name__}")
    return getattr(vae_config, name)


def latent_stats(
    vae_config: Any, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(mean, std)`` of raw latents, each ``[1, C, 1, 1, 1]`` to broadcast over ``[B, C, T, h, w]``.

    Accepts the VAE's ``config`` (``vae.config``) or any mapping with ``latents_mean`` and ``latents_std``.
    """
    mean: Sequence[float] = _config_value(vae_config, "latents_mean")
    std: Sequence[float] = _config_value(vae_config, "latents_std")
    if len(mean) != len(std):
        raise ValueError(
            f"`latents_mean` and `latents_std` must have one entry per latent channel, got {len(mean)} and {len(std)}"
        )
    std_t = torch.tensor(list(std), dtype=dtype, device=device)
    if not bool((std_t > 0).all()):
        raise ValueError(f"`latents_std` must be positive, got {list(std)}")
    mean_t = torch.tensor(list(mean), dtype=dtype, device=device)
    return mean_t.view(1, -1, 1, 1, 1), std_t.view(1, -1, 1, 1, 1)


def _check_latents(z: torch.Tensor, channels: int, name: str) -> None:
    if z.ndim != 5 or z.shape[1] != channels:
        raise ValueError(
            f"`{name}` must be shaped [B, {channels}, T_lat, h, w] (channel count from the VAE config), "
            f"got {tuple(z.shape)}"
        )


def normalize_latents(raw_latents: torch.Tensor, vae_config: Any) -> torch.Tensor:
    """Raw (VAE-space) latents ``[B, C, T_lat, h, w]`` -> normalised (diffusion-space) latents, same shape.

    The arithmetic runs in float32 and the result is cast back to the input dtype; autograd flows through.
    """
    mean, std = latent_stats(vae_config, device=raw_latents.device)
    _check_latents(raw_latents, mean.shape[1], "raw_latents")
    return ((raw_latents.float() - mean) / std).to(raw_latents.dtype)


def denormalize_latents(normalized_latents: torch.Tensor, vae_config: Any) -> torch.Tensor:
    """Normalised (diffusion-space) latents ``[B, C, T_lat, h, w]`` -> raw (VAE-space) latents, same shape.

    This is what the sampler's output needs before ``vae.decode`` or the stitched decoder.
    """
    mean, std = latent_stats(vae_config, device=normalized_latents.device)
    _check_latents(normalized_latents, mean.shape[1], "normalized_latents")
    return (normalized_latents.float() * std + mean).to(normalized_latents.dtype)
