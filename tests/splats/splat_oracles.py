"""Independent test references for splat rendering (not imported by vist3a).

Written from the image-formation model (EWA splatting + front-to-back compositing) without the renderer's
code: rotations come from scipy, projection Jacobians from central differences, and compositing is a
plain Python loop over depth-sorted splats per pixel set.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation


def rotation_wxyz(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from (w, x, y, z) quaternions via scipy (which wants x, y, z, w)."""
    q = quats.detach().cpu().double().numpy()
    return torch.from_numpy(Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()).to(quats)


def pinhole(K: torch.Tensor, x_cam: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates ``[M, 2]`` of camera-space points ``[M, 3]``."""
    u = K[0, 0] * x_cam[:, 0] / x_cam[:, 2] + K[0, 2]
    v = K[1, 1] * x_cam[:, 1] / x_cam[:, 2] + K[1, 2]
    return torch.stack((u, v), -1)


def pinhole_jacobian_fd(K: torch.Tensor, x_cam: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """``[M, 2, 3]`` derivative of :func:`pinhole` by central differences (float64)."""
    cols = []
    for k in range(3):
        step = torch.zeros(3, dtype=x_cam.dtype)
        step[k] = h
        cols.append((pinhole(K, x_cam + step) - pinhole(K, x_cam - step)) / (2 * h))
    return torch.stack(cols, -1)


def reference_render(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    rgb: torch.Tensor,
    w2c: torch.Tensor,
    K: torch.Tensor,
    pixels: torch.Tensor,
    background: torch.Tensor,
    near: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Colour ``[P, 3]``, expected depth ``[P]`` and alpha ``[P]`` at pixel centres ``pixels [P, 2]`` (u, v).

    Model: Sigma_2d = J W Sigma W^T J^T + 0.3 I, alpha = min(0.999, o exp(-d^T Sigma_2d^-1 d / 2)) counted if
    >= 1/255, composited front to back by centre depth; a pixel stops before the splat that would bring its
    transmittance to <= 1e-4. Splats must lie well inside the field of view (no Jacobian clamping here).
    """
    dtype = torch.float64
    rot_c, t_c = w2c[:3, :3].to(dtype), w2c[:3, 3].to(dtype)
    x_cam = means.to(dtype) @ rot_c.T + t_c
    front = x_cam[:, 2] > near
    idx = torch.nonzero(front).squeeze(1)
    x_cam = x_cam[idx]
    r = rotation_wxyz(quats[idx].to(dtype))
    s2 = torch.diag_embed(scales[idx].to(dtype) ** 2)
    cov_world = r @ s2 @ r.transpose(1, 2)
    cov_cam = rot_c @ cov_world @ rot_c.T
    jac = pinhole_jacobian_fd(K.to(dtype), x_cam)  # [M, 2, 3]
    mean2d = pinhole(K.to(dtype), x_cam)
    cov2d = jac @ cov_cam @ jac.transpose(1, 2) + 0.3 * torch.eye(2, dtype=dtype)
    inv = torch.linalg.inv(cov2d)
    order = torch.argsort(x_cam[:, 2])

    pix = pixels.to(dtype)
    d = pix[:, None, :] - mean2d[None, :, :]  # [P, M, 2]
    alpha_all = torch.clamp(
        opacities[idx].to(dtype) * torch.exp(-0.5 * torch.einsum("pmi,mij,pmj->pm", d, inv, d)), max=0.999
    )
    color = torch.zeros(pix.shape[0], 3, dtype=dtype)
    depth = torch.zeros(pix.shape[0], dtype=dtype)
    trans = torch.ones(pix.shape[0], dtype=dtype)
    done = torch.zeros(pix.shape[0], dtype=torch.bool)
    visible = (alpha_all >= 1.0 / 255.0).any(0)
    for j in order[visible[order]].tolist():
        alpha = alpha_all[:, j]
        use = (alpha >= 1.0 / 255.0) & ~done
        next_trans = trans * (1.0 - alpha)
        stop = use & (next_trans <= 1e-4)
        done |= stop
        use &= ~stop
        w = torch.where(use, alpha * trans, torch.zeros_like(alpha))
        color += w[:, None] * rgb[int(idx[j])].to(dtype)
        depth += w * x_cam[j, 2]
        trans = torch.where(use, next_trans, trans)
    alpha_total = 1.0 - trans
    color += trans[:, None] * background.to(dtype)
    depth = torch.where(alpha_total > 0, depth / alpha_total.clamp_min(1e-300), torch.zeros_like(depth))
    return color, depth, alpha_total


def random_rotation_w2c(rng: np.random.Generator, distance: float, dtype=torch.float64) -> torch.Tensor:
    """A random camera ``distance`` away from the origin, looking at it (rotation from scipy)."""
    rot = torch.from_numpy(Rotation.random(random_state=rng).as_matrix()).to(dtype)
    w2c = torch.eye(4, dtype=dtype)
    w2c[:3, :3] = rot
    w2c[:3, 3] = torch.tensor([0.0, 0.0, distance], dtype=dtype)
    return w2c
