"""VGGT camera head: iterative refinement of a 9-d pose encoding per frame.

Input: the camera token (index 0) of the last aggregator layer, ``[B, V, 2C]``. Each of the
``num_iterations`` steps embeds the current (pre-activation) estimate, turns it into an adaptive-LayerNorm
modulation (shift, scale, gate) of the camera tokens, runs a small transformer trunk *across the frames*
and adds the predicted delta. The encoding is ``[t (3), q xyzw (4), fov_h, fov_w]`` for the world-to-camera
extrinsic; see :func:`vist3a.cameras.pose_encoding_to_w2c_K`.
"""

from __future__ import annotations

import torch
from torch import nn

from vist3a.recon.config import CameraHeadConfig
from vist3a.recon.heads.activations import activate_pose
from vist3a.recon.layers import Block, Mlp

TRANSLATION_DIM, QUATERNION_DIM, FOV_DIM = 3, 4, 2
POSE_ENCODING_DIM = TRANSLATION_DIM + QUATERNION_DIM + FOV_DIM


class CameraHead(nn.Module):
    """Iterative pose head. ``dim_in`` is the aggregator output width (``2 * embed_dim``)."""

    def __init__(self, dim_in: int, config: CameraHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = nn.Sequential(
            *(
                Block(dim_in, config.num_heads, mlp_ratio=config.mlp_ratio, init_values=config.init_values)
                for _ in range(config.trunk_depth)
            )
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_ENCODING_DIM)
        if config.patch_pool_dim > 0:
            if config.patch_pool_tokens < 1:
                raise ValueError("`patch_pool_tokens` must be >= 1 when `patch_pool_dim` is set")
            self.patch_pool_norm = nn.LayerNorm(dim_in)
            self.patch_pool_in = nn.Linear(dim_in, config.patch_pool_dim)
            self.patch_pool_out = nn.Linear(config.patch_pool_dim * config.patch_pool_tokens, dim_in)
            nn.init.zeros_(self.patch_pool_out.weight)
            nn.init.zeros_(self.patch_pool_out.bias)

    def forward(self, last_layer_tokens: torch.Tensor, num_iterations: int | None = None,
                num_prefix_tokens: int | None = None) -> list[torch.Tensor]:
        """``last_layer_tokens [B, V, T, 2C]`` -> list of activated pose encodings ``[B, V, 9]``, one per step.

        ``num_prefix_tokens`` (camera + register tokens) is needed only with ``patch_pool_dim``.
        """
        iterations = self.config.num_iterations if num_iterations is None else num_iterations
        tokens = self.token_norm(last_layer_tokens[:, :, 0])
        if self.config.patch_pool_dim > 0:
            if num_prefix_tokens is None:
                raise ValueError("the camera head's patch pooling needs `num_prefix_tokens`")
            patches = last_layer_tokens[:, :, num_prefix_tokens:]
            if patches.shape[2] != self.config.patch_pool_tokens:
                raise ValueError(f"the camera head pools {self.config.patch_pool_tokens} patch tokens per frame, "
                                 f"got {patches.shape[2]}")
            pooled = self.patch_pool_in(self.patch_pool_norm(patches)).flatten(2)
            tokens = tokens + self.patch_pool_out(pooled)
        batch, views, _ = tokens.shape
        normed = self.adaln_norm(tokens)
        raw = None
        encodings = []
        for _ in range(iterations):
            if raw is None:
                cond = self.embed_pose(self.empty_pose_tokens.expand(batch, views, -1))
            else:
                cond = self.embed_pose(raw.detach())
            shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
            x = gate * (normed * (1 + scale) + shift) + tokens
            x = self.trunk(x)
            delta = self.pose_branch(self.trunk_norm(x))
            raw = delta if raw is None else raw + delta
            encodings.append(activate_pose(raw))
        return encodings
