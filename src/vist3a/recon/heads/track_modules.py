"""Building blocks of VGGT's point tracker (CoTracker / VGGSfM lineage): sampling, correlation pyramid,
sinusoidal embeddings and the "efficient update former" (time attention + virtual-track space attention).

Coordinates are pixel ``(x, y)`` of the sampled map with pixel centres at integers (``align_corners=True``).
Parameter names follow the official checkpoints (including the misspelt ``virual_tracks``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vist3a.recon.layers import Mlp


# ----------------------------------------------------------------------------- sampling
def bilinear_sample(maps: torch.Tensor, coords: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """``grid_sample`` with pixel coordinates: ``maps [N, C, H, W]``, ``coords [N, h, w, 2]`` (x, y) ->
    ``[N, C, h, w]``."""
    height, width = maps.shape[-2:]
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=maps.dtype, device=maps.device)
    grid = coords.to(maps.dtype) * scale - 1
    return F.grid_sample(maps, grid, align_corners=True, padding_mode=padding_mode)


def sample_points(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Features at points: ``maps [B, C, H, W]``, ``points [B, N, 2]`` (x, y) -> ``[B, N, C]`` (border padding)."""
    return bilinear_sample(maps, points[:, :, None]).squeeze(-1).transpose(1, 2)


# ----------------------------------------------------------------------------- embeddings
def flow_embedding(xy: torch.Tensor, channels: int) -> torch.Tensor:
    """``[..., 2]`` offsets -> ``[..., 2 * channels]``: per axis interleaved ``sin/cos(v * k * 1000 / channels)``
    for ``k = 0, 2, 4, ...`` (the official, non-geometric frequency ladder)."""
    freqs = torch.arange(0, channels, 2, dtype=torch.float32, device=xy.device) * (1000.0 / channels)
    parts = []
    for axis in range(2):
        angles = xy[..., axis : axis + 1].float() * freqs
        parts.append(torch.stack((angles.sin(), angles.cos()), -1).flatten(-2))
    return torch.cat(parts, -1)


def _sincos_1d(channels: int, pos: torch.Tensor) -> torch.Tensor:
    omega = torch.arange(channels // 2, dtype=torch.float64, device=pos.device) / (channels / 2.0)
    omega = 1.0 / 10000**omega
    angles = pos.reshape(-1).double()[:, None] * omega
    return torch.cat((angles.sin(), angles.cos()), 1).float()


def grid_sincos_embedding(channels: int, grid_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """``[1, channels, H, W]`` sin/cos embedding of a pixel grid: first half from the column (x) index,
    second half from the row (y) index, base 10000."""
    height, width = grid_hw
    cols = torch.arange(width, dtype=torch.float32, device=device).repeat(height)
    rows = torch.arange(height, dtype=torch.float32, device=device).repeat_interleave(width)
    emb = torch.cat((_sincos_1d(channels // 2, cols), _sincos_1d(channels // 2, rows)), 1)
    return emb.reshape(1, height, width, channels).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- correlation
class CorrelationPyramid:
    """Feature maps ``[B, S, C, H, W]`` averaged down ``levels - 1`` times; :meth:`sample` correlates track
    features with every level and reads a ``(2r + 1)²`` window around each track position."""

    def __init__(self, fmaps: torch.Tensor, levels: int, radius: int) -> None:
        self.radius = radius
        self.pyramid = [fmaps]
        for _ in range(levels - 1):
            b, s, c, h, w = self.pyramid[-1].shape
            pooled = F.avg_pool2d(self.pyramid[-1].reshape(b * s, c, h, w), kernel_size=2, stride=2)
            self.pyramid.append(pooled.reshape(b, s, c, *pooled.shape[-2:]))
        offsets = torch.linspace(-radius, radius, 2 * radius + 1, dtype=fmaps.dtype, device=fmaps.device)
        # window cell (i, j) reads x + offsets[i], y + offsets[j] (the official layout)
        self.window = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1)

    def sample(self, feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """``feats [B, S, N, C]``, ``coords [B, S, N, 2]`` (level-0 pixels) -> ``[B, S, N, levels (2r+1)²]``."""
        b, s, n, c = feats.shape
        side = 2 * self.radius + 1
        out = []
        for level, fmaps in enumerate(self.pyramid):
            h, w = fmaps.shape[-2:]
            corr = torch.matmul(feats, fmaps.reshape(b, s, c, h * w)) / math.sqrt(c)
            centres = coords.reshape(b * s * n, 1, 1, 2) / (2**level)
            grid = centres + self.window.to(coords.dtype).view(1, side, side, 2)
            sampled = bilinear_sample(corr.reshape(b * s * n, 1, h, w), grid, padding_mode="zeros")
            out.append(sampled.reshape(b, s, n, -1))
        return torch.cat(out, -1)


# ----------------------------------------------------------------------------- transformer
class AttnBlock(nn.Module):
    """``x = norm1(x); x = x + attn(x); x = x + mlp(norm2(x))`` (the residual starts from the *normalised* x)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x, x)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """Cross-attention of ``x`` to ``context`` with the same normalised-residual layout as :class:`AttnBlock`."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context)[0]
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """Predicts per-track, per-frame updates from ``[B, N, S, input_dim]`` tokens.

    Each layer attends over time per track, then (through ``num_virtual_tracks`` learned virtual tracks)
    across tracks per frame. Output ``[B, N, S, output_dim]``.
    """

    def __init__(
        self,
        depth: int,
        input_dim: int,
        hidden_size: int,
        num_heads: int,
        output_dim: int,
        mlp_ratio: float,
        num_virtual_tracks: int,
    ) -> None:
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)
        self.virual_tracks = nn.Parameter(torch.zeros(1, num_virtual_tracks, 1, hidden_size))
        self.time_blocks = nn.ModuleList(AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.space_point2virtual_blocks = nn.ModuleList(
            CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.space_virtual2point_blocks = nn.ModuleList(
            CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.input_transform(self.input_norm(x))
        init = tokens
        b, _, t, _ = tokens.shape
        tokens = torch.cat((tokens, self.virual_tracks.repeat(b, 1, t, 1)), 1)
        n = tokens.shape[1]
        points = n - self.num_virtual_tracks
        for time_block, virt_block, p2v, v2p in zip(
            self.time_blocks,
            self.space_virtual_blocks,
            self.space_point2virtual_blocks,
            self.space_virtual2point_blocks,
            strict=True,
        ):
            tokens = time_block(tokens.reshape(b * n, t, -1)).reshape(b, n, t, -1)
            space = tokens.permute(0, 2, 1, 3).reshape(b * t, n, -1)
            point_tokens, virtual_tokens = space[:, :points], space[:, points:]
            virtual_tokens = virt_block(v2p(virtual_tokens, point_tokens))
            point_tokens = p2v(point_tokens, virtual_tokens)
            space = torch.cat((point_tokens, virtual_tokens), 1)
            tokens = space.reshape(b, t, n, -1).permute(0, 2, 1, 3)
        tokens = tokens[:, :points] + init
        return self.flow_head(self.output_norm(tokens))
