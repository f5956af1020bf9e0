"""Similarity alignment of point sets (Umeyama 1991): the frame and scale fix used before every 3D metric.

Feed-forward models predict scenes up to a similarity transform (their first camera is the world frame, their
scale is normalised), so pose and pointmap metrics first map the prediction onto the ground truth with the
least-squares ``dst ≈ s R src + t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Sim3:
    """``x -> scale * rotation @ x + translation`` (``rotation [3, 3]``, ``translation [3]``; float64)."""

    scale: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """Transform points ``[..., 3]`` (returned in their dtype)."""
        x = points.double()
        return (self.scale * x @ self.rotation.T + self.translation).to(points.dtype)

    def apply_c2w(self, c2w: torch.Tensor) -> torch.Tensor:
        """Transform camera-to-world poses ``[..., 4, 4]``: rotate the axes, move and scale the centres."""
        out = c2w.double().clone()
        out[..., :3, :3] = self.rotation @ out[..., :3, :3]
        out[..., :3, 3] = self.apply(out[..., :3, 3])
        return out.to(c2w.dtype)


def umeyama(src: torch.Tensor, dst: torch.Tensor, with_scale: bool = True,
            weights: torch.Tensor | None = None) -> Sim3:
    """Least-squares similarity (or rigid, ``with_scale=False``) transform taking ``src`` onto ``dst``.

    Args:
        src, dst: corresponding points ``[N, 3]`` (N >= 3, not all collinear for a unique rotation).
        with_scale: estimate the scale (Sim(3)); else it is 1 (SE(3)).
        weights: optional ``[N]`` non-negative weights.

    Returns:
        :class:`Sim3` minimising ``sum w_i |dst_i - (s R src_i + t)|^2`` (computed in float64; the reflection
        case is resolved so that ``det R = +1``).
    """
    if src.shape != dst.shape or src.ndim != 2 or src.shape[-1] != 3 or src.shape[0] < 3:
        raise ValueError(f"umeyama needs two [N, 3] point sets of one shape with N >= 3, got "
                         f"{tuple(src.shape)} and {tuple(dst.shape)}")
    x, y = src.double(), dst.double()
    w = torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if weights is None else weights.double()
    w = w / w.sum()
    mu_x, mu_y = w @ x, w @ y
    xc, yc = x - mu_x, y - mu_y
    cov = (yc * w[:, None]).T @ xc  # [3, 3] = sum w (y - mu_y)(x - mu_x)^T
    u, sigma, vt = torch.linalg.svd(cov)
    sign = torch.ones(3, dtype=torch.float64, device=x.device)
    if torch.det(u) * torch.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ torch.diag(sign) @ vt
    var_x = (w * xc.square().sum(-1)).sum()
    scale = (sigma * sign).sum() / var_x if with_scale else torch.ones((), dtype=torch.float64, device=x.device)
    translation = mu_y - scale * rotation @ mu_x
    return Sim3(scale, rotation, translation)
