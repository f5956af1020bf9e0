"""AnySplat's Gaussian-parameter head: a DPT head that also sees the RGB frames.

The fused DPT map (``features // 2`` channels after ``output_conv1``) is upsampled to the image size and
added to ``input_merger(rgb)`` (a 7x7 conv + ReLU on the raw ``[0, 1]`` frames), gets the uv positional
embedding, and a 3x3 conv -> ReLU -> 1x1 conv predicts ``output_dim`` raw channels per pixel: the
Gaussian parameters followed by one confidence channel, with no activation. The official module hard-codes
the merger/hidden width to 128 (= 256 // 2 for the released ``features=256``); here it is ``features // 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vist3a.recon.config import DPTConfig
from vist3a.recon.heads.dpt_head import DPTHead, add_pos_embed

MERGER_KERNEL = 7


class GaussianHead(DPTHead):
    """``tokens`` + RGB ``[B, V, 3, H, W]`` -> raw per-pixel channels ``[B, V, output_dim, H, W]``."""

    def __init__(self, dim_in: int, config: DPTConfig, patch_size: int, output_dim: int) -> None:
        super().__init__(dim_in, config, patch_size, output_dim=output_dim)
        hidden = config.features // 2
        self.input_merger = nn.Sequential(nn.Conv2d(3, hidden, MERGER_KERNEL, padding=MERGER_KERNEL // 2), nn.ReLU())
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, output_dim, 1)
        )

    def forward(
        self,
        tokens: Sequence[torch.Tensor],
        images: torch.Tensor,
        num_prefix_tokens: int,
        frames_chunk_size: int | None = 8,
    ) -> torch.Tensor:
        """``images`` are the RGB frames in ``[0, 1]`` (their pixel values enter the head)."""
        batch, views, _, height, width = images.shape
        chunk = frames_chunk_size or views
        outs = []
        for start in range(0, views, chunk):
            frames = slice(start, min(start + chunk, views))
            out = self.fuse(tokens, num_prefix_tokens, (height, width), frames)
            rgb = images[:, frames].reshape(-1, 3, height, width)
            out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=True)
            out = out + self.input_merger(rgb)
            if self.config.pos_embed:
                out = add_pos_embed(out, (height, width))
            out = self.scratch.output_conv2(out)
            outs.append(out.reshape(batch, -1, *out.shape[1:]))
        return torch.cat(outs, 1)
