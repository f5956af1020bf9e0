"""Helpers for the export tests: a small synthetic scene, splats around the origin seen from an arc."""

from __future__ import annotations

import math

import numpy as np
import torch

from vist3a.cameras import look_at_w2c
from vist3a.exports import SceneData
from vist3a.splats import Gaussians


def random_gaussians(n: int, degree: int, seed: int = 0) -> Gaussians:
    """Splats whose parameters sit inside every format's range (log-scales in [-8, 2], SH rest in [-1, 1])."""
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen, dtype=torch.float64),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen, dtype=torch.float64), dim=-1),
        scales=torch.exp(torch.rand(n, 3, generator=gen, dtype=torch.float64) * 10 - 8),
        opacities=torch.rand(n, generator=gen, dtype=torch.float64),
        sh=torch.cat([torch.randn(n, 1, 3, generator=gen, dtype=torch.float64),
                      torch.rand(n, (degree + 1) ** 2 - 1, 3, generator=gen, dtype=torch.float64) * 2 - 1], 1),
    )


def arc_cameras(num: int = 4, radius: float = 4.0) -> torch.Tensor:
    angles = torch.linspace(-0.4, 0.4, num, dtype=torch.float64)
    eyes = torch.stack([radius * torch.sin(angles), -0.5 * torch.ones(num), -radius * torch.cos(angles)], 1)
    return look_at_w2c(eyes, torch.zeros(num, 3, dtype=torch.float64), torch.tensor([0.0, -1.0, 0.0]))


def scene_data(num_views: int = 4, width: int = 40, height: int = 30, frame_scale: int = 1, degree: int = 3,
               seed: int = 0) -> SceneData:
    rng = np.random.default_rng(seed)
    focal = 0.5 * width / math.tan(math.radians(30))
    K = np.array([[focal, 0, (width - 1) / 2 + 1.25], [0, focal * 1.02, (height - 1) / 2 - 0.75], [0, 0, 1]])
    frames = rng.integers(0, 256, (num_views, height * frame_scale, width * frame_scale, 3), dtype=np.uint8)
    return SceneData(
        gaussians=random_gaussians(300, degree, seed),
        points=None,
        colors=None,
        w2c=arc_cameras(num_views).numpy(),
        K=np.repeat(K[None], num_views, 0),
        width=width,
        height=height,
        frames=frames,
    )
