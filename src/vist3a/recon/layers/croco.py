"""CroCo-style multi-view decoder block (MV-DUSt3R / MV-DUSt3R+), with cross-attention to other token sets.

Facts from facebookresearch/mvdust3r (``croco/models/blocks.py``, ``DecoderBlock(mv=True)``), reimplemented:
a pre-norm block whose tokens of one *set* (one view, or one view in one path) attend to themselves, then to
the concatenated, ``norm_y``-normalised tokens of the *other* sets, then pass an MLP::

    x += attn(norm1(x));  x += cross_attn(norm2(x), norm_y(others));  x += mlp(norm3(x))

Every set carries the same ``Hp x Wp`` token grid, so every query and key gets its ``(row, column)`` RoPE
position. Parameter names follow the official checkpoints (``attn.qkv``, ``cross_attn.projq/projk/projv/proj``,
``norm1..3``, ``norm_y``, ``mlp.fc1/fc2``).

Batched form: instead of concatenating "all sets but mine" once per set (``S - 1`` copies of the memory), the
keys and values of all ``M`` memory sets are projected once and a boolean mask hides a query set's own tokens
(``self_offset``). The key order only changes the summation order of the softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vist3a.recon.layers.attention import Attention
from vist3a.recon.layers.mlp import Mlp
from vist3a.recon.layers.rope import RotaryEmbedding2D


class CrossAttention(nn.Module):
    """Multi-head attention from queries ``[G, Nq, dim]`` to a memory ``[G, Nk, dim]`` (separate q/k/v
    projections ``projq``/``projk``/``projv``, output ``proj``), with 2D RoPE on queries and keys."""

    def __init__(self, dim: int, num_heads: int, rope: RotaryEmbedding2D | None = None, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"cross-attention `dim` ({dim}) must be divisible by `num_heads` ({num_heads})")
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        groups, tokens, dim = x.shape
        return x.reshape(groups, tokens, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor,
        memory_pos: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``query [G, Nq, dim]``, ``memory [G, Nk, dim]``, positions ``[1 or G, N, 2]`` (row, column);
        ``attn_mask [Nq, Nk]`` bool, True where a query may attend. Returns ``[G, Nq, dim]``."""
        q, k, v = self._heads(self.projq(query)), self._heads(self.projk(memory)), self._heads(self.projv(memory))
        if self.rope is not None:
            q, k = self.rope(q, query_pos), self.rope(k, memory_pos)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(query.shape))


class MultiViewDecoderBlock(nn.Module):
    """One decoder layer over ``S`` token sets that attend to ``M`` memory sets (see the module docstring).

    Args:
        dim, num_heads, mlp_ratio: widths (MLP hidden ``int(dim * mlp_ratio)``, exact GELU).
        rope: the shared :class:`RotaryEmbedding2D`.
        norm_eps: LayerNorm epsilon (CroCo: 1e-6).
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope: RotaryEmbedding2D | None = None,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=True, rope=rope)
        self.cross_attn = CrossAttention(dim, num_heads, rope=rope)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=norm_eps)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, self_offset: int | None = None
    ) -> torch.Tensor:
        """Update ``x [G, S, N, dim]`` (``S`` sets of ``N`` tokens) from ``memory [G, M, N, dim]``.

        ``pos [1, N, 2]``: (row, column) of the ``N`` grid tokens, shared by every set. ``self_offset``: set
        ``s`` of ``x`` is also set ``s + self_offset`` of ``memory`` and must not attend to itself there
        (``None``: attend to all of ``memory``). Returns the new ``[G, S, N, dim]``.
        """
        groups, sets, tokens, dim = x.shape
        mem_sets = memory.shape[1]
        h = x.reshape(groups * sets, tokens, dim)
        h = h + self.attn(self.norm1(h), pos=pos)
        h = h.reshape(groups, sets * tokens, dim)
        mem = self.norm_y(memory.reshape(groups, mem_sets * tokens, dim))
        mask = None
        if self_offset is not None:
            if not 0 <= self_offset <= mem_sets - sets:
                raise ValueError(f"`self_offset` {self_offset} does not fit {sets} query and {mem_sets} memory sets")
            set_of_q = torch.arange(sets, device=x.device).repeat_interleave(tokens) + self_offset
            set_of_m = torch.arange(mem_sets, device=x.device).repeat_interleave(tokens)
            mask = set_of_q[:, None] != set_of_m[None, :]
        h = h + self.cross_attn(self.norm2(h), mem, pos.repeat(1, sets, 1), pos.repeat(1, mem_sets, 1), mask)
        h = h + self.mlp(self.norm3(h))
        return h.reshape(groups, sets, tokens, dim)
