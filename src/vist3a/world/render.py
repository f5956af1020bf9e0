"""A vectorised ray-caster for :class:`~vist3a.world.scene.Scene`: RGB frames and exact z-depth.

All rays of all frames (of all scenes, for :func:`render_clips`) are cast at once. The ground plane and
every object's bounding sphere are intersected analytically; only rays that enter a bounding sphere in
front of the ground are sphere-traced through the objects' signed distance functions, and rays leave the
working set as soon as they hit or exit, so the cost follows the objects' screen area. Shading: Lambert
diffuse + Blinn-Phong specular from one directional light, an ambient term, and soft shadows traced towards
the light through the same SDFs. Work happens in linear RGB (sRGB colours decoded with gamma 2.2, re-encoded
at the end).

Depth accuracy: a ray stops when the scene SDF is below ``hit_eps`` (world units). SDFs never overestimate
the distance, so the march never passes a surface: the returned depth is at most the true one and at most
``hit_eps / cos(theta)`` short of it (``theta`` = angle between the ray and the surface normal), i.e.
``hit_eps`` for a surface seen head-on. Rays that exhaust ``max_steps`` without either hitting or leaving
(grazing a silhouette) count as hits if within ``10 * hit_eps`` of a surface, else as misses.
Ground depth is exact (analytic). Background pixels have depth ``+inf``. The ray-caster draws no random
numbers and uses no atomics: it is deterministic on CPU and CUDA.

Speed: one scene at a time is best on CPU. On a GPU a single clip is bound by kernel launches, so
:func:`render_clips` renders many scenes in one pass (their objects are grouped into slots of one shape
each, see ``_SceneBatch``, so the launch count grows with the number of slots, not of scenes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from vist3a.world.scene import Scene
from vist3a.world.sdf import shape_extent, shape_sdf
from vist3a.world.vocab import MATERIALS, SHAPES

_GAMMA = 2.2
_NOISE_LATTICE = 64  # value-noise lattice size (wraps around)
_PATTERNS = ("checker", "noise")
_BACKGROUNDS = ("sky", "wall")


@dataclass(frozen=True)
class MarchSettings:
    """Knobs of the ray-caster (see the module docstring for what ``hit_eps`` guarantees).

    ``far``: the ground plane ends at this distance from the camera, fading into the background from
    ``fog_start`` on; ``shadow_softness``: larger = harder shadow edges; ``shadow_steps``: march budget of
    shadow rays.
    """

    max_steps: int = 96
    hit_eps: float = 1e-3
    far: float = 30.0
    fog_start: float = 8.0
    shadow_steps: int = 48
    shadow_softness: float = 12.0


class RenderOutput(NamedTuple):
    """``frames [..., T, 3, H, W]`` sRGB in [0, 1]; ``depth [..., T, H, W]`` camera z, ``+inf`` = background."""

    frames: Tensor
    depth: Tensor


def _rgb(values, device) -> Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device) ** _GAMMA


_PARAMS = 7  # per object slot: centre x, y, z, cos(yaw), sin(yaw), size s, bounding radius
_FAR_AWAY = 1.0e6  # where empty slots put their (zero-radius) object: never the nearest, never intersected


class _SceneBatch:
    """B scenes packed for the ray-caster.

    Objects sit in *slots* of one shape each: with one scene, one slot per object; with several, for each
    shape as many slots as the scene with most objects of that shape needs (scenes with fewer leave them
    empty), so every slot evaluates one SDF formula for all rays. Per-ray object parameters are gathered
    with the ray's scene index ``sid`` as rows of a ``[num_slots * 7, n]`` tensor; with a single scene they
    stay Python floats and the inner loops gather nothing (the fast path on CPU).
    """

    def __init__(self, scenes: Sequence[Scene], device: torch.device) -> None:
        self.single = len(scenes) == 1
        if self.single:
            self.slot_shapes = [o.shape for o in scenes[0].objects]
            assignment = [list(range(len(scenes[0].objects)))]  # scene -> slot of each object
        else:
            self.slot_shapes = []
            first_slot = {}
            for shape in SHAPES:
                first_slot[shape] = len(self.slot_shapes)
                self.slot_shapes += [shape] * max(sum(o.shape == shape for o in s.objects) for s in scenes)
            assignment = []
            for scene in scenes:
                used = dict.fromkeys(SHAPES, 0)
                slots = []
                for o in scene.objects:
                    slots.append(first_slot[o.shape] + used[o.shape])
                    used[o.shape] += 1
                assignment.append(slots)
        B, S = len(scenes), len(self.slot_shapes)
        self.num_slots = S
        table = torch.zeros(B, S, _PARAMS)
        table[..., :3] = _FAR_AWAY
        table[..., 3] = 1.0
        table[..., 5] = 1.0
        albedo = torch.zeros(B, S, 3)
        spec = torch.zeros(B, S, 2)
        filled = torch.zeros(B, S, dtype=torch.bool)
        for b, scene in enumerate(scenes):
            for o, m in zip(scene.objects, assignment[b], strict=True):
                table[b, m] = torch.tensor(
                    (*o.position, math.cos(o.yaw), math.sin(o.yaw), o.scale, shape_extent(o.shape, o.scale).bound)
                )
                albedo[b, m] = torch.tensor(o.rgb) ** _GAMMA
                spec[b, m] = torch.tensor(MATERIALS[o.material])
                filled[b, m] = True
        self.slot_full = filled.all(0).tolist()
        put = lambda t: t.to(device)
        self.albedo, self.spec = put(albedo), put(spec)
        self._table = put(table.permute(1, 2, 0).reshape(S * _PARAMS, B).contiguous())  # [S * 7, B]
        self._floats = [tuple(float(v) for v in row) for row in table[0]] if self.single else None
        # ground, background, light
        self.pattern = put(torch.tensor([_PATTERNS.index(s.ground.pattern) for s in scenes]))
        self.patterns_present = sorted({s.ground.pattern for s in scenes})
        self.ground_a = _rgb([s.ground.colour_a for s in scenes], device)
        self.ground_b = _rgb([s.ground.colour_b for s in scenes], device)
        self.ground_scale = put(torch.tensor([float(s.ground.scale) for s in scenes]))
        self.lattice = None
        if "noise" in self.patterns_present:
            lattices = [
                torch.rand(_NOISE_LATTICE, _NOISE_LATTICE, generator=torch.Generator().manual_seed(int(s.ground.seed)))
                for s in scenes
            ]
            self.lattice = put(torch.stack(lattices))
        self.bg_kind = put(torch.tensor([_BACKGROUNDS.index(s.background.kind) for s in scenes]))
        self.horizon = _rgb([s.background.horizon for s in scenes], device)
        self.zenith = _rgb([s.background.zenith for s in scenes], device)
        light = torch.tensor([s.light.direction for s in scenes], dtype=torch.float32)
        self.light = put(light / light.norm(dim=-1, keepdim=True))
        self.intensity = put(torch.tensor([float(s.light.intensity) for s in scenes]))
        self.ambient = put(torch.tensor([float(s.light.ambient) for s in scenes]))

    def ray_params(self, sid: Tensor) -> Tensor | None:
        """Object parameters of each ray's scene, ``[num_slots * 7, n]`` (None for a single scene)."""
        return None if self.single else self._table[:, sid]

    def _slot(self, m: int, params: Tensor | None):
        return self._floats[m] if params is None else params[m * _PARAMS : (m + 1) * _PARAMS].unbind(0)

    def slot_sdf(self, m: int, x: Tensor, y: Tensor, z: Tensor, params: Tensor | None) -> Tensor:
        """Signed distance to the object in slot ``m`` (about ``1e6`` where the ray's scene leaves it empty)."""
        cx, cy, cz, c, s, size, _ = self._slot(m, params)
        lx, lz = x - cx, z - cz
        # yaw turns local -> world about +y; its inverse brings world points into the local frame
        return shape_sdf(self.slot_shapes[m], c * lx - s * lz, y - cy, s * lx + c * lz, size)

    def scene_sdf(self, x: Tensor, y: Tensor, z: Tensor, params: Tensor | None) -> Tensor:
        out = self.slot_sdf(0, x, y, z, params)
        for m in range(1, self.num_slots):
            out = torch.minimum(out, self.slot_sdf(m, x, y, z, params))
        return out

    def bounding_interval(self, o, d, params: Tensor | None, inflate: float = 1.0) -> tuple[Tensor, Tensor]:
        """Per ray, the first entry into and the last exit from any bounding sphere (``inf``/``-inf`` if none)."""
        t_in = torch.full_like(d[0], math.inf)
        t_out = torch.full_like(d[0], -math.inf)
        for m in range(self.num_slots):
            cx, cy, cz, _, _, _, bound = self._slot(m, params)
            ox, oy, oz = o[0] - cx, o[1] - cy, o[2] - cz
            b = ox * d[0] + oy * d[1] + oz * d[2]
            disc = b * b - (ox * ox + oy * oy + oz * oz - (bound * inflate) ** 2)
            root = torch.sqrt(disc.clamp_min(0))
            exit_ = -b + root
            hit = (disc > 0) & (exit_ > 0)
            if not self.slot_full[m]:
                hit = hit & (bound > 0)  # empty slot (float rounding at 1e6 must not create a hit)
            t_in = torch.where(hit, torch.minimum(t_in, (-b - root).clamp_min(0)), t_in)
            t_out = torch.where(hit, torch.maximum(t_out, exit_), t_out)
        return t_in, t_out


def _march(batch: _SceneBatch, o, d, sid: Tensor, t_start: Tensor, t_end: Tensor, settings: MarchSettings) -> Tensor:
    """Sphere-trace rays ``o + t d`` (unit d) from ``t_start`` to ``t_end``; hit distance or ``inf``.

    The working set is compacted every step: rays that hit or leave drop out. Its state lives in one
    ``[8, n]`` tensor (origin, direction, t, t_end) so that compaction is a single indexing op.
    """
    t_hit = torch.full_like(t_start, math.inf)
    idx = torch.nonzero(t_start < t_end).squeeze(1)
    state = torch.stack([v[idx] for v in (*o, *d, t_start, t_end)])
    sid = sid[idx]
    eps = settings.hit_eps
    for step in range(settings.max_steps):
        if idx.numel() == 0:
            break
        ox, oy, oz, dx, dy, dz, t, t_stop = state
        dist = batch.scene_sdf(ox + t * dx, oy + t * dy, oz + t * dz, batch.ray_params(sid))
        hit = dist < (10.0 * eps if step == settings.max_steps - 1 else eps)
        t_hit[idx] = torch.where(hit, t, t_hit[idx])
        t = t + dist
        state[6] = t
        keep = torch.nonzero(~hit & (t < t_stop)).squeeze(1)
        idx, sid, state = idx[keep], sid[keep], state[:, keep]
    return t_hit


def _soft_shadow(batch: _SceneBatch, p, sid: Tensor, settings: MarchSettings) -> Tensor:
    """Visibility of the light in [0, 1] from points ``p`` (already offset off their surface)."""
    d = batch.light[sid].unbind(-1)
    t_in, t_out = batch.bounding_interval(p, d, batch.ray_params(sid), inflate=1.2)
    vis = torch.ones_like(p[0])
    idx = torch.nonzero(t_in < t_out).squeeze(1)
    state = torch.stack([v[idx] for v in (*p, *d, t_in.clamp_min(10.0 * settings.hit_eps), t_out)])
    sid = sid[idx]
    res = vis[idx]
    for _ in range(settings.shadow_steps):
        if idx.numel() == 0:
            break
        px, py, pz, lx, ly, lz, t, t_stop = state
        h = batch.scene_sdf(px + t * lx, py + t * ly, pz + t * lz, batch.ray_params(sid))
        blocked = h < settings.hit_eps
        res = torch.where(blocked, torch.zeros_like(res), torch.minimum(res, settings.shadow_softness * h / t))
        vis[idx] = res.clamp(0.0, 1.0)  # rays still marching are overwritten later
        t = t + h.clamp_min(0.01)
        state[6] = t
        keep = torch.nonzero(~blocked & (t < t_stop)).squeeze(1)
        idx, sid, state, res = idx[keep], sid[keep], state[:, keep], res[keep]
    return vis


def _normals(batch: _SceneBatch, slot: Tensor, p, sid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Unit normals of the object in slot ``slot[i]`` at ``p[i]`` (tetrahedral finite difference of its SDF)."""
    h = 1e-3
    taps = ((1.0, -1.0, -1.0), (-1.0, -1.0, 1.0), (-1.0, 1.0, -1.0), (1.0, 1.0, 1.0))
    nx, ny, nz = (torch.zeros_like(p[0]) for _ in range(3))
    for m in range(batch.num_slots):
        sel = torch.nonzero(slot == m).squeeze(1)
        if sel.numel() == 0:
            continue
        x, y, z = (v[sel] for v in p)
        params = batch.ray_params(sid[sel])
        gx = gy = gz = 0.0
        for ex, ey, ez in taps:
            f = batch.slot_sdf(m, x + h * ex, y + h * ey, z + h * ez, params)
            gx, gy, gz = gx + ex * f, gy + ey * f, gz + ez * f
        nx[sel], ny[sel], nz[sel] = gx, gy, gz
    norm = torch.sqrt(nx * nx + ny * ny + nz * nz).clamp_min(1e-12)
    return nx / norm, ny / norm, nz / norm


def _value_noise(x: Tensor, z: Tensor, lattice: Tensor, sid: Tensor) -> Tensor:
    """Smooth value noise in [0, 1] on each ray's scene lattice ``[B, G, G]`` (wrapping)."""
    g = lattice.shape[-1]
    x0, z0 = torch.floor(x), torch.floor(z)
    fx, fz = x - x0, z - z0
    fx, fz = fx * fx * (3 - 2 * fx), fz * fz * (3 - 2 * fz)
    i0, j0 = x0.long() % g, z0.long() % g
    i1, j1 = (i0 + 1) % g, (j0 + 1) % g
    top = lattice[sid, i0, j0] * (1 - fx) + lattice[sid, i1, j0] * fx
    bottom = lattice[sid, i0, j1] * (1 - fx) + lattice[sid, i1, j1] * fx
    return top * (1 - fz) + bottom * fz


def _ground_albedo(batch: _SceneBatch, x: Tensor, z: Tensor, sid: Tensor) -> Tensor:
    """Linear-RGB albedo ``[n, 3]`` of the ground at ``(x, 0, z)``."""
    u, v = x / batch.ground_scale[sid], z / batch.ground_scale[sid]
    w = torch.zeros_like(x)
    if "checker" in batch.patterns_present:
        w = ((torch.floor(u) + torch.floor(v)) % 2.0).to(x.dtype)
    if "noise" in batch.patterns_present:
        noise = 0.65 * _value_noise(u, v, batch.lattice, sid)
        noise = noise + 0.35 * _value_noise(2.3 * u + 17.0, 2.3 * v + 5.0, batch.lattice, sid)
        w = torch.where(batch.pattern[sid] == _PATTERNS.index("noise"), noise, w)
    a, b = batch.ground_a[sid], batch.ground_b[sid]
    return a + (b - a) * w[:, None]


def _background(batch: _SceneBatch, dy: Tensor, sid: Tensor) -> Tensor:
    """Linear-RGB background ``[n, 3]`` for rays with world-up component ``dy``."""
    sky = dy.clamp(0.0, 1.0).sqrt()
    wall = (2.0 * dy).clamp(0.0, 1.0)
    w = torch.where(batch.bg_kind[sid] == _BACKGROUNDS.index("sky"), sky, wall)
    horizon = batch.horizon[sid]
    return horizon + (batch.zenith[sid] - horizon) * w[:, None]


def _check_inputs(scenes, w2c: Tensor, K: Tensor, height: int, width: int, ssaa: int) -> None:
    B = len(scenes)
    if B == 0:
        raise ValueError("`scenes` is empty")
    if w2c.ndim != 4 or w2c.shape[0] != B or w2c.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"`w2c` must be [B, T, 4, 4] (or [B, T, 3, 4]) with B = {B}, got {tuple(w2c.shape)}")
    if K.shape != (B, w2c.shape[1], 3, 3):
        raise ValueError(f"`K` must be [B, T, 3, 3] = {(B, w2c.shape[1], 3, 3)}, got {tuple(K.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"`height` and `width` must be >= 1, got {height} x {width}")
    if ssaa < 1 or ssaa % 2 == 0:
        raise ValueError(f"`ssaa` must be an odd integer >= 1 (the centre sample gives the depth), got {ssaa}")
    for i, scene in enumerate(scenes):
        if not scene.objects:
            raise ValueError(f"scene {i} of `scenes` has no objects")


def render_clips(
    scenes: Sequence[Scene],
    w2c: Tensor,
    K: Tensor,
    height: int,
    width: int,
    device: str | torch.device | None = None,
    *,
    ssaa: int = 1,
    shadows: bool = True,
    settings: MarchSettings | None = None,
) -> RenderOutput:
    """Render ``B`` scenes, each from its own ``T`` cameras, in one pass (the fast way on a GPU).

    Args:
        scenes: ``B`` scene descriptions.
        w2c: ``[B, T, 4, 4]`` (or ``[B, T, 3, 4]``) OpenCV world-to-camera extrinsics.
        K: ``[B, T, 3, 3]`` pixel intrinsics, pixel centres at integer coordinates.
        height, width, device, ssaa, shadows, settings: as in :func:`render_clip`.

    Returns:
        :class:`RenderOutput` ``(frames [B, T, 3, H, W], depth [B, T, H, W])``; each clip equals what
        :func:`render_clip` gives for it alone (up to float rounding).
    """
    _check_inputs(scenes, w2c, K, height, width, ssaa)
    settings = settings or MarchSettings()
    device = torch.device(device) if device is not None else w2c.device
    B, T = w2c.shape[:2]
    F = B * T  # all frames of all scenes
    H, W = height * ssaa, width * ssaa
    w2c = w2c.to(device=device, dtype=torch.float32).reshape(F, *w2c.shape[2:])
    K = K.to(device=device, dtype=torch.float32).reshape(F, 3, 3)
    rot, trans = w2c[:, :3, :3], w2c[:, :3, 3]
    origin = -(rot.transpose(1, 2) @ trans[..., None])[..., 0]  # [F, 3] camera centres in world

    # camera-frame directions through sample centres (pixel centres at integer coordinates)
    u = (torch.arange(W, device=device, dtype=torch.float32) + 0.5) / ssaa - 0.5
    v = (torch.arange(H, device=device, dtype=torch.float32) + 0.5) / ssaa - 0.5
    fx, fy, cx, cy = (K[:, 0, 0, None, None], K[:, 1, 1, None, None], K[:, 0, 2, None, None], K[:, 1, 2, None, None])
    xc = ((u[None, None, :] - cx) / fx).expand(F, H, W)
    yc = ((v[None, :, None] - cy) / fy).expand(F, H, W)
    inv_norm = torch.rsqrt(xc * xc + yc * yc + 1.0)  # z component of the unit direction
    # world direction = R^T d_cam: rows of R are the camera axes in world coordinates
    d = tuple(
        ((xc * rot[:, 0, i, None, None] + yc * rot[:, 1, i, None, None] + rot[:, 2, i, None, None]) * inv_norm)
        .reshape(-1)
        for i in range(3)
    )
    o = tuple(origin[:, i, None].expand(F, H * W).reshape(-1) for i in range(3))
    sid = torch.arange(B, device=device).repeat_interleave(T * H * W)  # scene of each ray

    # ground plane y = 0 (analytic)
    t_ground = torch.where((d[1] < -1e-9) & (o[1] > 0), -o[1] / d[1], torch.full_like(d[1], math.inf))
    t_ground = torch.where(t_ground > settings.far, torch.full_like(t_ground, math.inf), t_ground)

    # objects: sphere tracing inside the bounding spheres, in front of the ground
    batch = _SceneBatch(scenes, device)
    t_in, t_out = batch.bounding_interval(o, d, batch.ray_params(sid))
    t_obj = _march(batch, o, d, sid, t_in, torch.minimum(t_out, t_ground), settings)
    hit_obj = torch.isfinite(t_obj)
    hit_ground = ~hit_obj & torch.isfinite(t_ground)
    t_hit = torch.where(hit_obj, t_obj, t_ground)

    colour = _background(batch, d[1], sid)  # [N, 3] linear
    idx = torch.nonzero(hit_obj | hit_ground).squeeze(1)
    if idx.numel() > 0:
        colour[idx] = _shade(batch, idx, t_hit[idx], hit_obj[idx], o, d, sid[idx], colour[idx], shadows, settings)

    rgb = colour.clamp(0.0, 1.0) ** (1.0 / _GAMMA)
    frames = rgb.reshape(F, H, W, 3).permute(0, 3, 1, 2)
    depth = torch.where(t_hit.isfinite(), t_hit * inv_norm.reshape(-1), torch.full_like(t_hit, math.inf))
    depth = depth.reshape(F, H, W)
    if ssaa > 1:
        frames = torch.nn.functional.avg_pool2d(frames, ssaa)
        depth = depth[:, ssaa // 2 :: ssaa, ssaa // 2 :: ssaa]
    return RenderOutput(
        frames.reshape(B, T, 3, height, width).contiguous(), depth.reshape(B, T, height, width).contiguous()
    )


def _shade(batch: _SceneBatch, idx: Tensor, t_sel: Tensor, is_obj: Tensor, o, d, sid: Tensor, background: Tensor,
           shadows: bool, settings: MarchSettings) -> Tensor:
    """Linear RGB ``[n, 3]`` of the hit rays ``idx`` (objects and ground)."""
    n_hits = idx.numel()
    device = t_sel.device
    p = tuple(o[i][idx] + t_sel * d[i][idx] for i in range(3))
    obj_sel = torch.nonzero(is_obj).squeeze(1)
    ground_sel = torch.nonzero(~is_obj).squeeze(1)
    # which object was hit: the nearest surface at the hit point
    slot = torch.full((n_hits,), -1, dtype=torch.long, device=device)
    if obj_sel.numel() > 0:
        p_obj = tuple(c[obj_sel] for c in p)
        params = batch.ray_params(sid[obj_sel])
        dists = torch.stack([batch.slot_sdf(m, *p_obj, params) for m in range(batch.num_slots)])
        slot[obj_sel] = dists.argmin(0)
    n = list(_normals(batch, slot, p, sid))
    for axis, value in enumerate((0.0, 1.0, 0.0)):  # the ground's normal is +y
        n[axis][ground_sel] = value
    albedo = torch.empty(n_hits, 3, device=device)
    albedo[obj_sel] = batch.albedo[sid[obj_sel], slot[obj_sel]]
    albedo[ground_sel] = _ground_albedo(batch, p[0][ground_sel], p[2][ground_sel], sid[ground_sel])
    spec = torch.zeros(n_hits, 2, device=device)
    spec[:, 1] = 1.0
    spec[obj_sel] = batch.spec[sid[obj_sel], slot[obj_sel]]

    light = batch.light[sid]  # [n, 3]
    n_dot_l = (n[0] * light[:, 0] + n[1] * light[:, 1] + n[2] * light[:, 2]).clamp_min(0.0)
    lit = torch.ones_like(n_dot_l)
    if shadows:
        bias = 4.0 * settings.hit_eps
        lit = torch.zeros_like(n_dot_l)
        facing = torch.nonzero(n_dot_l > 0).squeeze(1)
        start = tuple(p[i][facing] + bias * n[i][facing] for i in range(3))
        lit[facing] = _soft_shadow(batch, start, sid[facing], settings)
    # Blinn-Phong: half vector between the light and the direction to the camera (-d)
    hx, hy, hz = (light[:, i] - d[i][idx] for i in range(3))
    h_norm = torch.sqrt(hx * hx + hy * hy + hz * hz).clamp_min(1e-12)
    n_dot_h = ((n[0] * hx + n[1] * hy + n[2] * hz) / h_norm).clamp_min(0.0)
    specular = spec[:, 0] * n_dot_h ** spec[:, 1] * (n_dot_l > 0)
    ambient, intensity = batch.ambient[sid], batch.intensity[sid]
    shaded = albedo * (ambient + (1.0 - ambient) * intensity * n_dot_l * lit)[:, None]
    shaded = shaded + (intensity * specular * lit)[:, None]
    # the ground fades into the background towards `far`
    fog = ((t_sel - settings.fog_start) / (settings.far - settings.fog_start)).clamp(0.0, 1.0)
    fog = torch.where(is_obj, torch.zeros_like(fog), fog)[:, None]
    return shaded * (1 - fog) + background * fog


def render_clip(
    scene: Scene,
    w2c: Tensor,
    K: Tensor,
    height: int,
    width: int,
    device: str | torch.device | None = None,
    *,
    ssaa: int = 1,
    shadows: bool = True,
    settings: MarchSettings | None = None,
) -> RenderOutput:
    """Render ``scene`` from ``T`` cameras.

    Args:
        scene: the scene description.
        w2c: ``[T, 4, 4]`` (or ``[T, 3, 4]``) OpenCV world-to-camera extrinsics.
        K: ``[T, 3, 3]`` pixel intrinsics, pixel centres at integer coordinates.
        height, width: output size in pixels.
        device: where to render ("cpu", "cuda", ...); default: the device of ``w2c``.
        ssaa: supersampling factor per axis (odd: 1, 3, ...); colours average ``ssaa²`` samples per pixel,
            depth is that of the sample at the pixel centre, so it stays the exact z of that pixel's ray.
        shadows: trace soft shadows (about 1.3x the cost).
        settings: :class:`MarchSettings` (march budget and tolerance, ground distance, shadow softness).

    Returns:
        :class:`RenderOutput` ``(frames [T, 3, H, W] in [0, 1], depth [T, H, W])`` on ``device``, float32.

    Example:
        >>> scene = scene_from_composition(Composition.of(("red", "cube"), "left of", ("blue", "sphere")), 0)
        >>> w2c, K = sample_camera_path("orbit", 5, 0, height=32, width=32, target=scene.centre,
        ...                             scene_radius=scene.radius)
        >>> frames, depth = render_clip(scene, w2c, K, 32, 32)
    """
    if w2c.ndim != 3:
        raise ValueError(f"`w2c` must be [T, 4, 4] or [T, 3, 4], got {tuple(w2c.shape)}")
    if K.ndim != 3:
        raise ValueError(f"`K` must be [T, 3, 3] with T = {w2c.shape[0]}, got {tuple(K.shape)}")
    out = render_clips([scene], w2c[None], K[None], height, width, device, ssaa=ssaa, shadows=shadows,
                       settings=settings)
    return RenderOutput(out.frames[0], out.depth[0])
