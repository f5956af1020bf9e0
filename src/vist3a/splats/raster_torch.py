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
   a pixel stops at the first splat that would bring its transmittance to ``<= 1e-4`` (that splat and all
   later ones are skipped), as in 3DGS and gsplat.

Pixels are evaluated at integer coordinates (vist3a's convention, see :mod:`vist3a.cameras`).

What keeps it fast enough for CPU previews without changing the image (the tests compare it with an
independent per-pixel evaluation):

- culling before any per-pixel work: splats outside ``(near, far)``, with opacity below 1/255, or whose
  ``alpha >= 1/255`` ellipse misses the image;
- tiles: splats are binned into ``tile_size`` pixel tiles by the bounding box of that ellipse, and each tile
  walks its depth-sorted list ``list_chunk`` entries at a time, leaving the walk once every pixel in it has
  stopped. In dense scenes a pixel stops after a few dozen of the hundreds of splats that cover it;
- per-splat maths on contiguous ``[M]`` vectors (rows of ``[k, M]`` tensors): elementwise ops on ``[M, 3]``
  tensors and small batched matmuls are several times slower on CPUs; per-pixel masking by arithmetic and
  ``threshold`` rather than ``where``, and ``exp`` kept out of the far tails (clamped where alpha is below
  1/255 anyway), whose denormals are slow.

Memory is bounded by evaluating at most ``chunk_elements`` (pixel, splat) pairs at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vist3a.splats.gaussians import Gaussians
from vist3a.splats.sh import sh_basis_terms

ALPHA_MAX = 0.999  # gsplat's cap (the original 3DGS rasteriser uses 0.99)
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
EPS2D = 0.3  # pixel^2 added to every projected covariance
FOV_CLAMP = 0.3  # J is evaluated at most 30% of the half field of view outside the image
TILE_SIZE = 4  # pixels; small tiles give short, specific splat lists (measured in benchmarks/render_cpu.py)
LIST_CHUNK = 128  # list entries per tile composited at once (smaller stops sooner, larger vectorises more)
_ATTRS = ("u", "v", "conic_a", "conic_b", "conic_c", "opacity", "r", "g", "b", "z")  # rows of the packed splats


@dataclass
class ProjectedSplats:
    """Splats of one camera after projection, culled to those that can touch the image (M of them).

    Per-splat values are rows (structure of arrays): ``means2d [2, M]`` (u, v), ``conics [3, M]`` holds
    ``(a, b, c)`` of ``Sigma_2d^-1 = [[a, b], [b, c]]``, ``depths [M]`` (camera z), ``opacities [M]``,
    ``colors [3, M]``, ``extents [2, M]`` the half-width/height in pixels of the ellipse where
    ``alpha >= 1/255``, ``ids [M]`` index the input splats.
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


def _rotation_entries(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> list[list[torch.Tensor]]:
    """``R[i][j]`` of the rotations of quaternions ``(w, x, y, z)`` given as ``[M]`` vectors; the formula of
    :func:`vist3a.cameras.quat_to_rotmat` (divides by ``|q|^2``), entry by entry. A zero quaternion gives the
    identity instead of NaN values and gradients (the gsplat backend passes it on as the identity too)."""
    two_s = 2.0 / (w * w + x * x + y * y + z * z).clamp_min(1e-12)
    return [
        [1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w)],
        [two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w)],
        [two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y)],
    ]


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
    cam = rot_c @ gaussians.means.T + trans_c[:, None]  # [3, N] camera coordinates
    keep = (cam[2] > near) & (cam[2] < far) & (gaussians.opacities >= ALPHA_MIN)
    ids = torch.nonzero(keep).squeeze(1)
    x, y, z = cam.index_select(1, ids)  # [M] each
    scales = gaussians.scales.T.index_select(1, ids)
    opacities = gaussians.opacities.index_select(0, ids)

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # visible image spans u in [-0.5, W - 0.5]; allow 30% of the half-FoV beyond it (3DGS / gsplat)
    margin_x, margin_y = FOV_CLAMP * 0.5 * width / fx, FOV_CLAMP * 0.5 * height / fy
    tx = z * torch.clamp(x / z, min=-(cx + 0.5) / fx - margin_x, max=(width - 0.5 - cx) / fx + margin_x)
    ty = z * torch.clamp(y / z, min=-(cy + 0.5) / fy - margin_y, max=(height - 0.5 - cy) / fy + margin_y)
    # T = J W R S (2 x 3 per splat) with J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]; Sigma_2d = T T^T
    ju, ju_z, jv, jv_z = fx / z, -fx * tx / (z * z), fy / z, -fy * ty / (z * z)
    jw_u = [ju * rot_c[0, k] + ju_z * rot_c[2, k] for k in range(3)]  # rows of J W
    jw_v = [jv * rot_c[1, k] + jv_z * rot_c[2, k] for k in range(3)]
    rot = _rotation_entries(*gaussians.quats.T.index_select(1, ids))
    t_u = [(jw_u[0] * rot[0][j] + jw_u[1] * rot[1][j] + jw_u[2] * rot[2][j]) * scales[j] for j in range(3)]
    t_v = [(jw_v[0] * rot[0][j] + jw_v[1] * rot[1][j] + jw_v[2] * rot[2][j]) * scales[j] for j in range(3)]
    a = t_u[0] * t_u[0] + t_u[1] * t_u[1] + t_u[2] * t_u[2] + EPS2D
    b = t_u[0] * t_v[0] + t_u[1] * t_v[1] + t_u[2] * t_v[2]
    c = t_v[0] * t_v[0] + t_v[1] * t_v[1] + t_v[2] * t_v[2] + EPS2D
    det = a * c - b * b
    u, v = fx * x / z + cx, fy * y / z + cy

    with torch.no_grad():
        # alpha >= 1/255  <=>  d^T Sigma^-1 d <= 2 ln(255 o); that ellipse spans sqrt(k Sigma_xx) along x
        k = 2.0 * torch.log((opacities * 255.0).clamp_min(1.0))
        ext_u, ext_v = torch.sqrt(k * a), torch.sqrt(k * c)
        lo_u, hi_u = torch.ceil(u - ext_u), torch.floor(u + ext_u)
        lo_v, hi_v = torch.ceil(v - ext_v), torch.floor(v + ext_v)
        onscreen = (hi_u >= 0) & (lo_u <= width - 1) & (hi_v >= 0) & (lo_v <= height - 1)
        onscreen &= (lo_u <= hi_u) & (lo_v <= hi_v) & (det > 0)
    sel = torch.nonzero(onscreen).squeeze(1)
    ids = ids.index_select(0, sel)
    rows = torch.stack((u, v, c / det, -b / det, a / det, z, opacities)).index_select(1, sel)

    # colour along the ray from the camera centre to the splat (3DGS): SH terms on [M] vectors
    dirs = gaussians.means.T.index_select(1, ids) - (-rot_c.T @ trans_c)[:, None]  # [3, M]
    dirs = dirs / (dirs[0] * dirs[0] + dirs[1] * dirs[1] + dirs[2] * dirs[2]).sqrt().clamp_min(1e-12)  # norm(0): slow
    terms = sh_basis_terms(*dirs, degree=sh_degree)
    num_terms = len(terms)
    # [k * 3, N] rows, then the selected columns (``sh`` is often a transposed view of a model's output)
    sh = gaussians.sh[:, :num_terms].permute(1, 2, 0).reshape(num_terms * 3, -1).index_select(1, ids)
    sh = sh.view(num_terms, 3, ids.shape[0])  # [k, 3, M]
    colors = sum(term * coeffs for term, coeffs in zip(terms, sh, strict=True))
    return ProjectedSplats(
        means2d=rows[0:2],
        conics=rows[2:5],
        depths=rows[5],
        opacities=rows[6],
        colors=(colors + 0.5).clamp_min(0.0),
        extents=torch.stack((ext_u, ext_v)).index_select(1, sel),
        ids=ids,
    )


@torch.no_grad()
def _tile_lists(
    means2d: torch.Tensor, extents: torch.Tensor, width: int, height: int, tile_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bin depth-sorted splats (``means2d, extents [2, M]``) into the tiles their ``alpha >= 1/255`` box touches.

    Returns ``splat_ids [I]`` (one entry per (tile, splat) pair, grouped by tile, depth order inside a
    tile), ``counts [T]`` and ``starts [T]`` of each tile's run in ``splat_ids``.
    """
    device = means2d.device
    n_tx, n_ty = math.ceil(width / tile_size), math.ceil(height / tile_size)
    # int32 tile arithmetic (integer division is ~2x faster than in int64 on CPUs)
    lo, hi = torch.ceil(means2d - extents), torch.floor(means2d + extents)
    tx0 = lo[0].clamp(0, width - 1).int() // tile_size
    tx1 = hi[0].clamp(0, width - 1).int() // tile_size
    ty0 = lo[1].clamp(0, height - 1).int() // tile_size
    ty1 = hi[1].clamp(0, height - 1).int() // tile_size
    box_w = tx1 - tx0 + 1
    per_splat = box_w * (ty1 - ty0 + 1)
    m = per_splat.shape[0]
    splat = torch.repeat_interleave(torch.arange(m, device=device), per_splat.long())  # [I]
    first = torch.cumsum(per_splat.long(), 0) - per_splat
    j = (torch.arange(splat.shape[0], device=device) - first.index_select(0, splat)).int()  # index in the box
    w = box_w.index_select(0, splat)
    tile = (ty0.index_select(0, splat) + j // w) * n_tx + tx0.index_select(0, splat) + j % w
    # entries are generated in splat (= depth) order, so a stable sort by tile keeps depth order inside a tile
    order = torch.sort(tile, stable=True).indices
    counts = torch.bincount(tile, minlength=n_tx * n_ty)
    starts = torch.cumsum(counts, 0) - counts
    return splat.index_select(0, order), counts, starts


def rasterize(
    proj: ProjectedSplats,
    width: int,
    height: int,
    *,
    tile_size: int = TILE_SIZE,
    chunk_elements: int = 1 << 20,
    list_chunk: int = LIST_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite projected splats -> (colours ``[H, W, 3]`` without background, accumulated depth ``[H, W]``
    (``sum w z``, not normalised), alpha ``[H, W]``).

    ``tile_size``, ``list_chunk`` and ``chunk_elements`` trade speed against memory; the image does not
    depend on them (beyond rounding).
    """
    device, dtype = proj.means2d.device, proj.means2d.dtype
    n_tx, n_ty = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles, n_pix = n_tx * n_ty, tile_size * tile_size
    feats = torch.zeros(n_tiles, n_pix, 4, dtype=dtype, device=device)  # rgb + depth
    trans = torch.ones(n_tiles, n_pix, dtype=dtype, device=device)
    if len(proj) > 0:
        order = torch.argsort(proj.depths, stable=True)
        packed = torch.cat(
            (proj.means2d, proj.conics, proj.opacities[None], proj.colors, proj.depths[None])
        ).index_select(1, order)  # [10, M] depth-sorted, rows as in _ATTRS
        splat_ids, counts, starts = _tile_lists(
            packed[:2].detach(), proj.extents.index_select(1, order), width, height, tile_size
        )
        # beyond this Mahalanobis distance every alpha is below 1/255 (and dropped): clamping there keeps
        # exp() out of its slow denormal range without changing any alpha that is used
        q_max = 2.0 * math.log(255.0 * max(1.0, float(proj.opacities.detach().max()))) + 1.0

        tiles = torch.nonzero(counts).squeeze(1)  # [A] tiles with splats; the state below is indexed by these
        counts, starts = counts.index_select(0, tiles), starts.index_select(0, tiles)
        tile_x = ((tiles % n_tx) * tile_size).to(dtype)  # [A] top-left pixel of each tile
        tile_y = ((tiles // n_tx) * tile_size).to(dtype)
        acc = feats.new_zeros(tiles.shape[0], n_pix, 4)
        tr = trans.new_ones(tiles.shape[0], n_pix)
        done = torch.zeros(tiles.shape[0], n_pix, dtype=torch.bool, device=device)
        step = max(1, min(list_chunk, int(counts.max())))
        group_size = max(1, chunk_elements // (n_pix * step))
        active = torch.arange(tiles.shape[0], device=device)
        first = 0
        while active.shape[0] > 0:
            for g0 in range(0, active.shape[0], group_size):
                group = active[g0 : g0 + group_size]
                f, t, d = _composite_step(
                    tile_x[group], tile_y[group], tile_size, tr[group], done[group], splat_ids, starts[group] + first,
                    counts[group] - first, step, q_max, packed,
                )
                acc = acc.index_add(0, group, f)
                tr = tr.index_copy(0, group, t)
                done[group] = d
            first += step
            active = active[(counts[active] > first) & ~done[active].all(-1)]
        feats = feats.index_copy(0, tiles, acc)
        trans = trans.index_copy(0, tiles, tr)

    def untile(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(n_ty, n_tx, tile_size, tile_size, *x.shape[2:]).transpose(1, 2)
        return x.reshape(n_ty * tile_size, n_tx * tile_size, *x.shape[4:])[:height, :width]

    feats, alpha = untile(feats), 1.0 - untile(trans)
    return feats[..., :3], feats[..., 3], alpha


def _below_alpha_min(dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` below 1/255: ``F.threshold`` at it keeps exactly ``alpha >= 1/255``."""
    value = torch.tensor(ALPHA_MIN, dtype=dtype)
    return float(torch.nextafter(value, torch.zeros_like(value)))


def _composite_step(
    tile_x: torch.Tensor,
    tile_y: torch.Tensor,
    tile_size: int,
    trans: torch.Tensor,
    done: torch.Tensor,
    splat_ids: torch.Tensor,
    starts: torch.Tensor,
    remaining: torch.Tensor,
    step: int,
    q_max: float,
    packed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite the next ``step`` list entries of G tiles with top-left pixels ``tile_x, tile_y [G]``; the
    ``p = tile_size ** 2`` pixels of a tile (row-major) have transmittance ``trans [G, p]`` and stop flags
    ``done [G, p]``; each tile's entries start at ``starts [G]``, with ``remaining [G]`` left. Returns (added
    ``sum w (rgb, z)`` ``[G, p, 4]``, new transmittance, new ``done``)."""
    g, device = tile_x.shape[0], tile_x.device
    pos = torch.arange(step, device=device)
    idx = splat_ids[(starts[:, None] + pos).clamp_max(splat_ids.shape[0] - 1)]  # [G, L]
    u, v, ca, cb, cc, op, *values = packed.index_select(1, idx.flatten()).view(len(_ATTRS), g, step)
    op = op * (pos < remaining[:, None])  # entries past the end of a tile's list get zero opacity
    # -q/2 with q = d^T Sigma^-1 d, d = (dx, dy): the pixel grid is separable, so the x- and y-only terms are
    # formed per column / row ([G, t, L]) and only their sum is per pixel ([G, t, t, L] = [G, p, L])
    offsets = torch.arange(tile_size, device=device, dtype=u.dtype)
    dx = tile_x[:, None, None] + offsets[None, :, None] - u[:, None, :]  # [G, t, L], pixel column i
    dy = tile_y[:, None, None] + offsets[None, :, None] - v[:, None, :]  # [G, t, L], pixel row j
    qx, qxy, qy = -0.5 * ca[:, None] * dx * dx, -cb[:, None] * dx, -0.5 * cc[:, None] * dy * dy
    half_q = (qx[:, None] + qxy[:, None] * dy[:, :, None] + qy[:, :, None]).view(g, tile_size**2, step)
    alpha = (op[:, None] * torch.exp(half_q.clamp_min(-0.5 * q_max))).clamp_max(ALPHA_MAX)  # [G, p, L]
    alpha = F.threshold(alpha, _below_alpha_min(alpha.dtype), 0.0)  # alpha < 1/255 -> 0
    keep = 1.0 - alpha
    through = torch.cumprod(keep, -1)  # transmittance left after each splat, relative to ``trans``
    with torch.no_grad():
        # a pixel stops before the first splat that would bring its transmittance to <= 1e-4 and takes no
        # later splat, in this step or any other; stopped pixels are gated off (their bound is inf)
        bound = TRANSMITTANCE_MIN / trans.masked_fill(done, 0.0)  # [G, p]
        alive = through > bound[..., None]  # trans * through > 1e-4; a prefix along L
        done = ~alive[..., -1]
    alpha = torch.where(alive, alpha, 0.0)
    # w = alpha prod_{j<i}(1 - alpha_j) trans; dropped splats come last, so through / keep is that product
    acc = torch.bmm(alpha * (through / keep), torch.stack(values, -1)) * trans[..., None]  # [G, p, 4]
    return acc, trans * torch.prod(1.0 - alpha, -1), done


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
