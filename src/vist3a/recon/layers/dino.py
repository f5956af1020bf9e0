"""DINOv2 vision transformer with register tokens: the per-frame patch embedder of VGGT / AnySplat.

Token layout inside the trunk: ``[CLS, reg_1 .. reg_R, patch_1 .. patch_P]`` with patches row-major.
The learned positional embedding covers CLS + a square ``G x G`` grid (``G = img_size // patch_size``)
and is resized to the actual ``Hp x Wp`` grid by bicubic interpolation (antialiased in VGGT); registers
get no positional embedding. Parameter names follow the official checkpoints.

Also here: :class:`ConvPatchEmbed`, the plain strided-convolution embedder (``patch_embed="conv"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vist3a.recon.layers.block import Block, checkpoint_call


class ConvPatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: ``[N, 3, H, W] -> [N, (H/p) * (W/p), dim]`` (``proj`` conv)."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image height and width must be multiples of the patch size {self.patch_size}, got {height}x{width}"
            )
        return self.proj(images).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT (``vit_large`` layout) returning normalised patch tokens.

    Args:
        img_size: training image size; fixes the stored positional grid ``G = img_size // patch_size``.
        patch_size: pixel size of a patch.
        embed_dim, depth, num_heads, mlp_ratio: trunk sizes.
        num_register_tokens: number of register tokens ``R``.
        init_values: LayerScale init of the blocks.
        interpolate_antialias / interpolate_offset: how the positional grid is resized (VGGT: True / 0.0;
            a non-zero offset uses the historical ``scale_factor = (n + offset) / G`` form).
        qkv_bias, proj_bias, ffn_bias: projection biases.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        init_values: float | None = 1.0,
        interpolate_antialias: bool = True,
        interpolate_offset: float = 0.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
    ) -> None:
        super().__init__()
        grid = img_size // patch_size
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset
        self.patch_embed = ConvPatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        # Unused at inference (masked-image training); kept so official checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_bias=proj_bias,
                ffn_bias=ffn_bias,
                init_values=init_values,
                norm_eps=1e-6,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.gradient_checkpointing = False

    @property
    def num_prefix_tokens(self) -> int:
        """CLS + registers in front of the patch tokens."""
        return 1 + self.num_register_tokens

    def interpolate_pos_encoding(self, grid_hw: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        """Positional embedding ``[1, 1 + Hp * Wp, dim]`` (CLS first) for a ``Hp x Wp`` patch grid."""
        stored = self.pos_embed.shape[1] - 1
        side = math.isqrt(stored)
        hp, wp = grid_hw
        if (hp, wp) == (side, side):
            return self.pos_embed.to(dtype)
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        dim = pos.shape[-1]
        patch_pos = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            scale = ((hp + self.interpolate_offset) / side, (wp + self.interpolate_offset) / side)
            patch_pos = F.interpolate(
                patch_pos, scale_factor=scale, mode="bicubic", antialias=self.interpolate_antialias
            )
        else:
            patch_pos = F.interpolate(patch_pos, size=(hp, wp), mode="bicubic", antialias=self.interpolate_antialias)
        if patch_pos.shape[-2:] != (hp, wp):
            raise ValueError(
                f"positional-embedding interpolation gave {tuple(patch_pos.shape[-2:])}, wanted {(hp, wp)}"
            )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, hp * wp, dim)
        return torch.cat((cls_pos, patch_pos), 1).to(dtype)

    def prepare_tokens(self, patch_tokens: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``[N, Hp * Wp, dim]`` patch embeddings -> ``[N, 1 + R + Hp * Wp, dim]`` trunk input.

        Prepends CLS, adds the positional embedding to CLS and patches, then inserts the registers after CLS.
        This is also the entry point for tokens that come from elsewhere (a stitching layer).
        """
        n = patch_tokens.shape[0]
        x = torch.cat((self.cls_token.expand(n, -1, -1).to(patch_tokens.dtype), patch_tokens), 1)
        x = x + self.interpolate_pos_encoding(grid_hw, x.dtype)
        if self.register_tokens is not None:
            regs = self.register_tokens.expand(n, -1, -1).to(x.dtype)
            x = torch.cat((x[:, :1], regs, x[:, 1:]), 1)
        return x

    def forward_blocks(self, tokens: torch.Tensor, start: int = 0, stop: int | None = None) -> list[torch.Tensor]:
        """Run blocks ``start .. stop - 1`` on ``[N, T, dim]``; returns every block's output (full tokens)."""
        outputs = []
        for block in self.blocks[start:stop]:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint_call(self, block, tokens)
            else:
                tokens = block(tokens)
            outputs.append(tokens)
        return outputs

    def forward(self, images: torch.Tensor, return_block_outputs: bool = False):
        """``images [N, 3, H, W]`` (already normalised) -> normalised patch tokens ``[N, Hp * Wp, dim]``.

        With ``return_block_outputs=True`` also returns the list of raw block outputs ``[N, 1 + R + P, dim]``.
        """
        grid_hw = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        tokens = self.prepare_tokens(self.patch_embed(images), grid_hw)
        block_outputs = self.forward_blocks(tokens)
        last = block_outputs[-1] if block_outputs else tokens
        patch_tokens = self.norm(last)[:, self.num_prefix_tokens :]
        if return_block_outputs:
            return patch_tokens, block_outputs
        return patch_tokens
