"""2D rotary position embedding (RoPE) over a patch grid, as used by VGGT's aggregator.

Each attention head's features are split in two halves: the first half is rotated by the token's
row (y) coordinate, the second half by its column (x) coordinate. Within a half, the standard
"rotate-half" RoPE is used: ``x * cos + rotate_half(x) * sin`` with frequencies
``base ** (-2i / d)`` for ``i < d / 2`` (``d`` = half the head width).

Special tokens (camera, registers) get position ``(0, 0)``; patch ``(r, c)`` gets ``(r + 1, c + 1)``.
"""

from __future__ import annotations

import torch
from torch import nn


def grid_positions(
    num_frames: int, grid_hw: tuple[int, int], num_special: int, device: torch.device | None = None
) -> torch.Tensor:
    """Integer positions ``[num_frames, num_special + Hp * Wp, 2]`` as ``(y, x)``.

    Patches are row-major and shifted by one so that ``(0, 0)`` is reserved for the ``num_special``
    prefix tokens.
    """
    hp, wp = grid_hw
    ys = torch.arange(hp, device=device).repeat_interleave(wp)
    xs = torch.arange(wp, device=device).repeat(hp)
    patch = torch.stack((ys, xs), -1) + 1
    special = torch.zeros(num_special, 2, dtype=patch.dtype, device=device)
    pos = torch.cat((special, patch), 0)
    return pos.unsqueeze(0).expand(num_frames, -1, -1)


class RotaryEmbedding2D(nn.Module):
    """Applies 2D RoPE to ``[B, heads, N, head_dim]`` tensors given ``(y, x)`` positions ``[B, N, 2]``.

    Args:
        base: frequency base (VGGT: 100).
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        if base <= 0:
            raise ValueError(f"RoPE `base` must be positive, got {base}")
        self.base = float(base)

    def _cos_sin(self, half_dim: int, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables ``[B, 1, N, half_dim]`` for one coordinate."""
        exponents = torch.arange(0, half_dim, 2, device=positions.device).float() / half_dim
        inv_freq = 1.0 / (self.base**exponents)
        angles = positions.to(inv_freq.dtype)[..., None] * inv_freq  # [B, N, half_dim / 2]
        angles = angles.to(dtype)
        angles = torch.cat((angles, angles), -1)
        return angles.cos()[:, None], angles.sin()[:, None]

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=-1)
        return torch.cat((-second, first), -1)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        head_dim = x.shape[-1]
        if head_dim % 4 != 0:
            raise ValueError(f"2D RoPE needs a head width divisible by 4, got {head_dim}")
        if positions.ndim != 3 or positions.shape[-1] != 2:
            raise ValueError(f"RoPE `positions` must have shape [B, N, 2], got {list(positions.shape)}")
        half = head_dim // 2
        out = []
        for axis, part in enumerate(x.split(half, dim=-1)):
            cos, sin = self._cos_sin(half, positions[..., axis], x.dtype)
            out.append(part * cos + self._rotate_half(part) * sin)
        return torch.cat(out, -1)
