"""Model adapters: what the stitching code needs to know about each reconstruction model.

Stitching cuts a reconstruction model after one of the DINOv2 blocks of its patch embedder, feeds the tokens
of a stitching layer in their place, and trains the result to copy the original model. Everything
model-specific about that lives behind :class:`ReconAdapter`:

- ``candidate_layers``: the cut points ``enc_blocks_1 .. enc_blocks_N`` (output of DINO block ``i``),
- ``feature_hooks`` / ``candidate_features``: those block outputs on real frames, prefix tokens dropped,
- ``cut`` / ``cut_state_dict``: delete the patch projection and blocks ``< k`` (renumbering the rest from 0),
- ``run_tail``: the stitched forward from tokens to the model's typed outputs (``run_tail_from_trunk``: the same
  from a DINO trunk state, prefix tokens included); both end in the model's own ``decode(agg, frames)``, the half
  of its forward after ``encode(frames)`` (AnySplat and VGGT alike),
- ``distill_targets`` / ``loss_terms``: which outputs the fine-tuning loss compares, with default weights.

Adapters are looked up by name in :data:`ADAPTERS` (``get_adapter``) or by model class
(``adapter_for_model``); unknown names raise ``ValueError``.

Token conventions: the DINO trunk holds ``[CLS, reg_1 .. reg_R, patch_1 .. patch_P]`` per frame
(``R = num_register_tokens``, so the prefix is ``1 + R`` tokens); patch tokens are row-major on the
``Hp x Wp`` grid; stitched tokens are ``[B·V, Hp·Wp, C]`` with ``C = embed_dim``.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vist3a.stitching.losses import LossTerm

LAYER_PREFIX = "enc_blocks_"
_LAYER_RE = re.compile(rf"^{LAYER_PREFIX}(\d+)$")


def layer_name(index: int) -> str:
    """``k -> "enc_blocks_k"`` (output of DINO block ``k``, 1-based; 0 = the patch projection alone)."""
    return f"{LAYER_PREFIX}{index}"


def layer_index(name: str) -> int:
    """``"enc_blocks_k" -> k``; raises ``ValueError`` for anything else."""
    match = _LAYER_RE.match(str(name))
    if match is None:
        raise ValueError(f"layer must be named '{LAYER_PREFIX}<k>' (e.g. '{LAYER_PREFIX}2'), got {name!r}")
    return int(match.group(1))


class FeatureCapture:
    """Forward hooks on DINO blocks; ``features[name]`` is the last captured ``[N, P, C]`` (prefix dropped)."""

    def __init__(self, blocks: Sequence[nn.Module], names: Mapping[str, int], num_prefix_tokens: int) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._handles = []
        for name, index in names.items():
            self._handles.append(blocks[index - 1].register_forward_hook(self._hook(name, num_prefix_tokens)))

    def _hook(self, name: str, prefix: int):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            self.features[name] = output[:, prefix:]

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class ReconAdapter(ABC):
    """Model-specific pieces of stitching for one reconstruction model family (see the module docstring).

    Args:
        pos_embed_hw_swap: interpolate the DINO positional embedding for the stitched tokens on a
            ``(Wp, Hp)`` grid instead of ``(Hp, Wp)``, as the release's stitched forward does (it passes width and
            height swapped). Identical for square grids, the only official use; set False for non-square inputs.
    """

    name: str = ""
    needs_frames: bool = False
    """Whether :meth:`run_tail` needs the RGB frames' pixel values (not only their size)."""

    def __init__(self, pos_embed_hw_swap: bool = True) -> None:
        self.pos_embed_hw_swap = pos_embed_hw_swap

    # ------------------------------------------------------------------ model class
    @property
    @abstractmethod
    def model_class(self) -> type[nn.Module]:
        """The recon class (a diffusers ``ModelMixin``)."""

    def build_model(self, config: Mapping[str, Any]) -> nn.Module:
        """A randomly initialised model from its config dict (as saved in ``config.json``)."""
        return self.model_class.from_config(dict(config))

    def model_config(self, model: nn.Module) -> dict[str, Any]:
        """The model's constructor config as a JSON-friendly dict (private ``_*`` keys dropped)."""
        return _jsonable({k: v for k, v in dict(model.config).items() if not k.startswith("_")})

    # ------------------------------------------------------------------ trunk facts
    def dino(self, model: nn.Module) -> nn.Module:
        """The DINOv2 patch embedder inside the aggregator."""
        dino = model.aggregator.patch_embed
        if not hasattr(dino, "blocks"):
            raise ValueError(f"{type(model).__name__} has no DINOv2 patch embedder (patch_embed kind 'conv')")
        return dino

    def depth(self, model: nn.Module) -> int:
        """DINO blocks of the *uncut* model (from the config, so it also holds for a cut model)."""
        return int(model.aggregator.config.patch_embed.depth)

    def token_width(self, model: nn.Module) -> int:
        """Channels of a DINO token (the stitching layer's output channels)."""
        return int(model.aggregator.config.embed_dim)

    def patch_size(self, model: nn.Module) -> int:
        return int(model.aggregator.config.patch_size)

    def num_prefix_tokens(self, model: nn.Module) -> int:
        """CLS + register tokens in front of the patch tokens (``1 + num_register_tokens``)."""
        return 1 + int(model.aggregator.config.num_register_tokens)

    def candidate_layers(self, model: nn.Module) -> list[str]:
        """``["enc_blocks_1", ..., "enc_blocks_N"]`` for the ``N`` DINO blocks."""
        return [layer_name(i) for i in range(1, self.depth(model) + 1)]

    def check_layer(self, model: nn.Module, layer: str | int) -> int:
        """Layer name or index -> index ``k`` in ``[0, N]`` (0: only the patch projection is replaced)."""
        k = layer_index(layer) if isinstance(layer, str) else int(layer)
        if not 0 <= k <= self.depth(model):
            raise ValueError(f"layer {layer!r} is out of range: this model has DINO blocks 1..{self.depth(model)}")
        return k

    def token_grid(self, model: nn.Module, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """Patch grid ``(Hp, Wp)`` of an image of ``image_size`` pixels (an int means square)."""
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        p = self.patch_size(model)
        if h % p or w % p:
            raise ValueError(f"image_size {h}x{w} must be a multiple of the patch size {p}")
        return h // p, w // p

    def stitch_spec(self, model: nn.Module, latent_side: int, recon_size: int) -> str | None:
        """A model-specific stitching spec for a ``latent_side`` latent and ``recon_size`` px input, or ``None`` for
        the default rule of :func:`vist3a.stitching.models.derive_spec`."""
        return None

    def default_recon_size(self, model: nn.Module, latent_side: int, preset_size: int) -> int:
        """The model's input size when none is given (default: the preset's)."""
        return preset_size

    # ------------------------------------------------------------------ features
    def feature_hooks(self, model: nn.Module, layers: Sequence[str] | None = None) -> FeatureCapture:
        """Hooks capturing the outputs of DINO blocks ``layers`` (default: all candidates) as ``[B·V, P, C]``.

        Call ``.remove()`` when done (or use :meth:`capture`). The model must be uncut.
        """
        layers = self.candidate_layers(model) if layers is None else list(layers)
        names = {name: self.check_layer(model, name) for name in layers}
        if any(k == 0 for k in names.values()):
            raise ValueError(f"{layer_name(0)} has no block to hook; use candidate layers {LAYER_PREFIX}1..")
        return FeatureCapture(self.dino(model).blocks, names, self.num_prefix_tokens(model))

    @contextlib.contextmanager
    def capture(self, model: nn.Module, layers: Sequence[str] | None = None) -> Iterator[FeatureCapture]:
        hooks = self.feature_hooks(model, layers)
        try:
            yield hooks
        finally:
            hooks.remove()

    @torch.no_grad()
    def candidate_features(
        self, model: nn.Module, frames: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Block outputs ``{layer: [B, V, P, C]}`` for ``frames [B, V, 3, H, W]`` in ``[0, 1]``.

        Only the patch embedder runs (the aggregator and heads are not needed for the features).
        """
        batch, views = frames.shape[:2]
        with self.capture(model, layers) as hooks:
            model.aggregator.embed(frames)
        return {name: f.reshape(batch, views, *f.shape[1:]) for name, f in hooks.features.items()}

    # ------------------------------------------------------------------ cutting
    def cut(self, model: nn.Module, layer: str | int) -> nn.Module:
        """Delete the DINO patch projection and blocks ``1..k`` in place (the rest renumbered from 0)."""
        k = self.check_layer(model, layer)
        dino = self.dino(model)
        if hasattr(dino, "patch_embed"):
            del dino.patch_embed
        dino.blocks = nn.ModuleList(list(dino.blocks)[k:])
        return model

    def cut_state_dict(self, state_dict: Mapping[str, torch.Tensor], layer: int) -> dict[str, torch.Tensor]:
        """An uncut model's state dict -> the cut model's (keys of removed modules dropped, blocks renumbered)."""
        prefix = "aggregator.patch_embed."
        block_re = re.compile(rf"^{re.escape(prefix)}blocks\.(\d+)\.(.*)$")
        out = {}
        for key, value in state_dict.items():
            if key.startswith(prefix + "patch_embed."):
                continue
            match = block_re.match(key)
            if match:
                index = int(match.group(1))
                if index < layer:
                    continue
                key = f"{prefix}blocks.{index - layer}.{match.group(2)}"
            out[key] = value
        return out

    def special_tokens(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The DINO special tokens the stitched model re-learns: ``{name: parameter}`` (names relative to model)."""
        dino = self.dino(model)
        out = {"aggregator.patch_embed.cls_token": dino.cls_token}
        if dino.register_tokens is not None:
            out["aggregator.patch_embed.register_tokens"] = dino.register_tokens
        return out

    # ------------------------------------------------------------------ stitched forward
    def stitched_trunk_input(self, model: nn.Module, tokens: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """Stitched tokens ``[B·V, Hp·Wp, C]`` -> DINO trunk input ``[B·V, 1 + R + Hp·Wp, C]``.

        DINO's own token preparation (prepend CLS, add the interpolated positional embedding, insert the register
        tokens after CLS), with the positional embedding on the swapped grid if ``pos_embed_hw_swap``.
        """
        hp, wp = grid_hw
        if tokens.ndim != 3 or tokens.shape[1] != hp * wp or tokens.shape[2] != self.token_width(model):
            raise ValueError(
                f"tokens must have shape [B*V, {hp}*{wp}, {self.token_width(model)}] for the grid {grid_hw}, "
                f"got {list(tokens.shape)}"
            )
        return self.dino(model).prepare_tokens(tokens, (wp, hp) if self.pos_embed_hw_swap else (hp, wp))

    def run_trunk(self, model: nn.Module, tokens: torch.Tensor, start_block: int) -> torch.Tensor:
        """DINO blocks ``start_block..`` (indices into the model's current block list) + final norm.

        ``tokens [N, 1 + R + P, C]`` -> normalised patch tokens ``[N, P, C]``. One gradient-checkpoint
        segment per block when the DINO module has ``gradient_checkpointing`` on.
        """
        from vist3a.recon.layers.block import checkpoint_call

        dino = self.dino(model)
        x = tokens
        for block in dino.blocks[start_block:]:
            if getattr(dino, "gradient_checkpointing", False) and torch.is_grad_enabled():
                x = checkpoint_call(dino, block, x)
            else:
                x = block(x)
        return dino.norm(x)[:, self.num_prefix_tokens(model) :]

    def run_tail(
        self,
        model: nn.Module,
        tokens: torch.Tensor,
        start_block: int,
        grid_hw: tuple[int, int],
        views: int,
        frames: torch.Tensor | None,
        **kwargs: Any,
    ) -> Any:
        """The stitched forward: tokens ``[B·V, Hp·Wp, C]`` -> the model's typed outputs.

        Args:
            model: the recon model, cut (``start_block=0``) or whole (``start_block=k`` skips blocks ``1..k``).
            tokens: stitched tokens, row-major on the ``grid_hw`` patch grid, frame-major ``(b v)``.
            start_block: index of the first DINO block to run in ``model``'s current block list.
            grid_hw: patch grid ``(Hp, Wp)``; the image size is ``(Hp·p, Wp·p)``.
            views: frames per sample ``V``.
            frames: ``[B, V, 3, Hp·p, Wp·p]`` RGB in ``[0, 1]`` (required when :attr:`needs_frames`).
            kwargs: passed to the model's decoding step (e.g. ``voxelize`` for AnySplat).
        """
        x = self.stitched_trunk_input(model, tokens, grid_hw)
        return self.run_tail_from_trunk(model, x, start_block, grid_hw, views, frames, **kwargs)

    def run_tail_from_trunk(
        self,
        model: nn.Module,
        trunk_tokens: torch.Tensor,
        start_block: int,
        grid_hw: tuple[int, int],
        views: int,
        frames: torch.Tensor | None,
        **kwargs: Any,
    ) -> Any:
        """The tail from a DINO trunk state ``[B·V, 1 + R + Hp·Wp, C]`` (prefix tokens included): blocks
        ``start_block..``, norm, aggregator and heads. On the uncut model's own state after block ``k`` this is
        exactly the rest of its forward; :meth:`run_tail` enters here with freshly prefixed stitched tokens.
        Arguments as in :meth:`run_tail`.
        """
        if trunk_tokens.shape[0] % views:
            raise ValueError(f"tokens hold {trunk_tokens.shape[0]} frames, which is not a multiple of views={views}")
        batch = trunk_tokens.shape[0] // views
        p = self.patch_size(model)
        image_hw = (grid_hw[0] * p, grid_hw[1] * p)
        if frames is None:
            if self.needs_frames:
                raise ValueError(f"{type(model).__name__} needs the RGB frames (its Gaussian head reads them)")
            frames = trunk_tokens.new_zeros(batch, views, 3, *image_hw)
        elif tuple(frames.shape) != (batch, views, 3, *image_hw):
            raise ValueError(f"frames must have shape {[batch, views, 3, *image_hw]}, got {list(frames.shape)}")
        patch_tokens = self.run_trunk(model, trunk_tokens, start_block)
        agg = self.aggregate(model, patch_tokens, batch, views, grid_hw)
        return self.decode(model, agg, frames, **kwargs)

    @abstractmethod
    def aggregate(
        self, model: nn.Module, patch_tokens: torch.Tensor, batch: int, views: int, grid_hw: tuple[int, int]
    ) -> Any:
        """The aggregator on DINO output patch tokens ``[B·V, P, C]`` -> its output (the layers the heads read)."""

    def decode_heads(self, model: nn.Module, agg: Any, frames: torch.Tensor, **kwargs: Any) -> Any:
        """The heads on an aggregator output: the model's own ``decode(agg, frames, **kwargs)``, the half of its
        forward after the aggregator; ``frames [B, V, 3, H, W]`` in ``[0, 1]``."""
        return model.decode(agg, frames, **kwargs)

    def decode(self, model: nn.Module, agg: Any, frames: torch.Tensor, **kwargs: Any) -> Any:
        """:meth:`decode_heads` in float32 with autocast off, as the official models run their heads (only the
        trunk runs in bf16 under mixed precision)."""
        from dataclasses import replace

        with torch.autocast(frames.device.type, enabled=False):
            agg = replace(agg, tokens=[t.float() for t in agg.tokens])
            return self.decode_heads(model, agg, frames.float(), **kwargs)

    def forward_original(self, model: nn.Module, frames: torch.Tensor, **kwargs: Any) -> Any:
        """The uncut model on ``frames [B, V, 3, H, W]`` in ``[0, 1]`` (the distillation teacher): its aggregator
        (under the caller's autocast) and :meth:`decode`."""
        return self.decode(model, self.encode(model, frames), frames, **kwargs)

    def encode(self, model: nn.Module, frames: torch.Tensor) -> Any:
        """The uncut model's aggregator on ``frames``: its own ``encode(frames)``."""
        return model.encode(frames)

    # ------------------------------------------------------------------ distillation
    @abstractmethod
    def distill_targets(self, outputs: Any) -> dict[str, torch.Tensor]:
        """Named tensors of the outputs that the fine-tuning loss compares."""

    @abstractmethod
    def loss_terms(self) -> dict[str, LossTerm]:
        """Default loss terms and weights over :meth:`distill_targets`."""

    def distill_kwargs(self) -> dict[str, Any]:
        """Forward options for training (e.g. AnySplat: no voxelisation, so outputs align per pixel)."""
        return {}


class AnySplatAdapter(ReconAdapter):
    """:class:`vist3a.recon.AnySplat`; targets and weights of the VIST3A release (``TaskLossAnySplat``)."""

    name = "anysplat"
    needs_frames = True

    @property
    def model_class(self) -> type[nn.Module]:
        from vist3a.recon.anysplat import AnySplat

        return AnySplat

    def aggregate(self, model, patch_tokens, batch, views, grid_hw):
        layers = model.config.intermediate_layer_idx
        return model.aggregator.forward_patch_tokens(patch_tokens, batch, views, grid_hw, layers)

    def distill_targets(self, outputs) -> dict[str, torch.Tensor]:
        image_hw = tuple(outputs.depth.shape[-2:])
        targets = {
            "depth": outputs.depth,
            "depth_conf": outputs.depth_conf,
            "gaussian_conf": outputs.gaussian_conf,
            "anchor_feats": outputs.gaussian_raw,
            "extrinsics": outputs.cameras.c2w,
            "intrinsics": outputs.cameras.normalized_K(image_hw),
            "pose_enc_list": torch.stack(list(outputs.cameras.pose_enc_list)),
        }
        for key in ("means", "covariances", "harmonics", "opacities", "scales", "rotations"):
            targets[f"gaussian_{key}"] = outputs.gaussians_official[key]
        return targets

    def loss_terms(self) -> dict[str, LossTerm]:
        # Release weights (models/anysplat_stitched.py, TaskLossAnySplat); extrinsics are camera-to-world 4x4.
        return {
            "depth": LossTerm("depth", 1.0),
            "depth_grad": LossTerm("depth", 0.005, "grad"),
            "gaussian_means": LossTerm("gaussian_means", 1.0),
            "gaussian_covariances": LossTerm("gaussian_covariances", 1.0),
            "gaussian_harmonics": LossTerm("gaussian_harmonics", 1.0),
            "gaussian_opacities": LossTerm("gaussian_opacities", 1.0),
            "gaussian_scales": LossTerm("gaussian_scales", 10.0),
            "gaussian_rotations": LossTerm("gaussian_rotations", 1.0),
            "gaussian_conf": LossTerm("gaussian_conf", 0.01),
            "depth_conf": LossTerm("depth_conf", 0.01),
            "anchor_feats": LossTerm("anchor_feats", 0.1),
            "extrinsics": LossTerm("extrinsics", 1.0),
            "intrinsics": LossTerm("intrinsics", 1.0),
            "pose_enc_list": LossTerm("pose_enc_list", 1.0),
        }

    def distill_kwargs(self) -> dict[str, Any]:
        return {"voxelize": False}


class VGGTAdapter(ReconAdapter):
    """:class:`vist3a.recon.VGGT` (camera, depth and point heads); loss weights of the VIST3A paper."""

    name = "vggt"
    needs_frames = False

    @property
    def model_class(self) -> type[nn.Module]:
        from vist3a.recon.vggt import VGGT

        return VGGT

    def aggregate(self, model, patch_tokens, batch, views, grid_hw):
        return model.aggregator.forward_patch_tokens(patch_tokens, batch, views, grid_hw)

    def distill_targets(self, outputs) -> dict[str, torch.Tensor]:
        named = {
            "depth": outputs.depth,
            "depth_conf": outputs.depth_conf,
            "world_points": outputs.world_points,
            "world_points_conf": outputs.world_points_conf,
            "pose_enc_list": torch.stack(list(outputs.cameras.pose_enc_list)) if outputs.cameras else None,
        }
        return {k: v for k, v in named.items() if v is not None}

    def loss_terms(self) -> dict[str, LossTerm]:
        # VIST3A paper, VGGT: pointmaps and depth 1, poses 5, confidences 5e-3, gradient terms 5e-3.
        return {
            "world_points": LossTerm("world_points", 1.0),
            "world_points_grad": LossTerm("world_points", 5e-3, "grad"),
            "depth": LossTerm("depth", 1.0),
            "depth_grad": LossTerm("depth", 5e-3, "grad"),
            "pose_enc_list": LossTerm("pose_enc_list", 5.0),
            "depth_conf": LossTerm("depth_conf", 5e-3),
            "world_points_conf": LossTerm("world_points_conf", 5e-3),
        }


class MVDust3rAdapter(ReconAdapter):
    """:class:`vist3a.recon.MVDust3r` (MV-DUSt3R and MV-DUSt3R+): a CroCo ViT encoder instead of a DINO trunk.

    Cut points: ``enc_blocks_0`` = the patch-embedding output, ``enc_blocks_k`` = output of encoder block ``k``
    (1-based, before ``enc_norm``). Tokens carry no CLS/register tokens and no absolute position embedding (the
    encoder uses 2D RoPE on the grid positions), so stitched tokens enter the remaining blocks as they are, on a
    grid of any size. Frames are RGB in ``[0, 1]`` here and mapped to the model's ``[-1, 1]``; the point heads'
    skip branch reads their pixels (``needs_frames``).

    Stitching layer: the paper's ``conv3d_k5x7x7_o<C>_s1x3x3_p2x0x0`` when it maps the latent onto the token grid
    (``(latent - 7) // 3 + 1 == grid``: the 48 px latent of a 384 px VAE input -> the 14 x 14 grid of 224 px),
    else the default rule (kernel 5x3x3, padding 2x1x1, stride = latent side / grid side). Default input size:
    ``img_size`` when the paper's layer fits it, else the multiple of the patch size whose grid divides the
    latent side, closest to the preset's size.

    Distillation targets (DESIGN.md's loss table, as for AnySplat's Gaussians): pointmaps 1, pointmap
    confidence 1e-2, Gaussian opacity 1, scale 10, rotation 1, colour 1; every path of MV-DUSt3R+.
    """

    name = "mvdust3r"
    needs_frames = True
    PAPER_KERNEL, PAPER_STRIDE = 7, 3

    @property
    def model_class(self) -> type[nn.Module]:
        from vist3a.recon.mvdust3r import MVDust3r

        return MVDust3r

    def dino(self, model: nn.Module) -> nn.Module:
        raise ValueError("MV-DUSt3R has no DINOv2 trunk (its encoder is a CroCo ViT)")

    def depth(self, model: nn.Module) -> int:
        return int(model.config.enc_depth)

    def token_width(self, model: nn.Module) -> int:
        return int(model.config.enc_embed_dim)

    def patch_size(self, model: nn.Module) -> int:
        return int(model.config.patch_size)

    def num_prefix_tokens(self, model: nn.Module) -> int:
        return 0

    def candidate_layers(self, model: nn.Module) -> list[str]:
        """``["enc_blocks_0", ..., "enc_blocks_N"]``: the patch embedding and every encoder block."""
        return [layer_name(i) for i in range(self.depth(model) + 1)]

    def stitch_spec(self, model: nn.Module, latent_side: int, recon_size: int) -> str | None:
        grid = self.token_grid(model, recon_size)[0]
        if latent_side >= self.PAPER_KERNEL and (latent_side - self.PAPER_KERNEL) // self.PAPER_STRIDE + 1 == grid:
            k, s = self.PAPER_KERNEL, self.PAPER_STRIDE
            return f"conv3d_k5x{k}x{k}_o{self.token_width(model)}_s1x{s}x{s}_p2x0x0"
        return None

    def default_recon_size(self, model: nn.Module, latent_side: int, preset_size: int) -> int:
        p = self.patch_size(model)
        own = int(model.config.img_size)
        if own % p == 0 and self.stitch_spec(model, latent_side, own) is not None:
            return own
        grids = [g for g in range(1, latent_side + 1) if latent_side % g == 0]
        return min((g * p for g in grids), key=lambda size: (abs(size - preset_size), -size))

    def feature_hooks(self, model: nn.Module, layers: Sequence[str] | None = None) -> FeatureCapture:
        raise ValueError("MV-DUSt3R features come from candidate_features (no hooks needed)")

    @torch.no_grad()
    def candidate_features(
        self, model: nn.Module, frames: torch.Tensor, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """``{layer: [B, V, Hp*Wp, C]}`` for ``frames [B, V, 3, H, W]`` in ``[0, 1]``; only the encoder blocks up to
        the deepest requested layer run."""
        layers = self.candidate_layers(model) if layers is None else list(layers)
        wanted = {name: self.check_layer(model, name) for name in layers}
        batch, views = frames.shape[:2]
        grid = self.token_grid(model, tuple(frames.shape[-2:]))
        x = model.embed(frames * 2 - 1)
        pos = model.grid_positions(grid, x.device)
        outs = {0: x}
        for i, block in enumerate(model.enc_blocks[: max(wanted.values())]):
            x = block(x, pos)
            outs[i + 1] = x
        return {name: outs[k].reshape(batch, views, *x.shape[1:]) for name, k in wanted.items()}

    def cut(self, model: nn.Module, layer: str | int) -> nn.Module:
        """Delete the patch embedding and encoder blocks ``1..k`` in place (the rest renumbered from 0)."""
        k = self.check_layer(model, layer)
        if hasattr(model, "patch_embed"):
            del model.patch_embed
        model.enc_blocks = nn.ModuleList(list(model.enc_blocks)[k:])
        return model

    def cut_state_dict(self, state_dict: Mapping[str, torch.Tensor], layer: int) -> dict[str, torch.Tensor]:
        block_re = re.compile(r"^enc_blocks\.(\d+)\.(.*)$")
        out = {}
        for key, value in state_dict.items():
            if key.startswith("patch_embed."):
                continue
            match = block_re.match(key)
            if match:
                if int(match.group(1)) < layer:
                    continue
                key = f"enc_blocks.{int(match.group(1)) - layer}.{match.group(2)}"
            out[key] = value
        return out

    def special_tokens(self, model: nn.Module) -> dict[str, nn.Parameter]:
        return {}  # no CLS / register tokens; ``mask_token`` is unused by the forward

    def stitched_trunk_input(self, model: nn.Module, tokens: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        hp, wp = grid_hw
        if tokens.ndim != 3 or tokens.shape[1] != hp * wp or tokens.shape[2] != self.token_width(model):
            raise ValueError(f"tokens must have shape [B*V, {hp}*{wp}, {self.token_width(model)}] for the grid "
                             f"{grid_hw}, got {list(tokens.shape)}")
        return tokens

    def run_tail_from_trunk(self, model, trunk_tokens, start_block, grid_hw, views, frames, **kwargs):
        if trunk_tokens.shape[0] % views:
            raise ValueError(f"tokens hold {trunk_tokens.shape[0]} frames, which is not a multiple of views={views}")
        batch = trunk_tokens.shape[0] // views
        p = self.patch_size(model)
        image_hw = (grid_hw[0] * p, grid_hw[1] * p)
        if frames is None or tuple(frames.shape) != (batch, views, 3, *image_hw):
            raise ValueError(f"MV-DUSt3R needs frames of shape {[batch, views, 3, *image_hw]} (its point heads read "
                             f"the pixels), got {None if frames is None else list(frames.shape)}")
        tokens, _ = model.run_encoder_blocks(self.stitched_trunk_input(model, trunk_tokens, grid_hw), grid_hw,
                                             start_block)
        return self.decode(model, self.aggregate(model, tokens, batch, views, grid_hw), frames, **kwargs)

    def aggregate(self, model, patch_tokens, batch, views, grid_hw):
        from vist3a.recon.mvdust3r import MVDust3rEncoding

        return MVDust3rEncoding(patch_tokens.reshape(batch, views, *patch_tokens.shape[1:]), tuple(grid_hw))

    def decode(self, model: nn.Module, agg: Any, frames: torch.Tensor, **kwargs: Any) -> Any:
        """Decoder (under the caller's autocast) and heads (float32, autocast off, as the release) on ``frames`` in
        ``[0, 1]``."""
        return model.decode(agg, frames * 2 - 1)

    def encode(self, model: nn.Module, frames: torch.Tensor) -> Any:
        return model.encode(frames * 2 - 1)

    def distill_targets(self, outputs) -> dict[str, torch.Tensor]:
        named = {
            "points": outputs.points,
            "conf": outputs.conf,
            "gaussian_opacity": outputs.opacity,
            "gaussian_scale": outputs.scale,
            "gaussian_rotation": outputs.rotation,
            "gaussian_rgb": outputs.rgb,
        }
        return {k: v for k, v in named.items() if v is not None}

    def loss_terms(self) -> dict[str, LossTerm]:
        return {
            "points": LossTerm("points", 1.0),
            "conf": LossTerm("conf", 0.01),
            "gaussian_opacity": LossTerm("gaussian_opacity", 1.0),
            "gaussian_scale": LossTerm("gaussian_scale", 10.0),
            "gaussian_rotation": LossTerm("gaussian_rotation", 1.0),
            "gaussian_rgb": LossTerm("gaussian_rgb", 1.0),
        }


ADAPTERS: dict[str, type[ReconAdapter]] = {
    "anysplat": AnySplatAdapter,
    "vggt": VGGTAdapter,
    "mvdust3r": MVDust3rAdapter,
}
"""Adapter classes by recon model name."""


def get_adapter(name: str, **kwargs: Any) -> ReconAdapter:
    """An adapter instance by name (``"anysplat"``, ``"vggt"``, ``"mvdust3r"``); ``ValueError`` on unknown names."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown recon model {name!r}; known: {sorted(ADAPTERS)}")
    return ADAPTERS[name](**kwargs)


def adapter_for_model(model: nn.Module, **kwargs: Any) -> ReconAdapter:
    """The adapter whose ``model_class`` is exactly ``type(model)``."""
    by_class = {get_adapter(name).model_class: name for name in ADAPTERS}
    name = by_class.get(type(model))
    if name is None:
        raise ValueError(f"no stitching adapter for {type(model).__name__}; supported: {sorted(ADAPTERS)}")
    return get_adapter(name, **kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
