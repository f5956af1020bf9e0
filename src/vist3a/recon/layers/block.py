"""Pre-norm transformer block with LayerScale, shared by the DINOv2 trunk, the aggregator and the camera head."""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import nn

from vist3a.recon.layers.attention import Attention
from vist3a.recon.layers.mlp import Mlp
from vist3a.recon.layers.rope import RotaryEmbedding2D


def checkpoint_call(owner: nn.Module, module: nn.Module, *args):
    """Run ``module(*args)`` under activation checkpointing.

    Uses the function diffusers' ``enable_gradient_checkpointing`` installs on ``owner`` when there is one,
    otherwise non-reentrant ``torch.utils.checkpoint``.
    """
    func = getattr(owner, "_gradient_checkpointing_func", None)
    if func is not None:
        return func(module, *args)
    return torch.utils.checkpoint.checkpoint(module, *args, use_reentrant=False)


class LayerScale(nn.Module):
    """Per-channel residual scale ``x * gamma`` (``gamma [dim]``)."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """``x + ls1(attn(norm1(x))) -> x + ls2(mlp(norm2(x)))`` on ``[B, N, dim]`` tokens.

    Args:
        dim, num_heads, mlp_ratio: widths (MLP hidden = ``int(dim * mlp_ratio)``).
        qkv_bias, proj_bias, ffn_bias: biases of the attention and MLP projections.
        init_values: LayerScale init; ``None`` or 0 disables LayerScale (as in the official code).
        qk_norm, rope: see :class:`Attention`.
        norm_eps: LayerNorm epsilon (1e-6 in DINOv2, 1e-5 in the aggregator and camera head).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        init_values: float | None = None,
        qk_norm: bool = False,
        rope: RotaryEmbedding2D | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        return x + self.ls2(self.mlp(self.norm2(x)))
