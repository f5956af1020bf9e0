"""Multi-head self-attention with optional QK-normalisation and 2D RoPE (VGGT / DINOv2 layout).

Parameter names follow the official checkpoints: ``qkv`` (fused ``[3 * dim, dim]`` projection, output
ordered q, k, v then heads), ``q_norm`` / ``k_norm`` (LayerNorm over the head width) and ``proj``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vist3a.recon.layers.rope import RotaryEmbedding2D


class Attention(nn.Module):
    """Self-attention over ``[B, N, dim]`` tokens via ``F.scaled_dot_product_attention``.

    Args:
        dim: token width; must be divisible by ``num_heads``.
        num_heads: number of heads.
        qkv_bias / proj_bias: biases of the projections.
        qk_norm: LayerNorm (eps ``norm_eps``) on queries and keys per head, before RoPE.
        rope: a shared :class:`RotaryEmbedding2D`, or ``None`` for no positional rotation.
        norm_eps: epsilon of the QK LayerNorms.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        rope: RotaryEmbedding2D | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"attention `dim` ({dim}) must be divisible by `num_heads` ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, N, dim]``, ``pos [B, N, 2]`` (y, x) integer positions (needed iff RoPE is on)."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if pos is None:
                raise ValueError("Attention with RoPE needs `pos` [B, N, 2]")
            q = self.rope(q, pos)
            k = self.rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(x)
