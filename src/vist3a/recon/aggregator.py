"""VGGT's aggregator: a per-frame patch embedder followed by alternating frame / global attention.

Input images ``[B, V, 3, H, W]`` in ``[0, 1]`` are ImageNet-normalised and embedded per frame into
``P = Hp * Wp`` patch tokens (``Hp = H // patch_size``). Every frame then gets ``1 + R`` prefix tokens:
a camera token and ``R`` register tokens, taken from slot 0 for the first frame and slot 1 for all others.
Each aggregator layer ``i`` runs a *frame* block (attention within a frame, tokens ``[B*V, T, C]``) and a
*global* block (attention across all frames, ``[B, V*T, C]``), both with 2D RoPE on the patch grid;
its output is the channel concatenation ``[B, V, T, 2C]`` (frame part first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vist3a.recon.config import AggregatorConfig
from vist3a.recon.layers import Block, ConvPatchEmbed, DinoVisionTransformer, RotaryEmbedding2D, grid_positions
from vist3a.recon.layers.block import checkpoint_call

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AggregatorOutput:
    """Aggregator result.

    Attributes:
        tokens: list of ``[B, V, T, 2C]`` layer outputs (``T = num_prefix_tokens + Hp * Wp``), in layer order.
        layer_ids: the aggregator layer index of each entry of ``tokens``.
        num_prefix_tokens: ``1 + R``: patch tokens start at this index.
        grid_hw: the patch grid ``(Hp, Wp)``.
    """

    tokens: list[torch.Tensor]
    layer_ids: list[int]
    num_prefix_tokens: int
    grid_hw: tuple[int, int]


def expand_special_tokens(token: torch.Tensor, batch: int, views: int) -> torch.Tensor:
    """``[1, 2, X, C]`` slot pair -> ``[B * V, X, C]``: slot 0 for frame 0, slot 1 for frames 1..V-1."""
    first = token[:, :1].expand(batch, 1, *token.shape[2:])
    others = token[:, 1:].expand(batch, views - 1, *token.shape[2:])
    return torch.cat((first, others), 1).reshape(batch * views, *token.shape[2:])


class Aggregator(nn.Module):
    """Alternating-attention trunk; see the module docstring. Parameter names follow the official checkpoints."""

    def __init__(self, config: AggregatorConfig, norm_constants_dtype: torch.dtype = torch.float32) -> None:
        """``norm_constants_dtype``: precision the ImageNet mean/std are rounded to. The official AnySplat casts
        its whole aggregator (normalisation buffers included) to bfloat16, so its constants are bf16-rounded."""
        super().__init__()
        self.config = config
        c = config
        pe = c.patch_embed
        if pe.kind == "dinov2":
            self.patch_embed = DinoVisionTransformer(
                img_size=c.img_size,
                patch_size=c.patch_size,
                embed_dim=c.embed_dim,
                depth=pe.depth,
                num_heads=pe.num_heads,
                mlp_ratio=pe.mlp_ratio,
                num_register_tokens=c.num_register_tokens,
                init_values=pe.init_values,
                interpolate_antialias=pe.interpolate_antialias,
                interpolate_offset=pe.interpolate_offset,
            )
        else:
            self.patch_embed = ConvPatchEmbed(c.patch_size, c.embed_dim)
        self.rope = RotaryEmbedding2D(c.rope_freq) if c.rope_freq > 0 else None

        def make_block() -> Block:
            return Block(
                c.embed_dim,
                c.num_heads,
                mlp_ratio=c.mlp_ratio,
                qkv_bias=c.qkv_bias,
                proj_bias=c.proj_bias,
                ffn_bias=c.ffn_bias,
                init_values=c.init_values,
                qk_norm=c.qk_norm,
                rope=self.rope,
            )

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(c.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(c.depth))
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, c.embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, c.num_register_tokens, c.embed_dim))
        for name, value in (("image_mean", IMAGENET_MEAN), ("image_std", IMAGENET_STD)):
            const = torch.tensor(value).to(norm_constants_dtype).float().view(1, 1, 3, 1, 1)
            self.register_buffer(name, const, persistent=False)
        self.gradient_checkpointing = False

    @property
    def num_prefix_tokens(self) -> int:
        return self.config.num_prefix_tokens

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, V, 3, H, W]`` in [0, 1] -> per-frame patch tokens ``[B * V, Hp * Wp, C]``."""
        batch, views, channels, height, width = images.shape
        if channels != 3:
            raise ValueError(f"`images` must have 3 channels ([B, V, 3, H, W]), got shape {list(images.shape)}")
        p = self.config.patch_size
        if height % p or width % p:
            raise ValueError(f"image height and width must be multiples of the patch size {p}, got {height}x{width}")
        images = (images - self.image_mean.to(images.dtype)) / self.image_std.to(images.dtype)
        return self.patch_embed(images.reshape(batch * views, 3, height, width))

    def forward(self, images: torch.Tensor, intermediate_layer_idx: Sequence[int] | None = None) -> AggregatorOutput:
        """Run the whole trunk on ``images [B, V, 3, H, W]`` in ``[0, 1]``.

        ``intermediate_layer_idx``: keep only these layers (plus the last one, which the camera head needs);
        ``None`` keeps all layers (as VGGT does).
        """
        batch, views, _, height, width = images.shape
        p = self.config.patch_size
        patch_tokens = self.embed(images)
        return self.forward_patch_tokens(patch_tokens, batch, views, (height // p, width // p), intermediate_layer_idx)

    def forward_patch_tokens(
        self,
        patch_tokens: torch.Tensor,
        batch: int,
        views: int,
        grid_hw: tuple[int, int],
        intermediate_layer_idx: Sequence[int] | None = None,
    ) -> AggregatorOutput:
        """Alternating attention on already-embedded patch tokens ``[B * V, Hp * Wp, C]`` (row-major grid)."""
        c = self.config
        if patch_tokens.shape[1] != grid_hw[0] * grid_hw[1]:
            raise ValueError(
                f"`patch_tokens` has {patch_tokens.shape[1]} tokens per frame, grid {grid_hw} needs "
                f"{grid_hw[0] * grid_hw[1]}"
            )
        dtype = patch_tokens.dtype
        camera = expand_special_tokens(self.camera_token, batch, views).to(dtype)
        registers = expand_special_tokens(self.register_token, batch, views).to(dtype)
        tokens = torch.cat((camera, registers, patch_tokens), 1)
        num_tokens, dim = tokens.shape[1:]
        pos = None
        if self.rope is not None:
            pos = grid_positions(batch * views, grid_hw, self.num_prefix_tokens, device=tokens.device)

        keep = None
        if intermediate_layer_idx is not None:
            keep = {int(i) for i in intermediate_layer_idx} | {c.depth - 1}
        outputs, layer_ids = [], []
        frame_idx = global_idx = 0
        for group in range(c.depth // c.aa_block_size):
            collected: dict[str, list[torch.Tensor]] = {}
            for kind in c.aa_order:
                if kind == "frame":
                    tokens = tokens.reshape(batch * views, num_tokens, dim)
                    block_pos = pos
                    blocks, start = self.frame_blocks, frame_idx
                    frame_idx += c.aa_block_size
                else:
                    tokens = tokens.reshape(batch, views * num_tokens, dim)
                    block_pos = None if pos is None else pos.reshape(batch, views * num_tokens, 2)
                    blocks, start = self.global_blocks, global_idx
                    global_idx += c.aa_block_size
                collected[kind] = []
                for block in blocks[start : start + c.aa_block_size]:
                    tokens = self._run_block(block, tokens, block_pos)
                    collected[kind].append(tokens.reshape(batch, views, num_tokens, dim))
            for i in range(c.aa_block_size):
                layer = group * c.aa_block_size + i
                if keep is None or layer in keep:
                    outputs.append(torch.cat((collected["frame"][i], collected["global"][i]), -1))
                    layer_ids.append(layer)
        return AggregatorOutput(outputs, layer_ids, self.num_prefix_tokens, tuple(grid_hw))

    def _run_block(self, block: Block, tokens: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint_call(self, block, tokens, pos)
        return block(tokens, pos)
