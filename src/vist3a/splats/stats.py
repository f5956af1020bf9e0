"""Summary statistics and robust framing of a splat scene (for ``vist3a info`` and automatic cameras).

Generated scenes often contain a few stray splats far from the content; the framing helpers therefore
use percentiles of the (sufficiently opaque) splat centres rather than the raw bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vist3a.splats.gaussians import Gaussians


@dataclass(frozen=True)
class Quantiles:
    """Distribution summary of one per-splat quantity."""

    min: float
    p05: float
    median: float
    mean: float
    p95: float
    max: float

    @staticmethod
    def of(values: torch.Tensor | np.ndarray) -> Quantiles:
        v = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        v = v.reshape(-1)
        if v.size == 0:
            raise ValueError("Quantiles.of needs at least one value, got 0")
        p05, median, p95 = np.percentile(v, (5.0, 50.0, 95.0))
        return Quantiles(float(v.min()), float(p05), float(median), float(v.mean()), float(p95), float(v.max()))


@dataclass(frozen=True)
class SplatSummary:
    """What ``vist3a info`` reports about a scene."""

    count: int
    sh_degree: int
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    robust_min: tuple[float, float, float]  # 2nd percentile per axis
    robust_max: tuple[float, float, float]  # 98th percentile per axis
    opacity: Quantiles
    scale_max: Quantiles  # largest of the three standard deviations, per splat
    scale_min: Quantiles  # smallest, per splat
    num_transparent: int  # opacity < 1/255: can never be seen


def summarize(gaussians: Gaussians) -> SplatSummary:
    """Compute a :class:`SplatSummary`; ValueError for zero splats."""
    if len(gaussians) == 0:
        raise ValueError("summarize: gaussians must contain at least one splat, got 0")
    g = gaussians.detach().to(device="cpu", dtype=torch.float64)
    means = g.means.numpy()
    lo, hi = np.percentile(means, (2.0, 98.0), axis=0)
    return SplatSummary(
        count=len(g),
        sh_degree=g.sh_degree,
        bbox_min=tuple(float(x) for x in means.min(0)),
        bbox_max=tuple(float(x) for x in means.max(0)),
        robust_min=tuple(float(x) for x in lo),
        robust_max=tuple(float(x) for x in hi),
        opacity=Quantiles.of(g.opacities),
        scale_max=Quantiles.of(g.scales.amax(1)),
        scale_min=Quantiles.of(g.scales.amin(1)),
        num_transparent=int((g.opacities < 1.0 / 255.0).sum()),
    )


def scene_center_radius(
    gaussians: Gaussians,
    *,
    percentiles: tuple[float, float] = (2.0, 98.0),
    min_opacity: float = 0.05,
) -> tuple[torch.Tensor, float]:
    """Robust centre ``[3]`` (float64) and radius of the scene content.

    Uses the splats with ``opacity >= min_opacity`` (all of them if none is that opaque): the centre is the
    middle of the per-axis ``percentiles`` box of their means, the radius the upper percentile of their
    distances to it (at least 1e-6).
    """
    if len(gaussians) == 0:
        raise ValueError("scene_center_radius: gaussians must contain at least one splat, got 0")
    g = gaussians.detach().to(device="cpu", dtype=torch.float64)
    means = g.means[g.opacities >= min_opacity]
    if means.shape[0] == 0:
        means = g.means
    pts = means.numpy()
    lo, hi = np.percentile(pts, percentiles, axis=0)
    center = 0.5 * (lo + hi)
    radius = float(np.percentile(np.linalg.norm(pts - center, axis=1), percentiles[1]))
    return torch.from_numpy(center), max(radius, 1e-6)
