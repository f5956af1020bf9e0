"""Tiny random generators for tests and the nano stage (CPU, built in well under a second).

The tiny Wan 2.1 VAE keeps the released one's ``z_dim = 16``, 4x temporal and 8x spatial compression and latent
statistics; ``vae="wan2.2"`` swaps in a tiny 48-channel, 16x Wan 2.2 VAE (and a transformer of 48 channels), and
``vae="cogvideox"`` builds a tiny CogVideoX generator (:mod:`vist3a.video.cogvideox`).
The tiny transformer keeps patch (1, 2, 2) with 2 layers of 2 heads x 12 dims. The text encoder is either a
tiny random UMT5 (Wan's class, so the real loading path is exercised) using the offline MiniLM tokenizer, or
the real all-MiniLM-L6-v2 encoder (D = 384) for the nano stage.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from vist3a.video.generator import WanGenerator
from vist3a.video.sampler import make_scheduler
from vist3a.video.text import HFTextEncoder, UMT5TextEncoder, load_minilm_text_encoder, minilm_model_dir

#: Width of the shipped MiniLM encoder's token states.
MINILM_DIM = 384


def tiny_vae_config() -> dict[str, Any]:
    """``AutoencoderKLWan`` kwargs: base_dim 8, 1 res block; 3 spatial stages (8x), 2 of them temporal (4x)."""
    return {
        "base_dim": 8,
        "z_dim": 16,
        "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": 1,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
    }


def tiny_transformer_config(text_dim: int = 32, latent_channels: int = 16) -> dict[str, Any]:
    """``WanTransformer3DModel`` kwargs: 2 layers, 2 heads x 12 dims, patch (1, 2, 2), ``text_dim`` and latent
    channels as given."""
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "in_channels": latent_channels,
        "out_channels": latent_channels,
        "text_dim": text_dim,
        "freq_dim": 32,
        "ffn_dim": 32,
        "num_layers": 2,
        "rope_max_seq_len": 32,
    }


def tiny_text_encoder_config(d_model: int = 32, vocab_size: int = 30522, pad_token_id: int = 0) -> dict[str, Any]:
    """``UMT5Config`` kwargs of a 1-layer, 2-head encoder of width ``d_model``."""
    return {
        "vocab_size": vocab_size,
        "d_model": d_model,
        "d_kv": 8,
        "d_ff": 2 * d_model,
        "num_layers": 1,
        "num_heads": 2,
        "relative_attention_num_buckets": 8,
        "relative_attention_max_distance": 16,
        "dropout_rate": 0.0,
        "feed_forward_proj": "gated-gelu",
        "pad_token_id": pad_token_id,
        "decoder_start_token_id": pad_token_id,
    }


def tiny_wan_configs(text_dim: int = 32) -> dict[str, dict[str, Any]]:
    """The three tiny configs: ``{"vae": ..., "transformer": ..., "text_encoder": ...}``."""
    return {
        "vae": tiny_vae_config(),
        "transformer": tiny_transformer_config(text_dim),
        "text_encoder": tiny_text_encoder_config(text_dim),
    }


def _tiny_umt5(text_dim: int, max_length: int) -> HFTextEncoder:
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_model_dir(), local_files_only=True)
    config = UMT5Config(**tiny_text_encoder_config(text_dim, len(tokenizer), tokenizer.pad_token_id or 0))
    return UMT5TextEncoder(UMT5EncoderModel(config), tokenizer, max_length=max_length)


def _cast_keeping_fp32(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast ``model`` to ``dtype`` except the sub-modules diffusers keeps in fp32 (``_keep_in_fp32_modules``)."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, module in model.named_modules():
        if keep.intersection(name.split(".")):
            continue
        for pname, param in module.named_parameters(recurse=False):
            setattr(module, pname, torch.nn.Parameter(param.detach().to(dtype), requires_grad=param.requires_grad))


def build_tiny_generator(
    seed: int = 0,
    *,
    text_encoder: Literal["umt5", "minilm"] = "umt5",
    text_dim: int | None = None,
    text_max_length: int = 16,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    vae: str = "wan2.1",
) -> WanGenerator:
    """A random-weight :class:`WanGenerator` (seeded, without touching the global RNG).

    ``text_encoder="umt5"``: tiny random UMT5 of width ``text_dim`` (default 32). ``"minilm"``: the shipped
    all-MiniLM-L6-v2 (``text_dim`` must be 384 or ``None``). The scheduler is UniPC (flow shift 3, as Wan's).
    ``vae``: ``"wan2.1"``, ``"wan2.2"`` (48 latent channels) or ``"cogvideox"`` (a
    :class:`~vist3a.video.cogvideox.CogVideoXGenerator` with a tiny T5; ``text_encoder`` is ignored).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vist3a.video.vae_adapters import family_name
    from vist3a.video.vae_adapters import tiny_vae_config as family_vae_config

    family = family_name(vae)
    if family == "cogvideox":
        from vist3a.video.cogvideox import build_tiny_cogvideox_generator

        return build_tiny_cogvideox_generator(seed, device=device, dtype=dtype, text_dim=text_dim or 32,
                                              text_max_length=text_max_length)
    if family not in ("wan2.1", "wan2.2"):
        raise ValueError(f"`vae` must be wan2.1, wan2.2 or cogvideox for a tiny generator, got {vae!r}")

    if text_encoder == "minilm":
        if text_dim not in (None, MINILM_DIM):
            raise ValueError(f"`text_dim` must be {MINILM_DIM} (or None) with the MiniLM encoder, got {text_dim}")
        encoder = load_minilm_text_encoder(max_length=text_max_length)
        width = MINILM_DIM
    elif text_encoder == "umt5":
        width = 32 if text_dim is None else text_dim
        if width < 1:
            raise ValueError(f"`text_dim` must be positive, got {text_dim}")
        encoder = None
    else:
        raise ValueError(f"`text_encoder` must be 'umt5' or 'minilm', got {text_encoder!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae_model = AutoencoderKLWan(**family_vae_config(family))
        channels = int(vae_model.config.z_dim)
        transformer = WanTransformer3DModel(**tiny_transformer_config(width, channels))
        if encoder is None:
            encoder = _tiny_umt5(width, text_max_length)
    if dtype != torch.float32:
        _cast_keeping_fp32(transformer, dtype)
        encoder.model.to(dtype)
    return WanGenerator(vae_model, transformer, encoder, make_scheduler("unipc", shift=3.0), device=device)
