"""VGGT track head: a DPT feature extractor at half resolution + an iterative point tracker.

Query points ``[B, N, 2]`` (x, y pixels in frame 0) are tracked through all ``V`` frames. Each iteration
correlates the current track features with a feature pyramid around the current positions, and a
transformer predicts position and feature updates; frame 0 stays pinned to the queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vist3a.recon.config import TrackHeadConfig
from vist3a.recon.heads.dpt_head import DPTHead
from vist3a.recon.heads.track_modules import (
    CorrelationPyramid,
    UpdateFormer,
    flow_embedding,
    grid_sincos_embedding,
    sample_points,
)
from vist3a.recon.layers import Mlp

FEATURE_DOWN_RATIO = 2
COORD_DIM = 2


class Tracker(nn.Module):
    """Iterative tracker on feature maps ``[B, S, C, h, w]`` (official ``BaseTrackerPredictor``)."""

    def __init__(self, config: TrackHeadConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        latent = c.features
        window = c.corr_levels * (2 * c.corr_radius + 1) ** 2
        # flow embedding (latent) + 2 scaled flow copies (2 x 2) + correlation (latent) + track features (latent)
        self.transformer_dim = 3 * latent + 2 * COORD_DIM
        self.corr_mlp = Mlp(window, c.hidden_size, latent)
        self.query_ref_token = nn.Parameter(torch.zeros(1, 2, self.transformer_dim))
        self.updateformer = UpdateFormer(
            c.depth,
            self.transformer_dim,
            c.hidden_size,
            c.num_heads,
            latent + COORD_DIM,
            c.mlp_ratio,
            c.num_virtual_tracks,
        )
        self.fmap_norm = nn.LayerNorm(latent)
        self.ffeat_norm = nn.GroupNorm(1, latent)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent, latent), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent, 1)) if c.predict_conf else None

    def forward(self, query_points: torch.Tensor, fmaps: torch.Tensor, iters: int):
        """Returns (list of ``[B, S, N, 2]`` tracks in input pixels, visibility ``[B, S, N]``, confidence or None)."""
        c = self.config
        b, n, _ = query_points.shape
        _, s, ch, h, w = fmaps.shape
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        queries = query_points / float(c.stride)
        coords = queries.reshape(b, 1, n, 2).repeat(1, s, 1, 1)
        track_feats = sample_points(fmaps[:, 0], coords[:, 0]).unsqueeze(1).repeat(1, s, 1, 1)  # [B, S, N, C]
        pyramid = CorrelationPyramid(fmaps, c.corr_levels, c.corr_radius)
        pos = grid_sincos_embedding(self.transformer_dim, (h, w), fmaps.device)
        query_pos = sample_points(pos.expand(b, -1, -1, -1), coords[:, 0]).reshape(b * n, 1, -1)
        ref_token = torch.cat((self.query_ref_token[:, :1], self.query_ref_token[:, 1:].expand(-1, s - 1, -1)), 1)
        tracks = []
        for _ in range(iters):
            coords = coords.detach()
            corr = self.corr_mlp(pyramid.sample(track_feats, coords).permute(0, 2, 1, 3).reshape(b * n, s, -1))
            flows = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(b * n, s, 2)
            flow_emb = torch.cat((flow_embedding(flows, ch // 2), flows / c.max_scale, flows / c.max_scale), -1)
            feats = track_feats.permute(0, 2, 1, 3).reshape(b * n, s, ch)
            x = torch.cat((flow_emb, corr, feats), -1) + query_pos + ref_token.to(flows.dtype)
            delta = self.updateformer(x.reshape(b, n, s, -1)).reshape(b * n, s, -1)
            feats = feats.reshape(-1, ch) + self.ffeat_updater(self.ffeat_norm(delta[..., 2:].reshape(-1, ch)))
            track_feats = feats.reshape(b, n, s, ch).permute(0, 2, 1, 3)
            coords = coords + delta[..., :2].reshape(b, n, s, 2).permute(0, 2, 1, 3)
            coords = torch.cat((queries[:, None], coords[:, 1:]), 1)  # frame 0 stays at the queries
            tracks.append(coords * c.stride)
        flat = track_feats.reshape(-1, ch)
        vis = torch.sigmoid(self.vis_predictor(flat)).reshape(b, s, n)
        conf = torch.sigmoid(self.conf_predictor(flat)).reshape(b, s, n) if self.conf_predictor is not None else None
        return tracks, vis, conf


class TrackHead(nn.Module):
    """Track head: ``feature_extractor`` (DPT, feature-only, half resolution, no pos-embed) + ``tracker``."""

    def __init__(self, dim_in: int, config: TrackHeadConfig, patch_size: int) -> None:
        super().__init__()
        self.config = config
        self.feature_extractor = DPTHead(
            dim_in, config.extractor, patch_size, feature_only=True, down_ratio=FEATURE_DOWN_RATIO
        )
        self.tracker = Tracker(config)

    def forward(
        self,
        tokens: Sequence[torch.Tensor],
        images: torch.Tensor,
        num_prefix_tokens: int,
        query_points: torch.Tensor,
        iters: int | None = None,
    ):
        """``images [B, V, 3, H, W]`` (shape only), ``query_points [B, N, 2]`` -> (tracks list, vis, conf)."""
        fmaps = self.feature_extractor(tokens, images, num_prefix_tokens)
        return self.tracker(query_points, fmaps, self.config.iters if iters is None else iters)
