"""``StitchedDecoder``: raw video-VAE latents (+ RGB frames) -> the outputs of a reconstruction model.

It holds three things:

- ``stitching_layer``: the :class:`~vist3a.stitching.spec.StitchingLayer` (latent resampling + Conv3d),
- ``recon``: the reconstruction model *cut* at ``enc_blocks_k``: its DINO patch projection and blocks ``1..k``
  are deleted and the remaining blocks renumbered from 0 (as in the released checkpoint's key names),
  optionally with PEFT LoRA on every Linear/Conv2d of what is left,
- an adapter (:mod:`vist3a.stitching.adapters`) that knows how to run the cut model from tokens.

Shapes: latents ``[B, C_lat, T_lat, h, w]`` (raw, *not* diffusion-normalised) become ``T = (T_lat − 1)·f + 1``
views (``f`` = the VAE's temporal factor) of ``Hp x Wp`` tokens; frames ``[B, T, 3, H, W]`` in ``[0, 1]`` are
resized to the model's input size ``(Hp·p, Wp·p)`` (p = patch size). Works for any ``T_lat >= 1``.

Saving: ``save_pretrained(dir)`` writes ``config.json`` (recon type and config, layer, spec, LoRA settings) and
the weights as safetensors; ``from_pretrained(dir)`` rebuilds it. :meth:`StitchedDecoder.from_official_checkpoint`
loads the released ``anysplat_stitched.pth`` layout on top of a base AnySplat (see
:mod:`vist3a.stitching.checkpoint`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vist3a.stitching.adapters import ReconAdapter, adapter_for_model, get_adapter, layer_name
from vist3a.stitching.lora import LoraSettings, add_lora, has_lora, lora_parameters, merge_lora
from vist3a.stitching.spec import (
    RELEASE_LATENT_CHANNELS,
    RELEASE_TEMPORAL_FACTOR,
    StitchingLayer,
    build_stitching_layer,
    parse_spec,
)

logger = logging.getLogger(__name__)


def resize_frames(frames: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """``[B, V, 3, H, W] -> [B, V, 3, h, w]``, bilinear with ``align_corners=False`` — the release's inference
    resize of decoded frames for the 3D model (a per-frame trilinear resize), and the same resize
    :func:`vist3a.data.resize_and_crop` gives the teacher; a no-op when the size already matches."""
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must have shape [B, V, 3, H, W] (RGB in [0, 1]), got {list(frames.shape)}")
    if tuple(frames.shape[-2:]) == tuple(size_hw):
        return frames
    b, v = frames.shape[:2]
    out = F.interpolate(frames.flatten(0, 1), size=tuple(size_hw), mode="bilinear", align_corners=False)
    return out.reshape(b, v, 3, *size_hw)


class StitchedDecoder(ModelMixin, ConfigMixin):
    """A reconstruction model stitched onto video-VAE latents.

    Args:
        recon_type: adapter name, ``"anysplat"`` or ``"vggt"``.
        recon_config: the recon model's config dict (its ``config.json``), used to build the model tree.
        layer: cut point ``"enc_blocks_k"`` (output of DINO block k; ``"enc_blocks_0"`` replaces only the
            patch projection).
        spec: stitching-layer spec, e.g. ``"conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"``; its output channels must equal
            the recon model's token width.
        latent_channels: channels of the VAE latent (the adapter's ``latent_channels``; default: the release's 16).
        temporal_factor: the VAE's temporal compression (views = ``(T_lat − 1)·factor + 1``; default: the
            release's 4, 1 for SVD).
        latent_hw: resample the latent to this spatial size first (the release: ``resolution // 8``); ``None``
            keeps the latent size.
        lora_rank, lora_alpha: PEFT LoRA on every Linear/Conv2d of the cut model (rank 0: none).
        pos_embed_hw_swap: see :class:`~vist3a.stitching.adapters.ReconAdapter` (release behaviour: True).

    Example:
        >>> decoder = StitchedDecoder.from_pretrained("runs/stitch/final")
        >>> out = decoder(raw_latents, frames)    # [1, 16, 4, 64, 64], [1, 13, 3, 512, 512] in [0, 1]
        >>> out.gaussians[0], out.cameras.w2c      # AnySplat outputs on 13 views of 448 px
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        recon_type: str,
        recon_config: dict,
        layer: str,
        spec: str,
        latent_channels: int = RELEASE_LATENT_CHANNELS,
        temporal_factor: int = RELEASE_TEMPORAL_FACTOR,
        latent_hw: tuple[int, int] | None = None,
        lora_rank: int = 0,
        lora_alpha: float = 32.0,
        pos_embed_hw_swap: bool = True,
    ) -> None:
        super().__init__()
        self.adapter: ReconAdapter = get_adapter(recon_type, pos_embed_hw_swap=pos_embed_hw_swap)
        recon = self.adapter.build_model(recon_config)
        self.layer_index = self.adapter.check_layer(recon, layer)
        width = self.adapter.token_width(recon)
        stitch_spec = parse_spec(spec)
        if stitch_spec.out_channels != width:
            raise ValueError(
                f"spec {spec!r} has {stitch_spec.out_channels} output channels, but the {recon_type} tokens have "
                f"{width} (embed_dim); use ..._o{width}_..."
            )
        self.recon = self.adapter.cut(recon, self.layer_index)
        self.stitching_layer: StitchingLayer = build_stitching_layer(
            stitch_spec,
            in_channels=latent_channels,
            temporal_factor=temporal_factor,
            target_hw=None if latent_hw is None else (int(latent_hw[0]), int(latent_hw[1])),
        )
        if lora_rank:
            add_lora(self.recon, LoraSettings(lora_rank, lora_alpha))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_recon(
        cls,
        model: nn.Module,
        layer: str,
        spec: str,
        stitching_layer: nn.Module | Mapping[str, torch.Tensor] | None = None,
        latent_channels: int = RELEASE_LATENT_CHANNELS,
        temporal_factor: int = RELEASE_TEMPORAL_FACTOR,
        latent_hw: tuple[int, int] | None = None,
        lora: LoraSettings | None = None,
        pos_embed_hw_swap: bool = True,
    ) -> StitchedDecoder:
        """Stitch an existing recon model (its weights are copied; ``model`` is left untouched).

        ``stitching_layer``: a fitted layer (module or ``{weight, bias}``), e.g. from the layer search; default
        PyTorch init otherwise. ``lora``: add fresh LoRA adapters.
        """
        from accelerate import init_empty_weights

        adapter = adapter_for_model(model, pos_embed_hw_swap=pos_embed_hw_swap)
        with init_empty_weights():
            decoder = cls(
                recon_type=adapter.name,
                recon_config=adapter.model_config(model),
                layer=layer,
                spec=str(parse_spec(spec)),
                latent_channels=latent_channels,
                temporal_factor=temporal_factor,
                latent_hw=None if latent_hw is None else [int(v) for v in latent_hw],
                lora_rank=0,
                pos_embed_hw_swap=pos_embed_hw_swap,
            )
        state = adapter.cut_state_dict(model.state_dict(), decoder.layer_index)
        decoder.recon.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True, assign=True)
        # buffers that are not in the state dict (non-persistent) are still on the meta device: copy them
        cut_buffers = dict(decoder.recon.named_buffers())
        src_buffers = adapter.cut_state_dict(dict(model.named_buffers()), decoder.layer_index)
        for name, buf in cut_buffers.items():
            if buf.is_meta:
                module_name, _, attr = name.rpartition(".")
                owner = decoder.recon.get_submodule(module_name) if module_name else decoder.recon
                owner._buffers[attr] = src_buffers[name].detach().clone()
        layer_module = build_stitching_layer(
            decoder.stitching_layer.spec, latent_channels, temporal_factor, decoder.stitching_layer.target_hw
        )
        decoder.stitching_layer = layer_module
        if stitching_layer is not None:
            decoder.load_stitching_layer(stitching_layer)
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        decoder.to(device=device)
        decoder.stitching_layer.to(dtype=dtype)
        if lora is not None and lora.rank:
            decoder.add_lora(lora)
        return decoder

    @classmethod
    def from_official_checkpoint(
        cls,
        base_model: nn.Module,
        checkpoint: str | Path | Mapping[str, Any],
        layer: str = "enc_blocks_2",
        spec: str = "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1",
        lora_alpha: float = 32.0,
        latent_hw: tuple[int, int] | None = None,
        temporal_factor: int = RELEASE_TEMPORAL_FACTOR,
    ) -> StitchedDecoder:
        """A released VIST3A stitching checkpoint on top of the *uncut* base AnySplat ``base_model``.

        The file (``.pth`` nested dict or flat ``.safetensors`` with ``lora/<key>`` names) holds LoRA factors and
        biases, the stitching layer and the DINO special tokens; the LoRA is merged into the weights (the
        release's Conv2d LoRA has a different factorisation than PEFT's). Loading is strict: missing or
        unexpected entries are listed in the ``ValueError``. Defaults are the release's (``enc_blocks_2``, r64/α32).
        """
        from vist3a.stitching.checkpoint import apply_official_checkpoint, read_official_checkpoint

        entries = read_official_checkpoint(checkpoint) if not isinstance(checkpoint, Mapping) else dict(checkpoint)
        weight = entries.get("stitching_layer/weight")
        channels = int(weight.shape[1]) if weight is not None else RELEASE_LATENT_CHANNELS
        decoder = cls.from_recon(
            base_model, layer, spec, latent_channels=channels, temporal_factor=temporal_factor, latent_hw=latent_hw
        )
        apply_official_checkpoint(decoder, entries, lora_alpha)
        return decoder

    # ------------------------------------------------------------------ parts
    def load_stitching_layer(self, layer: nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Copy a fitted stitching layer (module or ``{weight, bias}``) into this decoder (strict)."""
        state = layer.state_dict() if isinstance(layer, nn.Module) else dict(layer)
        ours = self.stitching_layer.state_dict()
        if set(state) != set(ours) or any(tuple(state[k].shape) != tuple(ours[k].shape) for k in ours):
            raise ValueError(
                "stitching layer weights do not fit spec "
                f"{self.config.spec}: expected { ({k: list(v.shape) for k, v in ours.items()}) }, "
                f"got { ({k: list(v.shape) for k, v in state.items()}) }"
            )
        with torch.no_grad():
            for key, value in state.items():
                ours[key].copy_(value.to(ours[key].dtype))

    def add_lora(self, settings: LoraSettings) -> None:
        """Add fresh PEFT LoRA adapters to the cut model (recorded in the config)."""
        if has_lora(self.recon):
            raise ValueError("this decoder already has LoRA adapters; merge_lora() first to add new ones")
        add_lora(self.recon, settings)
        self.register_to_config(lora_rank=settings.rank, lora_alpha=settings.alpha)

    def merge_lora(self) -> None:
        """Fold the LoRA adapters into the weights (for inference); the config then records ``lora_rank=0``."""
        merge_lora(self.recon)
        self.register_to_config(lora_rank=0)

    def trainable_parameters(self, lora_biases: bool = True) -> dict[str, nn.Parameter]:
        """The parameters stitched fine-tuning trains: stitching layer, LoRA factors (+ the wrapped modules'
        biases), DINO CLS and register tokens. Names are this module's ``named_parameters`` names."""
        out = {f"stitching_layer.{k}": p for k, p in self.stitching_layer.named_parameters()}
        out.update({f"recon.{k}": p for k, p in lora_parameters(self.recon, lora_biases).items()})
        out.update({f"recon.{k}": p for k, p in self.adapter.special_tokens(self.recon).items()})
        return out

    @property
    def layer(self) -> str:
        return layer_name(self.layer_index)

    @property
    def patch_size(self) -> int:
        return self.adapter.patch_size(self.recon)

    def token_grid(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """Patch grid ``(Hp, Wp)`` produced from a latent of spatial size ``latent_hw``."""
        hw = self.stitching_layer.target_hw or tuple(latent_hw)
        return self.stitching_layer.spec.output_thw(1, *hw)[1:]

    def image_size(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """Input size ``(H, W)`` of the recon model for a latent of spatial size ``latent_hw``."""
        hp, wp = self.token_grid(latent_hw)
        return hp * self.patch_size, wp * self.patch_size

    # ------------------------------------------------------------------ forward
    def forward(self, raw_latents: torch.Tensor, frames: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """Decode raw latents ``[B, C_lat, T_lat, h, w]`` (+ frames ``[B, T, 3, H, W]`` in ``[0, 1]``).

        ``T`` must be ``(T_lat − 1)·temporal_factor + 1``; frames are resized to the recon input size. AnySplat
        needs the frames (its Gaussian head reads the RGB). ``kwargs`` go to the recon decoding step (AnySplat:
        ``voxelize``, ``frames_chunk_size``). Returns the recon model's typed outputs
        (:class:`~vist3a.recon.outputs.AnySplatOutput` / :class:`~vist3a.recon.outputs.VGGTOutput`).
        """
        channels = self.config.latent_channels
        if raw_latents.ndim != 5 or raw_latents.shape[1] != channels:
            raise ValueError(f"raw_latents must have shape [B, {channels}, T_lat, h, w], got {list(raw_latents.shape)}")
        tokens = self.stitching_layer(raw_latents.to(self.stitching_layer.weight.dtype))  # [B, C, T, Hp, Wp]
        batch, width, views, hp, wp = tokens.shape
        if frames is not None:
            if frames.ndim != 5 or frames.shape[0] != batch or frames.shape[1] != views:
                raise ValueError(
                    f"frames must have shape [B={batch}, T={views}, 3, H, W] for latents with "
                    f"T_lat={raw_latents.shape[2]} (T = (T_lat - 1) * {self.config.temporal_factor} + 1), "
                    f"got {list(frames.shape)}"
                )
            frames = resize_frames(frames, (hp * self.patch_size, wp * self.patch_size)).to(tokens.dtype)
        tokens = tokens.permute(0, 2, 3, 4, 1).reshape(batch * views, hp * wp, width)
        return self.adapter.run_tail(self.recon, tokens, 0, (hp, wp), views, frames, **kwargs)
