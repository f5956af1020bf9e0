"""Per-scene refinement: optimise feed-forward Gaussians against the scene's decoded frames at its cameras.

The paper refines the feed-forward Gaussians of some decoders before evaluating; this is the same idea in its
plainest form (no densification or pruning): Adam on the splat parameters with the 3DGS photometric loss
``(1 - lambda) L1 + lambda (1 - SSIM)``, ``lambda = 0.2``, one random frame per step, at the predicted cameras
(the frames are the targets, the cameras stay fixed). Raw parameters: means, ``log_scales``, unit quaternions
(re-normalised each step), ``opacity_logits``, SH. Learning rates follow 3DGS (means scaled by the scene's
extent). Renders with :func:`vist3a.splats.render`: gsplat on CUDA, the torch rasteriser on CPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from vist3a.evaluation.metrics import psnr, ssim
from vist3a.evaluation.views import scene_cameras_at_frames
from vist3a.splats import Gaussians, render

logger = logging.getLogger(__name__)


@dataclass
class RefineSettings:
    """Knobs of :func:`refine_gaussians` (3DGS defaults; ``lr_means`` is relative to the scene extent)."""

    steps: int = 100
    lr_means: float = 1.6e-4
    lr_log_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity_logits: float = 5e-2
    lr_sh_dc: float = 2.5e-3
    ssim_weight: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"`steps` must be >= 0, got {self.steps}")


@dataclass
class RefineResult:
    """Refined splats and the mean PSNR (dB) of their renders against the frames, before and after."""

    gaussians: Gaussians
    psnr_before: float
    psnr_after: float
    steps: int
    seconds: float

    def summary(self) -> dict[str, float]:
        return {"steps": self.steps, "psnr_before": self.psnr_before, "psnr_after": self.psnr_after,
                "seconds": self.seconds}


@torch.no_grad()
def render_psnr(gaussians: Gaussians, frames: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor,
                backend: str = "auto") -> float:
    """Mean PSNR of renders at ``w2c``/``K`` against ``frames [T, 3, H, W]`` (one view at a time)."""
    height, width = frames.shape[-2:]
    values = [float(psnr(render(gaussians, w2c[i : i + 1], K[i : i + 1], width, height, backend=backend)
                         .colors.permute(0, 3, 1, 2), frames[i : i + 1].to(gaussians.device)).mean())
              for i in range(frames.shape[0])]
    return sum(values) / len(values)


def refine_gaussians(gaussians: Gaussians, frames: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor,
                     settings: RefineSettings | None = None, backend: str = "auto") -> RefineResult:
    """Optimise ``gaussians`` so their renders match ``frames``.

    Args:
        gaussians: activated splats (not modified).
        frames: ``[T, 3, H, W]`` targets in ``[0, 1]``.
        w2c: ``[T, 4, 4]`` world-to-camera (OpenCV); ``K``: ``[T, 3, 3]`` pixel intrinsics for ``H x W``.
        settings: :class:`RefineSettings` (default: 100 steps).
    """
    settings = settings or RefineSettings()
    if frames.ndim != 4 or frames.shape[1] != 3 or w2c.shape[0] != frames.shape[0] or K.shape[0] != frames.shape[0]:
        raise ValueError(f"need frames [T, 3, H, W] with T cameras, got {tuple(frames.shape)}, {tuple(w2c.shape)}, "
                         f"{tuple(K.shape)}")
    start = time.perf_counter()
    device = gaussians.device
    frames, w2c, K = frames.to(device).float(), w2c.to(device).float(), K.to(device).float()
    height, width = frames.shape[-2:]
    before = render_psnr(gaussians, frames, w2c, K, backend)
    g = gaussians.detach().to(dtype=torch.float32)
    extent = float((g.means - g.means.median(0).values).norm(dim=-1).median().clamp_min(1e-6))
    params = {
        "means": g.means.clone().requires_grad_(True),
        "log_scales": g.scales.clamp_min(1e-8).log().requires_grad_(True),
        "quats": g.quats.clone().requires_grad_(True),
        "opacity_logits": torch.logit(g.opacities.clamp(1e-4, 1 - 1e-4)).requires_grad_(True),
        "sh_dc": g.sh[:, :1].clone().requires_grad_(True),
        "sh_rest": g.sh[:, 1:].clone().requires_grad_(True),
    }
    lrs = {"means": settings.lr_means * extent, "log_scales": settings.lr_log_scales, "quats": settings.lr_quats,
           "opacity_logits": settings.lr_opacity_logits, "sh_dc": settings.lr_sh_dc, "sh_rest": settings.lr_sh_dc / 20}
    optimizer = torch.optim.Adam([{"params": [p], "lr": lrs[k]} for k, p in params.items() if p.numel()], eps=1e-15)
    gen = torch.Generator().manual_seed(settings.seed)

    def current() -> Gaussians:
        return Gaussians(means=params["means"], quats=torch.nn.functional.normalize(params["quats"], dim=-1),
                         scales=params["log_scales"].exp(), opacities=torch.sigmoid(params["opacity_logits"]),
                         sh=torch.cat([params["sh_dc"], params["sh_rest"]], 1))

    for _ in range(settings.steps):
        i = int(torch.randint(frames.shape[0], (1,), generator=gen))
        pred = render(current(), w2c[i : i + 1], K[i : i + 1], width, height, backend=backend).colors
        pred = pred.permute(0, 3, 1, 2)
        target = frames[i : i + 1]
        loss = (1 - settings.ssim_weight) * (pred - target).abs().mean()
        loss = loss + settings.ssim_weight * (1 - ssim(pred, target).mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    refined = current().detach()
    after = render_psnr(refined, frames, w2c, K, backend)
    seconds = time.perf_counter() - start
    logger.info("refine: %d steps, PSNR %.2f -> %.2f dB (%.1f s)", settings.steps, before, after, seconds)
    return RefineResult(refined, before, after, settings.steps, seconds)


def refine_scene(scene: Any, steps: int, backend: str = "auto", device: str | torch.device | None = None,
                 settings: RefineSettings | None = None) -> RefineResult:
    """:func:`refine_gaussians` of a scene's Gaussians against its decoded frames at its predicted cameras."""
    if scene.gaussians is None:
        raise ValueError("the scene has no Gaussians to refine (a pointmap decoder)")
    settings = settings or RefineSettings(steps=steps)
    settings.steps = steps
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    w2c, K = scene_cameras_at_frames(scene)
    return refine_gaussians(scene.gaussians.to(device), scene.frames.float(), w2c, K, settings, backend)
