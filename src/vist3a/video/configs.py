"""Configs of the released Wan 2.1 text-to-video models (facts of the checkpoints, as diffusers init kwargs).

Both sizes share the VAE (``AutoencoderKLWan`` defaults: z_dim 16, 4x temporal / 8x spatial) and the
UMT5-XXL text encoder (D = 4096, 512 tokens). Parameter counts of the transformers alone (no text encoder,
no VAE, no RoPE buffers): 1,418,996,800 (1.3B) and 14,288,491,584 (14B).
"""

from __future__ import annotations

from typing import Any

#: Hub repos (diffusers layout: vae/, transformer/, text_encoder/, tokenizer/, scheduler/).
WAN_REPOS: dict[str, str] = {
    "1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "14b": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
}

_SHARED: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}

_SIZES: dict[str, dict[str, Any]] = {
    "1.3b": {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    "14b": {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40},
}


def _size_key(size: str) -> str:
    key = size.lower().replace("-", "").replace("_", "") if isinstance(size, str) else size
    if key not in _SIZES:
        raise ValueError(f"`size` must be one of {list(_SIZES)}, got {size!r}")
    return key


def wan_transformer_config(size: str = "1.3b") -> dict[str, Any]:
    """``WanTransformer3DModel`` kwargs of Wan 2.1 T2V ``"1.3b"`` or ``"14b"`` (a fresh dict)."""
    return {**_SHARED, **_SIZES[_size_key(size)]}


def wan_repo_id(size: str = "1.3b") -> str:
    """The diffusers-format Hub repo of Wan 2.1 T2V ``size``."""
    return WAN_REPOS[_size_key(size)]
