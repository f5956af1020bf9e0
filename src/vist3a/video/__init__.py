"""The Wan 2.1 generator side: latents, frame rules, text encoders, templates, sampler, LoRA, generator.

Light modules (latents, frames, templates, configs) are imported eagerly; the ones that pull in diffusers
or transformers are loaded on first attribute access, so ``import vist3a.video`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from vist3a.video.configs import WAN_REPOS, wan_repo_id, wan_transformer_config
from vist3a.video.frames import check_num_frames, check_resolution, latent_shape, num_latent_frames, vae_scale_factors
from vist3a.video.latents import denormalize_latents, latent_stats, normalize_latents
from vist3a.video.templates import (
    CAMERA_MOTION_TEMPLATES,
    NEGATIVE_PROMPT,
    ORBIT_TEMPLATE,
    TEMPLATES,
    apply_template,
    augment_prompt,
)

_LAZY = {
    "sample": "sampler",
    "make_scheduler": "sampler",
    "scheduler_timesteps": "sampler",
    "initial_noise": "sampler",
    "TextEncoder": "text",
    "HFTextEncoder": "text",
    "UMT5TextEncoder": "text",
    "load_text_encoder": "text",
    "load_minilm_text_encoder": "text",
    "WanGenerator": "generator",
    "add_lora": "lora",
    "load_lora": "lora",
    "merge_lora": "lora",
    "save_lora": "lora",
    "has_lora": "lora",
    "lora_state_dict": "lora",
    "tiny_wan_configs": "tiny",
    "build_tiny_generator": "tiny",
}

__all__ = [
    "CAMERA_MOTION_TEMPLATES",
    "NEGATIVE_PROMPT",
    "ORBIT_TEMPLATE",
    "TEMPLATES",
    "WAN_REPOS",
    "apply_template",
    "augment_prompt",
    "check_num_frames",
    "check_resolution",
    "denormalize_latents",
    "latent_shape",
    "latent_stats",
    "normalize_latents",
    "num_latent_frames",
    "vae_scale_factors",
    "wan_repo_id",
    "wan_transformer_config",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"vist3a.video.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vist3a.video' has no attribute {name!r}")
