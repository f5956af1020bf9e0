"""Test-time choice of the turning direction, for a 3D model trained on clips that all turn one way.

Why: a small feed-forward camera head cannot tell a clip that turns left from its mirror image that turns
right until it has learned a great deal; under a symmetric loss it settles on "no rotation" and the scenes
become flat sheets (docs/nano.md § Round 5). The nano AnySplat is therefore trained on clips mirrored to turn
counter-clockwise seen from above (``canonical_direction``). A generated video may turn either way, so the
model runs on the video and on its mirror image and keeps the pass whose splats explain *held-out* views
better (the context views' splats rendered at the held-out views' predicted cameras; no ground truth
involved); a scene decoded from the mirror image is mirrored back with :meth:`vist3a.scene.Scene.mirrored`.
The nano VGGT is trained the same way; a pointmap decoder's splats are its context views' points as a pointmap
scene's fly-through draws them (:func:`gaussians_of_views`), so both decoder kinds are scored by one function.
:func:`mirror_choice` is the rule that ``vist3a generate`` and ``vist3a eval nvs|geometry`` share.

``"motion"`` asks the frames instead of the model (:func:`image_motion_turn`): while a camera circles a point it
looks at, content beyond that point drifts across the image with the turn and nearer content against it, and in
the nano world (a ground plane under a sky) the upper rows are the far ones. On held-out clips this picks the
turning direction far more often than the render score does (docs/nano.md § Round 10), and it costs one decoder
pass, not two.
"""

from __future__ import annotations

from typing import Any

import torch

from vist3a.cameras import K_from_edge_convention, to_homogeneous
from vist3a.splats import Gaussians, render
from vist3a.splats.points import fuse_point_maps, point_cloud_splats
from vist3a.splats.render import resolve_backend
from vist3a.threads import map_single_threaded

#: "as-is": one pass; "mirror-select": the better of the video and its mirror image; "motion": the video or its
#: mirror image, whichever turns counter-clockwise by :func:`image_motion_turn` (module docstring).
DIRECTIONS = ("as-is", "mirror-select", "motion")
#: Rows of the (downsampled) frames are cut into this many horizontal bands for :func:`image_motion_turn`.
_MOTION_BANDS = 8
#: :func:`image_motion_turn` measures motion on frames resized to this height (its shifts are tuned to 64 px).
_MOTION_HEIGHT = 64


def heldout_views(num_views: int, num_targets: int) -> tuple[list[int], list[int]]:
    """``(context, targets)``: ``num_targets`` evenly spread interior views are held out (13, 4 -> 2, 5, 7, 10)."""
    if not 0 < num_targets < num_views - 1:
        raise ValueError(f"`num_targets` must be in [1, {num_views - 2}] for {num_views} views, got {num_targets}")
    targets = sorted({round((i + 1) * (num_views - 1) / (num_targets + 1)) for i in range(num_targets)})
    return [v for v in range(num_views) if v not in targets], targets


def gaussians_of_views(model: Any, out: Any, views: torch.Tensor, frames: torch.Tensor | None = None,
                       keep_fraction: float = 0.5) -> list[Gaussians]:
    """The splats that only ``views`` (indices into V) of a forward pass ``out`` make, one per batch element (for
    renders of the other views).

    AnySplat (``out.gaussian_raw``): the views' per-pixel points and raw parameters fused as the model does.
    Pointmap decoders (VGGT, MV-DUSt3R: no Gaussian head; their scene pointmap,
    :func:`~vist3a.recon.outputs.scene_pointmap`): the views' ``keep_fraction`` most
    confident points coloured from ``frames [B, V, 3, H, W]`` in [0, 1], as round splats sized by the predicted
    cameras: what a pointmap scene's ``points.ply`` and fly-through hold
    (:func:`~vist3a.splats.points.point_cloud_splats`).
    """
    if getattr(out, "gaussian_raw", None) is not None:
        from vist3a.recon.gaussian_ops import official_to_gaussians

        official, counts = model.gaussians_from_pixels(
            out.points[:, views].float(), out.gaussian_raw[:, views].float(), out.gaussian_conf[:, views].float(),
            out.conf_valid_mask[:, views])
        return [official_to_gaussians({k: v[b, :n] for k, v in official.items()}) for b, n in enumerate(counts)]
    from vist3a.recon.outputs import scene_pointmap

    points, conf = scene_pointmap(out)
    if points is None or getattr(out, "cameras", None) is None:
        raise ValueError(f"{type(out).__name__} has neither AnySplat Gaussians nor pointmaps with cameras to render "
                         "held-out views from")
    if frames is None:
        raise ValueError("`frames` [B, V, 3, H, W] are needed to colour the points of a pointmap decoder")
    K = K_from_edge_convention(out.cameras.K.float())  # pixel intrinsics of the pointmaps: the splats' size
    index = views.tolist()
    splats = []
    for b in range(points.shape[0]):
        xyz, rgb = fuse_point_maps(points[b, index].float(), None if conf is None else conf[b, index].float(),
                                   frames[b, index].float().to(points.device), keep_fraction)
        splats.append(point_cloud_splats(xyz, rgb, out.cameras.w2c[b, index], K[b, index]))
    return splats


def intrinsics_for(K_edge: torch.Tensor, model_hw: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
    """Predicted intrinsics (edge convention, for the model's ``model_hw`` input) -> vist3a pixel intrinsics for
    images of ``image_hw`` (integer pixel centres: ``c' = (c + 0.5) s - 0.5``)."""
    K = K_from_edge_convention(K_edge.float())
    sy, sx = image_hw[0] / model_hw[0], image_hw[1] / model_hw[1]
    K[..., 0, 0] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


@torch.no_grad()
def heldout_consistency(model: Any, out: Any, frames: torch.Tensor, num_targets: int = 4,
                        backend: str = "auto") -> torch.Tensor:
    """Self-consistency PSNR ``[B]`` (dB, mean over the held-out views) of a pass ``out`` on ``frames``
    ``[B, V, 3, H, W]`` (``V >= 3``) of AnySplat or a pointmap decoder: the splats of the context views
    (:func:`gaussians_of_views`) rendered at the held-out views' predicted cameras, against those views (at most
    ``num_targets`` and a third of the views held out)."""
    batch, views, _, height, width = frames.shape
    context, targets = heldout_views(views, max(1, min(num_targets, views // 3)))  # 13 -> 4, 9 -> 3, 5 -> 1
    gaussians = gaussians_of_views(model, out, torch.tensor(context, device=out.cameras.w2c.device), frames)
    w2c = to_homogeneous(out.cameras.w2c.float())
    model_hw = tuple(out.depth.shape[-2:]) if out.depth is not None else tuple(out.world_points.shape[2:4])
    K = intrinsics_for(out.cameras.K, model_hw, (height, width))
    scores = []
    for b in range(batch):
        g = gaussians[b].to(torch.float32)
        pred = _render_colors(g, w2c[b, targets], K[b, targets], width, height, backend)
        target = frames[b, targets].float().to(pred.device).permute(0, 2, 3, 1)
        mse = (pred.clamp(0, 1) - target).square().mean(dim=(1, 2, 3)).clamp_min(1e-10)
        scores.append((-10.0 * torch.log10(mse)).mean())
    return torch.stack(scores).cpu()


def _render_colors(gaussians: Gaussians, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int,
                   backend: str) -> torch.Tensor:
    """Colours ``[C, H, W, 3]`` of ``gaussians`` at C cameras, as one :func:`~vist3a.splats.render` call gives
    them. The CPU reference rasteriser renders the views side by side, one per worker thread, each single-threaded
    (:func:`vist3a.threads.map_single_threaded`, as the fly-through does): each view is rendered as it would be
    alone (to rounding where the rasteriser's ops depend on the thread count; on the 2-core CPU VM they are
    bit-identical). The 4 held-out views of the quickstart scene take 0.44 s in one call there (its ops barely use
    a second thread) and 0.16 s side by side."""
    if gaussians.device.type != "cpu" or resolve_backend(backend, gaussians.device) != "torch":
        return render(gaussians, w2c, K, width, height, backend=backend).colors

    def one(view: int) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread
            return render(gaussians, w2c[view : view + 1], K[view : view + 1], width, height, backend="torch").colors

    return torch.cat(map_single_threaded(one, range(w2c.shape[0])))


def mirror_choice(model: Any, out: Any, out_mirror: Any, frames: torch.Tensor, num_targets: int = 4,
                  backend: str = "auto") -> dict[str, Any]:
    """Which of two passes to keep: ``out`` on ``frames [B, V, 3, H, W]`` (``V >= 3``) or ``out_mirror`` on their
    mirror image ``frames.flip(-1)``. Each is scored by :func:`heldout_consistency` (no ground truth involved);
    the mirror pass is kept where it scores higher. Returns ``{"take": [B] list of bool (True: keep the mirror
    pass, which the caller maps back with :meth:`vist3a.scene.Scene.mirrored`), "score": [B], "score_m": [B]}``
    (held-out PSNRs in dB of the pass on the frames and of the mirror pass)."""
    score = heldout_consistency(model, out, frames, num_targets, backend=backend)
    score_m = heldout_consistency(model, out_mirror, frames.flip(-1), num_targets, backend=backend)
    return {"take": (score_m > score).tolist(), "score": score, "score_m": score_m}


def _band_shifts(frames: torch.Tensor, max_dx: int, max_dy: int) -> torch.Tensor:
    """Horizontal shift (pixels, sub-pixel) of each band of rows from each frame to the next, ``[B, V - 1, bands]``
    for ``frames [B, V, C, H, W]``: per band, the shift ``dx`` (with the best vertical ``dy``) for which frame
    ``t + 1`` matches frame ``t`` moved by ``(dx, dy)`` in the least mean squared difference, refined by a parabola
    through the costs around the best integer shift. Positive: content moves right. Written here: the registration
    functions at hand give one shift per image; the rule needs one per band of rows, with vertical slack, on 64 px
    frames where a brute-force search takes about a millisecond."""
    batch, pairs = frames.shape[0], frames.shape[1] - 1
    before, after = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
    height, width = before.shape[-2:]
    band = height // _MOTION_BANDS
    pad = max(max_dx, max_dy)
    padded = torch.nn.functional.pad(before, (pad, pad, pad, pad), mode="replicate")
    inner = slice(max_dx, width - max_dx)  # columns every shift sees inside the frame
    costs = torch.full((2 * max_dx + 1, before.shape[0], _MOTION_BANDS), float("inf"))
    for dy in range(-max_dy, max_dy + 1):
        for ix, dx in enumerate(range(-max_dx, max_dx + 1)):
            moved = padded[..., pad - dy : pad - dy + height, pad - dx : pad - dx + width]
            err = (after[..., : band * _MOTION_BANDS, inner] - moved[..., : band * _MOTION_BANDS, inner]).square()
            err = err.mean(dim=(1, 3)).view(-1, _MOTION_BANDS, band).mean(-1)
            costs[ix] = torch.minimum(costs[ix], err)
    costs = costs.permute(1, 2, 0)  # [pairs, bands, shifts]
    best = costs.argmin(-1).clamp(1, 2 * max_dx - 1)
    at = lambda index: costs.gather(-1, index[..., None])[..., 0]
    left, mid, right = at(best - 1), at(best), at(best + 1)
    curvature = left - 2 * mid + right
    offset = torch.where(curvature > 0, 0.5 * (left - right) / curvature.clamp_min(1e-12), torch.zeros_like(mid))
    return (best - max_dx + offset.clamp(-1, 1)).view(batch, pairs, _MOTION_BANDS)


@torch.no_grad()
def image_motion_turn(frames: torch.Tensor) -> torch.Tensor:
    """How the camera of ``frames [B, V, 3, H, W]`` (``V >= 2``, values in [0, 1]) turns, from the image motion
    alone, ``[B]``: positive = counter-clockwise seen from above (the direction the nano decoders are trained on),
    negative = clockwise; the magnitude is a drift in pixels at 64 px height, not an angle.

    Why it works: a camera that circles the point it looks at moves content beyond that point across the image with
    its turn and nearer content the other way (the flow of a pure turn plus the parallax of the sideways move,
    which cancel at the fixation distance); a pan moves everything with the turn. With a ground plane in view the
    upper rows are the far ones, so the drift of the upper half minus a third of the lower half's has the sign of
    the turn for orbits, arcs, aerial circling shots and pans alike. The weights were chosen on 240 held-out nano
    clips and checked on others (docs/nano.md § Round 10). It is a test of the nano world's layout, not a general
    camera estimator: a scene without a visible ground can fool it.
    """
    if frames.dim() != 5 or frames.shape[1] < 2:
        raise ValueError(f"`frames` must be [B, V>=2, C, H, W], got {tuple(frames.shape)}")
    frames = frames.float()
    batch, views, channels, height, width = frames.shape
    if height != _MOTION_HEIGHT:
        size = (_MOTION_HEIGHT, max(16, round(width * _MOTION_HEIGHT / height)))
        frames = torch.nn.functional.interpolate(frames.flatten(0, 1), size=size, mode="area").view(
            batch, views, channels, *size)
    max_dx = max(2, round(0.1 * frames.shape[-1]))
    # the mirror image turns the other way: averaging a pass on it (negated) makes that exact, ties included
    drift = (_band_shifts(frames, max_dx, 3) - _band_shifts(frames.flip(-1), max_dx, 3)).sum(1) / 2  # [B, bands]
    half = _MOTION_BANDS // 2
    return (drift[:, :half].mean(1) - drift[:, half:].mean(1) / 3.0).cpu()
