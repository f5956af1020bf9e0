"""Per-token linear heads of MV-DUSt3R: a point head with an image skip branch and a Gaussian head.

Facts from facebookresearch/mvdust3r (``dust3r/heads/linear_head.py``: ``LinearPts3d``, ``GSHead``,
``postprocess.py``), reimplemented with the official parameter names. Both heads map every decoder token of
the ``Hp x Wp`` grid to a ``p x p`` pixel patch: a token's output vector ``o`` fills pixel ``(p*ty + i,
p*tx + j)`` of channel ``c`` with ``o[c*p*p + i*p + j]`` (``F.pixel_shuffle``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tokens_to_pixels(values: torch.Tensor, grid_hw: tuple[int, int], patch_size: int) -> torch.Tensor:
    """``[B, Hp*Wp, C*p*p]`` token outputs -> ``[B, C, Hp*p, Wp*p]`` pixels (see the module docstring)."""
    batch, tokens, channels = values.shape
    hp, wp = grid_hw
    if tokens != hp * wp:
        raise ValueError(f"got {tokens} tokens for a {hp}x{wp} grid")
    return F.pixel_shuffle(values.transpose(1, 2).reshape(batch, channels, hp, wp), patch_size)


class ConvNormBlock(nn.Module):
    """``Conv2d(k, padding k//2) -> BatchNorm2d [-> SELU]`` (the official ``MiddleBlock``).

    The BatchNorm always uses its running statistics: vist3a only runs or distils this released head and
    never re-estimates them, so ``model.train()`` (stitching) does not change its output.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, activation: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm
        x = F.batch_norm(self.conv(x), n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)
        return F.selu(x) if self.activation else x


class LinearPointHead(nn.Module):
    """Pointmap + confidence from decoder tokens (``LinearPts3d`` with ``skip=True``).

    ``proj = Linear(dim, 4*p*p)`` gives per pixel ``xyz`` and a confidence logit ``c``. The skip branch adds
    ``skip_scale * skip_proj(cat(image, xyz))`` to ``xyz`` (4 conv blocks, kernels 3, 5, 5, 3, widths
    ``6 -> skip_dim -> skip_dim -> skip_dim -> 3``). Activations (depth mode ``exp``, conf mode
    ``('exp', conf_min, conf_max)``): ``pts = xyz / max(|xyz|, 1e-8) * expm1(|xyz|)``,
    ``conf = conf_min + min(exp(c), conf_max - conf_min)``.
    """

    def __init__(
        self,
        dim: int,
        patch_size: int,
        skip: bool = True,
        skip_dim: int = 256,
        skip_scale: float = 1e-4,
        conf_min: float = 1.0,
        conf_max: float = 1e9,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.skip_scale = skip_scale
        self.conf_min, self.conf_max = conf_min, conf_max
        self.proj = nn.Linear(dim, 4 * patch_size**2)
        self.skip_proj = (
            nn.Sequential(
                ConvNormBlock(6, skip_dim, 3, True),
                ConvNormBlock(skip_dim, skip_dim, 5, True),
                ConvNormBlock(skip_dim, skip_dim, 5, True),
                ConvNormBlock(skip_dim, 3, 3, False),
            )
            if skip
            else None
        )

    def forward(
        self, tokens: torch.Tensor, grid_hw: tuple[int, int], image: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens [B, Hp*Wp, dim]``, ``image [B, 3, H, W]`` in ``[-1, 1]`` (read by the skip branch) ->
        ``(points [B, H, W, 3], conf [B, H, W])``."""
        feat = tokens_to_pixels(self.proj(tokens), grid_hw, self.patch_size)
        xyz, logit = feat[:, :3], feat[:, 3]
        if self.skip_proj is not None:
            if image is None:
                raise ValueError("the point head's skip branch needs the input image")
            xyz = xyz + self.skip_scale * self.skip_proj(torch.cat([image.to(xyz.dtype), xyz], 1))
        xyz = xyz.permute(0, 2, 3, 1)
        dist = xyz.norm(dim=-1, keepdim=True)
        points = xyz / dist.clamp(min=1e-8) * torch.expm1(dist)
        conf = self.conf_min + logit.exp().clamp(max=self.conf_max - self.conf_min)
        return points, conf


def _mlp(dim: int, hidden: int, out: int) -> nn.Sequential:
    """``Linear -> ReLU -> Linear`` without biases (keys ``.0.weight``, ``.2.weight``)."""
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, out, bias=False))


class PixelGaussianHead(nn.Module):
    """One 3D Gaussian per pixel from decoder tokens (``GSHead``, no skip branch).

    ``LayerNorm`` (eps 1e-5) then one two-layer MLP per parameter: ``mlp_rgb`` (``3 (sh_degree+1)^2``
    channels, raw), ``mlp_opacity`` (sigmoid), ``mlp_scale2`` (``0.1 * raw``, may be negative),
    ``mlp_rotation`` (``raw / max(|raw|, 1e-5)``, quaternion order as the release hands it to gsplat: w, x, y, z).
    The Gaussian means are the point head's points.
    """

    def __init__(self, dim: int, patch_size: int, mlp_dim: int = 768, sh_degree: int = 0) -> None:
        super().__init__()
        self.patch_size = patch_size
        pp = patch_size**2
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.mlp_rgb = _mlp(dim, mlp_dim, pp * 3 * (sh_degree + 1) ** 2)
        self.mlp_opacity = _mlp(dim, mlp_dim, pp)
        self.mlp_scale2 = _mlp(dim, mlp_dim, pp * 3)
        self.mlp_rotation = _mlp(dim, mlp_dim, pp * 4)

    def forward(self, tokens: torch.Tensor, grid_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        """``tokens [B, Hp*Wp, dim]`` -> ``rgb [B, H, W, 3(sh+1)^2]``, ``opacity [B, H, W]``, ``scale [B, H, W, 3]``,
        ``rotation [B, H, W, 4]``."""
        t = self.norm(tokens)

        def pixels(mlp: nn.Module) -> torch.Tensor:
            return tokens_to_pixels(mlp(t), grid_hw, self.patch_size).permute(0, 2, 3, 1)

        rotation = pixels(self.mlp_rotation)
        return {
            "rgb": pixels(self.mlp_rgb),
            "opacity": torch.sigmoid(pixels(self.mlp_opacity))[..., 0],
            "scale": 0.1 * pixels(self.mlp_scale2),
            "rotation": F.normalize(rotation, dim=-1, eps=1e-5),
        }
