"""Pure-PyTorch reference rasteriser for 3D Gaussian splats.

Why it exists: it runs anywhere (CPU tests, machines without a CUDA toolchain), autograd differentiates
it without hand-written backward passes, and it is the readable reference that the fast gsplat backend
is checked against (``benchmarks/render_backends.py``). It follows the same image formation model as
3DGS / gsplat "classic" mode, so the two agree to rounding:

1. **EWA projection.** ``Sigma_2d = J W Sigma W^T J^T + 0.3 I`` with ``W`` the camera rotation and ``J`` the
   Jacobian of the pinhole projection at the splat centre (its x/z, y/z clamped to 1.3x the field of view,
   as 3DGS does, to keep splats far outside the image from exploding). The ``0.3`` pixel^2 low-pass keeps
   every splat at least about a pixel wide.
2. **Per-pixel opacity** ``alpha = min(0.999, o * exp(-0.5 d^T Sigma_2d^-1 d))``, ignored below ``1/255``.
3. **Front-to-back compositing** in order of camera-space depth ``z``: ``w_i = alpha_i prod_{j<i}(1 - alpha_j)``;
   a pixel stops (excluding the splat that would do it) once its transmittance would drop to ``1e-4``.

Pixels are evaluated at integer coordinates (vist3a's convention, see :mod:`vist3a.cameras`). Memory is
bounded by binning splats into 16x16 pixel tiles (by the exact ellipse where ``alpha >= 1/255``) and
compositing groups of tiles in chunks of at most ``chunk_elements`` (pixel, splat) pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vist3a.cameras import quat_to_rotmat
from vist3a.splats.gaussians import Gaussians
from vist3a.splats.sh import sh_to_color

ALPHA_MAX = 0.999  # gsplat's cap (the original 3DGS rasteriser uses 0.99)
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
EPS2D = 0.3  # pixel^2 added to every projected covariance
FOV_CLAMP = 0.3  # J is evaluated at most 30% of the half field of view outside the image
TILE_SIZE = 16
_MAX_LIST_CHUNK = 256


@dataclass
class ProjectedSplats:
    """Splats of one camera after projection, culled to those that can touch the image (M of them).

    ``conics [M, 3]`` holds ``(a, b, c)`` of ``Sigma_2d^-1 = [[a, b], [b, c]]``; ``extents [M, 2]`` the
    half-width/height in pixels of the ellipse where ``alpha >= 1/255``; ``ids [M]`` index the input splats.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    extents: torch.Tensor
    ids: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]


def project(
    gaussians: Gaussians,
    w2c: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int,
    near: float,
    far: float,
) -> ProjectedSplats:
    """Project splats into one camera (``w2c [4, 4]``, ``K [3, 3]``) and evaluate their view-dependent colour."""
    rot_c, trans_c = w2c[:3, :3], w2c[:3, 3]
    means_c = gaussians.means @ rot_c.T + trans_c
    z = means_c[:, 2]
    keep = (z > near) & (z < far) & (gaussians.opacities >= ALPHA_MIN)
    ids = torch.nonzero(keep).squeeze(1)
    means_c = means_c[ids]
    x, y, z = means_c.unbind(-1)

    rot = quat_to_rotmat(gaussians.quats[ids])
    m = (rot_c @ rot) * gaussians.scales[ids][:, None, :]  # [M, 3, 3] = W R S
    cov_c = m @ m.transpose(1, 2)

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # visible image spans u in [-0.5, W - 0.5]; allow 30% of the half-FoV beyond it (3DGS / gsplat)
    margin_x, margin_y = FOV_CLAMP * 0.5 * width / fx, FOV_CLAMP * 0.5 * height / fy
    tx = z * torch.clamp(x / z, min=-(cx + 0.5) / fx - margin_x, max=(width - 0.5 - cx) / fx + margin_x)
    ty = z * torch.clamp(y / z, min=-(cy + 0.5) / fy - margin_y, max=(height - 0.5 - cy) / fy + margin_y)
    zeros = torch.zeros_like(z)
    jac = torch.stack(
        (torch.stack((fx / z, zeros, -fx * tx / (z * z)), -1), torch.stack((zeros, fy / z, -fy * ty / (z * z)), -1)),
        1,
    )  # [M, 2, 3]
    cov2d = jac @ cov_c @ jac.transpose(1, 2)
    a = cov2d[:, 0, 0] + EPS2D
    b = 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0])
    c = cov2d[:, 1, 1] + EPS2D
    det = a * c - b * b
    conics = torch.stack((c / det, -b / det, a / det), -1)
    means2d = torch.stack((fx * x / z + cx, fy * y / z + cy), -1)
    opacities = gaussians.opacities[ids]

    with torch.no_grad():
        # alpha >= 1/255  <=>  d^T Sigma^-1 d <= 2 ln(255 o); that ellipse spans sqrt(k Sigma_xx) along x
        k = 2.0 * torch.log((opacities * 255.0).clamp_min(1.0))
        extents = torch.stack((torch.sqrt(k * a), torch.sqrt(k * c)), -1)
        lo = torch.ceil(means2d - extents)
        hi = torch.floor(means2d + extents)
        onscreen = (hi[:, 0] >= 0) & (lo[:, 0] <= width - 1) & (hi[:, 1] >= 0) & (lo[:, 1] <= height - 1)
        onscreen &= (lo <= hi).all(-1) & (det > 0)
    sel = torch.nonzero(onscreen).squeeze(1)
    ids = ids[sel]

    cam_center = -rot_c.T @ trans_c
    colors = sh_to_color(gaussians.sh[ids], gaussians.means[ids] - cam_center, sh_degree)
    return ProjectedSplats(
        means2d=means2d[sel],
        conics=conics[sel],
        depths=z[sel],
        opacities=opacities[sel],
        colors=colors,
        extents=extents[sel],
        ids=ids,
    )


@torch.no_grad()
def _tile_lists(
    means2d: torch.Tensor, extents: torch.Tensor, width: int, height: int, tile_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bin depth-sorted splats into the tiles their ``alpha >= 1/255`` box touches.

    Returns ``splat_ids [I]`` (one entry per (tile, splat) pair, grouped by tile, depth order inside a
    tile), ``counts [T]`` and ``starts [T]`` of each tile's run in ``splat_ids``.
    """
    device = means2d.device
    n_tx, n_ty = math.ceil(width / tile_size), math.ceil(height / tile_size)
    lo = torch.ceil(means2d - extents).long()
    hi = torch.floor(means2d + extents).long()
    tx0 = lo[:, 0].clamp(0, width - 1) // tile_size
    tx1 = hi[:, 0].clamp(0, width - 1) // tile_size
    ty0 = lo[:, 1].clamp(0, height - 1) // tile_size
    ty1 = hi[:, 1].clamp(0, height - 1) // tile_size
    box_w = tx1 - tx0 + 1
    per_splat = box_w * (ty1 - ty0 + 1)
    m = per_splat.shape[0]
    splat = torch.repeat_interleave(torch.arange(m, device=device), per_splat)
    first = torch.cumsum(per_splat, 0) - per_splat
    j = torch.arange(splat.shape[0], device=device) - first[splat]
    tile = (ty0[splat] + j // box_w[splat]) * n_tx + tx0[splat] + j % box_w[splat]
    # splats are already in depth order, so sorting by (tile, splat) keeps depth order inside a tile
    order = torch.argsort(tile * m + splat)
    counts = torch.bincount(tile, minlength=n_tx * n_ty)
    starts = torch.cumsum(counts, 0) - counts
    return splat[order], counts, starts


def rasterize(
    proj: ProjectedSplats,
    width: int,
    height: int,
    *,
    tile_size: int = TILE_SIZE,
    chunk_elements: int = 1 << 20,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite projected splats -> (colours ``[H, W, 3]`` without background, accumulated depth ``[H, W]``
    (``sum w z``, not normalised), alpha ``[H, W]``)."""
    device, dtype = proj.means2d.device, proj.means2d.dtype
    n_tx, n_ty = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles, n_pix = n_tx * n_ty, tile_size * tile_size
    feats = torch.zeros(n_tiles, n_pix, 4, dtype=dtype, device=device)  # rgb + depth
    trans = torch.ones(n_tiles, n_pix, dtype=dtype, device=device)
    if len(proj) > 0:
        order = torch.argsort(proj.depths, stable=True)
        means2d, conics, opac = proj.means2d[order], proj.conics[order], proj.opacities[order]
        values = torch.cat((proj.colors[order], proj.depths[order, None]), -1)  # [M, 4]
        splat_ids, counts, starts = _tile_lists(means2d.detach(), proj.extents[order], width, height, tile_size)

        local = torch.arange(n_pix, device=device)
        local_xy = torch.stack((local % tile_size, local // tile_size), -1).to(dtype)  # [p, 2]
        busy = torch.argsort(counts, descending=True)
        busy = busy[counts[busy] > 0]
        out_tiles, out_feats, out_trans = [], [], []
        i = 0
        while i < busy.shape[0]:
            longest = int(counts[busy[i]])
            step = min(longest, _MAX_LIST_CHUNK)
            group = busy[i : i + max(1, chunk_elements // (n_pix * step))]
            i += group.shape[0]
            origin = torch.stack((group % n_tx, group // n_tx), -1).to(dtype) * tile_size
            pix = origin[:, None, :] + local_xy[None]  # [G, p, 2]
            f, t = _composite_group(
                pix, splat_ids, starts[group], counts[group], longest, step, means2d, conics, opac, values
            )
            out_tiles.append(group)
            out_feats.append(f)
            out_trans.append(t)
        tiles = torch.cat(out_tiles)
        feats = feats.index_copy(0, tiles, torch.cat(out_feats))
        trans = trans.index_copy(0, tiles, torch.cat(out_trans))

    def untile(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(n_ty, n_tx, tile_size, tile_size, *x.shape[2:]).transpose(1, 2)
        return x.reshape(n_ty * tile_size, n_tx * tile_size, *x.shape[4:])[:height, :width]

    feats, alpha = untile(feats), 1.0 - untile(trans)
    return feats[..., :3], feats[..., 3], alpha


def _composite_group(
    pix: torch.Tensor,
    splat_ids: torch.Tensor,
    starts: torch.Tensor,
    counts: torch.Tensor,
    longest: int,
    step: int,
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opac: torch.Tensor,
    values: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back compositing of G tiles (pixels ``pix [G, p, 2]``) over their splat lists, ``step`` at a time."""
    g, p = pix.shape[:2]
    acc = pix.new_zeros(g, p, values.shape[1])
    trans = pix.new_ones(g, p)
    offsets = torch.arange(step, device=pix.device)
    for first in range(0, longest, step):
        pos = first + offsets  # [L]
        valid = pos[None, :] < counts[:, None]  # [G, L]
        idx = splat_ids[(starts[:, None] + pos[None, :]).clamp_max(splat_ids.shape[0] - 1)]
        mu, con, op = means2d[idx], conics[idx], opac[idx]  # [G, L, 2], [G, L, 3], [G, L]
        dx = pix[:, :, None, 0] - mu[:, None, :, 0]  # [G, p, L]
        dy = pix[:, :, None, 1] - mu[:, None, :, 1]
        q = con[:, None, :, 0] * dx * dx + 2.0 * con[:, None, :, 1] * dx * dy + con[:, None, :, 2] * dy * dy
        alpha = (op[:, None, :] * torch.exp(-0.5 * q)).clamp_max(ALPHA_MAX)
        alpha = torch.where((alpha >= ALPHA_MIN) & valid[:, None, :], alpha, torch.zeros_like(alpha))
        keep = 1.0 - alpha
        through = torch.cumprod(keep, -1)  # transmittance left after each splat, relative to ``trans``
        with torch.no_grad():
            # a splat counts only if the transmittance after it stays above the cut-off; that is monotone,
            # so every splat after the first failing one is dropped as well
            alive = trans[..., None] * through > TRANSMITTANCE_MIN
        alpha = torch.where(alive, alpha, torch.zeros_like(alpha))
        # exclusive product prod_{j<i}(1 - alpha_j); dropped splats come last, so it is the same with or without them
        weights = alpha * (through / keep) * trans[..., None]  # [G, p, L]
        acc = acc + torch.einsum("gpl,glc->gpc", weights, values[idx])
        trans = trans * torch.prod(1.0 - alpha, -1)
        if not bool((trans > TRANSMITTANCE_MIN).any()):
            break
    return acc, trans


def render_torch(
    gaussians: Gaussians,
    w2c: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    background: torch.Tensor | None,
    sh_degree: int,
    near: float,
    far: float,
    chunk_elements: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render C cameras (``w2c [C, 4, 4]``, ``Ks [C, 3, 3]``, ``background [C, 3]`` or None) one at a time.

    Returns colours ``[C, H, W, 3]``, expected depth ``[C, H, W]`` (alpha-normalised, 0 where nothing was
    hit) and alpha ``[C, H, W]``.
    """
    if chunk_elements is None:
        chunk_elements = 1 << (25 if gaussians.means.is_cuda else 20)
    colors, depths, alphas = [], [], []
    for cam in range(w2c.shape[0]):
        proj = project(gaussians, w2c[cam], Ks[cam], width, height, sh_degree=sh_degree, near=near, far=far)
        rgb, depth_sum, alpha = rasterize(proj, width, height, chunk_elements=chunk_elements)
        if background is not None:
            rgb = rgb + (1.0 - alpha)[..., None] * background[cam]
        colors.append(rgb)
        depths.append(depth_sum / alpha.clamp_min(1e-10))
        alphas.append(alpha)
    return torch.stack(colors), torch.stack(depths), torch.stack(alphas)
