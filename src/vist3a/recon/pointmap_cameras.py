"""Cameras from pointmaps: intrinsics and extrinsics of views whose pixels have 3D points in a shared frame.

MV-DUSt3R predicts no cameras, only per-pixel points of every view in the reference view's camera frame. This
module recovers, in vist3a's conventions (OpenCV axes, world-to-camera ``w2c``, pixel ``K`` with integer pixel
centres, so the principal point of an ``H x W`` image is ``((W-1)/2, (H-1)/2)``):

* **Focal length** (one, shared by all views: the views of a video or generated clip come from one camera) by
  weighted least squares on the reference view, whose points are in its own camera frame: pixel ``(u, v)`` with
  point ``(X, Y, Z)`` should satisfy ``u - cx = f X / Z`` and ``v - cy = f Y / Z``, so
  ``f = sum w (a . b) / sum w |a|^2`` with ``a = (X/Z, Y/Z)``, ``b = (u - cx, v - cy)``. Closed form, no iteration.
* **Pose** of each view from its pixels' rays and points (perspective-n-point with the known ``K``), by the
  orthogonal-iteration algorithm (Lu, Hager & Mjolsness, TPAMI 2000): alternate (1) projecting the current
  camera-frame points onto their pixel rays and (2) a weighted Procrustes (Kabsch) fit of the rigid motion from
  the points to those projections, with the optimal translation in closed form. Why this and not PnP-RANSAC (the
  release's demo): the pointmaps are dense and, after the confidence filter, nearly outlier-free, so a
  confidence-weighted least-squares fit over all confident pixels is more accurate than a minimal-sample
  consensus, deterministic, batched over views on the GPU, and needs no OpenCV. It minimises the object-space
  error, which converges from the identity for the moderate baselines of multi-view inputs.

Only the ``keep_fraction`` most confident finite pixels of each view enter the fits (weights = confidence).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

FALLBACK_FOV_DEG = 60.0
"""Horizontal field of view used when the pointmap gives no positive focal (e.g. a random model)."""


@dataclass
class PointmapCameras:
    """Cameras recovered from pointmaps; the world frame is the reference camera's frame.

    Attributes:
        w2c: ``[..., V, 3, 4]`` world-to-camera (the reference view's is the identity).
        K: ``[..., V, 3, 3]`` pixel intrinsics, integer pixel centres, principal point at the image centre.
        depth: ``[..., V, H, W]`` each pixel's point's ``z`` in its own view's camera frame.
        residual: ``[..., V]`` RMS reprojection error (pixels) over the confident pixels of each view.
    """

    w2c: torch.Tensor
    K: torch.Tensor
    depth: torch.Tensor
    residual: torch.Tensor


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[H, W, 2]`` pixel coordinates ``(u, v)`` = (column, row), integer centres."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack((u, v), -1)


def confident_weights(conf: torch.Tensor, points: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """``conf [..., H, W]`` -> weights ``[..., H*W]``: the confidence on the ``keep_fraction`` most confident
    finite pixels of each image, 0 elsewhere."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"`keep_fraction` must be in (0, 1], got {keep_fraction}")
    c = conf.flatten(-2).clone()
    finite = torch.isfinite(points).all(-1).flatten(-2) & torch.isfinite(c)
    c = torch.where(finite, c, torch.zeros_like(c))
    keep = max(1, round(keep_fraction * c.shape[-1]))
    threshold = c.topk(keep, dim=-1).values[..., -1:]
    return torch.where((c >= threshold) & finite, c, torch.zeros_like(c))


def focal_from_own_frame(points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Least-squares focal of images whose ``points [..., H, W, 3]`` are in their own camera frame
    (``weights [..., H*W]``, points with ``z <= 0`` ignored). Returns ``[...]``; where the fit is not positive
    (no perspective geometry, e.g. random weights) the focal of a ``FALLBACK_FOV_DEG`` view, with a warning."""
    height, width = points.shape[-3:-1]
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=points.device, dtype=points.dtype)
    b = (pixel_grid(height, width, points.device, points.dtype) - centre).flatten(0, 1)  # [H*W, 2]
    p = points.flatten(-3, -2)
    z = p[..., 2]
    w = torch.where(z > 1e-8, weights, torch.zeros_like(weights))
    a = p[..., :2] / z.clamp(min=1e-8)[..., None]
    num = (w * (a * b).sum(-1)).sum(-1)
    den = (w * (a * a).sum(-1)).sum(-1)
    focal = num / den.clamp(min=1e-12)
    bad = ~(torch.isfinite(focal) & (focal > 0))
    if bool(bad.any()):
        fallback = (width / 2) / math.tan(math.radians(FALLBACK_FOV_DEG) / 2)
        logger.warning("the pointmap gives no positive focal length for %d image(s); using a %.0f degree field of "
                       "view", int(bad.sum()), FALLBACK_FOV_DEG)
        focal = torch.where(bad, torch.full_like(focal, fallback), focal)
    return focal


def intrinsics(focal: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``focal [...]`` -> ``K [..., 3, 3]`` with the principal point at the image centre (integer centres)."""
    K = torch.zeros(*focal.shape, 3, 3, device=focal.device, dtype=focal.dtype)
    K[..., 0, 0] = K[..., 1, 1] = focal
    K[..., 0, 2] = (width - 1) / 2
    K[..., 1, 2] = (height - 1) / 2
    K[..., 2, 2] = 1.0
    return K


def _rotation_from_covariance(cov: torch.Tensor) -> torch.Tensor:
    """The rotation ``R [..., 3, 3]`` maximising ``trace(R^T cov)`` (Kabsch, with the reflection removed)."""
    u, _, vh = torch.linalg.svd(cov)
    fix = torch.ones_like(cov[..., 0])
    m = u @ vh  # det of 3x3 matrices as a triple product (torch.det is slow for many tiny matrices on CPU)
    fix[..., 2] = (torch.linalg.cross(m[..., 0, :], m[..., 1, :]) * m[..., 2, :]).sum(-1).sign()
    return u @ torch.diag_embed(fix) @ vh


def pnp_orthogonal_iteration(
    points: torch.Tensor, rays: torch.Tensor, weights: torch.Tensor, iterations: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera pose from 3D points and their pixel rays (see the module docstring).

    Args:
        points: ``[..., M, 3]`` world points.
        rays: ``[..., M, 3]`` ray directions ``K^-1 (u, v, 1)`` of their pixels (camera frame).
        weights: ``[..., M]`` non-negative weights.
        iterations: orthogonal-iteration steps (each one weighted Kabsch fit).

    Returns:
        ``(R [..., 3, 3], t [..., 3])`` with ``x_cam = R x_world + t``.

    Every quantity of an iteration is linear in ``R`` and ``t``, so the sums over the ``M`` points are taken once
    (3- and 4-index moment tensors) and each iteration costs O(1) instead of O(M).
    """
    eye = torch.eye(3, device=points.device, dtype=points.dtype)
    proj = rays[..., :, None] * rays[..., None, :] / (rays * rays).sum(-1)[..., None, None]  # V_i [..., M, 3, 3]
    w = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    centred = points - (w[..., None] * points).sum(-2, keepdim=True)
    wv = w[..., None, None] * proj
    # t(R) = -(sum w (I - V))^-1 sum w (I - V) R p   ->  -L^-1 (T : R), T[a,b,c] = sum w (I - V)[a,b] p[c]
    woff = w[..., None, None] * eye - wv
    lhs_inv = torch.linalg.inv(woff.sum(-3))
    t_moment = torch.einsum("...mab,...mc->...abc", woff, points)
    # cov(R, t) = sum w V (R p + t) (p - p̄)^T  ->  W : R + U t
    w_moment = torch.einsum("...mab,...mc,...md->...abcd", wv, points, centred)
    u_moment = torch.einsum("...mab,...md->...abd", wv, centred)

    def translation(rot: torch.Tensor) -> torch.Tensor:
        return -torch.einsum("...ab,...b->...a", lhs_inv, torch.einsum("...abc,...bc->...a", t_moment, rot))

    rot = eye.expand(*points.shape[:-2], 3, 3).clone()
    t = translation(rot)
    for _ in range(iterations):
        cov = torch.einsum("...abcd,...bc->...ad", w_moment, rot) + torch.einsum("...abd,...b->...ad", u_moment, t)
        rot = _rotation_from_covariance(cov)
        t = translation(rot)
    return rot, t


def cameras_from_pointmaps(
    points: torch.Tensor, conf: torch.Tensor, reference_view: int = 0, keep_fraction: float = 0.5,
    iterations: int = 100, max_points: int = 4096,
) -> PointmapCameras:
    """Recover the cameras of views whose pointmaps share the reference view's camera frame.

    Args:
        points: ``[..., V, H, W, 3]`` pointmaps in the camera frame of view ``reference_view``.
        conf: ``[..., V, H, W]`` confidences (higher is better).
        reference_view: the view whose camera frame is the world frame (its ``w2c`` is the identity).
        keep_fraction: fraction of most confident pixels of each view used by the fits.
        iterations: orthogonal-iteration steps of the pose fit.
        max_points: at most this many of the most confident pixels per view enter the pose fit (speed).

    Returns:
        :class:`PointmapCameras` (float32 unless the inputs are float64).

    Example:
        >>> cams = cameras_from_pointmaps(out.points[:, 0], out.conf[:, 0])   # MV-DUSt3R path 0
        >>> cams.w2c.shape, cams.K.shape                                      # [B, V, 3, 4], [B, V, 3, 3]
    """
    if points.shape[-1] != 3 or points.shape[:-1] != conf.shape or points.ndim < 4:
        raise ValueError(f"points [..., V, H, W, 3] and conf [..., V, H, W] expected, got {list(points.shape)}"
                         f" and {list(conf.shape)}")
    dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
    points, conf = points.to(dtype), conf.to(dtype)
    height, width = points.shape[-3:-1]
    weights = confident_weights(conf, points, keep_fraction)  # [..., V, H*W]
    flat = torch.nan_to_num(points.flatten(-3, -2))  # [..., V, H*W, 3]
    focal = focal_from_own_frame(points[..., reference_view, :, :, :], weights[..., reference_view, :])
    K = intrinsics(focal, height, width)  # [..., 3, 3]
    pix = pixel_grid(height, width, points.device, dtype).flatten(0, 1)
    homog = torch.cat([pix, torch.ones_like(pix[:, :1])], -1)  # [H*W, 3]
    rays = torch.einsum("...ij,mj->...mi", torch.linalg.inv(K), homog)  # [..., H*W, 3]
    views = points.shape[-4]
    rays = rays.unsqueeze(-3).expand(*flat.shape)
    top = weights.topk(min(max_points, weights.shape[-1]), dim=-1).indices  # [..., V, M']
    idx3 = top[..., None].expand(*top.shape, 3)
    rot, t = pnp_orthogonal_iteration(flat.gather(-2, idx3), rays.gather(-2, idx3), weights.gather(-1, top),
                                      iterations)
    eye = torch.eye(3, device=points.device, dtype=dtype)
    rot[..., reference_view, :, :] = eye
    t[..., reference_view, :] = 0.0
    w2c = torch.cat([rot, t[..., None]], -1)
    cam = torch.einsum("...ij,...mj->...mi", rot, flat) + t[..., None, :]
    Ks = K.unsqueeze(-3).expand(*K.shape[:-2], views, 3, 3)
    proj = torch.einsum("...ij,...mj->...mi", Ks, cam)
    uv = proj[..., :2] / proj[..., 2:].clamp(min=1e-8)
    err = ((uv - pix) ** 2).sum(-1)
    residual = ((weights * err).sum(-1) / weights.sum(-1).clamp(min=1e-12)).sqrt()
    depth = cam[..., 2].reshape(*points.shape[:-1])
    return PointmapCameras(w2c=w2c, K=Ks.contiguous(), depth=depth, residual=residual)
