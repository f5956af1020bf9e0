"""Stage ``recon``: train the nano AnySplat (``vist3a.recon.AnySplat`` at a tiny config) as the "pretrained 3D
foundation model" of the nano pipeline.

Inputs are the 64 px clips upsampled to the model's ``img_size`` (112 px): exactly what the model sees at
generation time, where its frames come from the 64 px video decoder. Targets come from the ray-caster:

- **Frame of reference** (:func:`normalize_clip_cameras`): cameras relative to the first view (which becomes
  the identity) and lengths divided by the clip's scale, the mean distance of the first view's camera centre
  to all valid ground-truth points (VGGT's normalisation). Predicted depth, cameras and Gaussians live there.
- **Camera loss**: L1 between every refinement step's pose encoding and the ground truth's, steps weighted
  ``gamma^(n-1-i)`` (normalised), as VGGT.
- **Depth loss**: VGGT's confidence-weighted ``conf * |d - d*| - alpha * log(conf)`` on pixels with geometry,
  plus ``background_weight * |d - b|`` on background pixels, pulled to a far shell ``b`` =
  ``background_depth_factor`` x the clip's largest depth, so that the sky gets splats behind the scene.
- **Render loss**: the predicted Gaussians rendered (``vist3a.splats.render``, gsplat on CUDA) at the
  predicted (or ground-truth) cameras of ``render_views`` random views vs the 64 px frames:
  ``L1 + ssim_weight * (1 - SSIM)``.

Evaluation (held-out compositions): the model sees 9 of 13 views; the other 4 are rendered at their
ground-truth cameras in the normalised frame (novel-view PSNR / SSIM), plus context-view PSNR, depth AbsRel and
camera rotation / translation errors.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from vist3a.cameras import invert_rigid, to_homogeneous, w2c_K_to_pose_encoding
from vist3a.data.cache import ClipCache
from vist3a.data.clip import ClipBatch, crop_resize_intrinsics, valid_depth
from vist3a.nano.configs import nano_anysplat_config
from vist3a.nano.training import (
    StageConfig,
    autocast,
    begin_stage,
    evaluate_with_fp16,
    make_optimizer,
    module_num_params,
    psnr,
    ssim,
    train_loop,
)

logger = logging.getLogger(__name__)

STAGE = "recon"
RENDER_CAMERAS = ("pred", "gt")


@dataclass
class ReconTrainConfig(StageConfig):
    """Config of the recon stage (shared fields: :class:`~vist3a.nano.training.StageConfig`).

    Attributes:
        model: ``AnySplat`` kwargs (default :func:`~vist3a.nano.configs.nano_anysplat_config`); its
            ``aggregator_config.img_size`` is the input size the clips are upsampled to.
        depth_weight, camera_weight, render_weight: loss weights.
        conf_alpha: weight of ``-log(conf)`` in the confidence-weighted depth loss.
        camera_gamma: decay of the weights of earlier camera refinement steps.
        background_weight, background_depth_factor: the far-shell depth target of background pixels.
        render_views: views per clip rendered for the render loss (random subset, 0 = no render loss).
        render_cameras: "pred" (the model's own cameras, as AnySplat trains) or "gt" (normalised ground truth).
        ssim_weight: weight of ``1 - SSIM`` in the render loss.
        render_backend: ``vist3a.splats.render`` backend ("auto": gsplat on CUDA when installed).
        eval_target_views: held-out views per evaluation clip (rendered from the other views' splats).
        fp16_psnr_tolerance: dB of novel-view PSNR that fp16 storage may cost under ``save_dtype="auto"``.
    """

    steps: int = 3000
    batch_size: int = 4
    lr: float = 2e-4
    warmup_steps: int = 200
    model: dict[str, Any] = field(default_factory=nano_anysplat_config)
    depth_weight: float = 1.0
    camera_weight: float = 1.0
    render_weight: float = 1.0
    conf_alpha: float = 0.2
    camera_gamma: float = 0.6
    background_weight: float = 0.1
    background_depth_factor: float = 2.0
    render_views: int = 2
    render_cameras: str = "pred"
    ssim_weight: float = 0.2
    render_backend: str = "auto"
    eval_target_views: int = 4
    fp16_psnr_tolerance: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.render_cameras not in RENDER_CAMERAS:
            raise ValueError(f"`render_cameras` must be one of {RENDER_CAMERAS}, got {self.render_cameras!r}")

    @property
    def image_size(self) -> int:
        return int(self.model["aggregator_config"]["img_size"])


# ----------------------------------------------------------------------------- targets
class NormalizedCameras(NamedTuple):
    """Ground truth in the first view's frame, lengths divided by ``scale``.

    ``w2c [B, V, 4, 4]`` (view 0 = identity), ``depth [B, V, H, W]`` (background stays ``+inf``/0),
    ``valid [B, V, H, W]`` (pixels with geometry), ``scale [B]`` (the divisor, world units).
    """

    w2c: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    scale: torch.Tensor


def unproject(depth: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """World points ``[..., H, W, 3]`` of z-depth ``[..., H, W]`` (pixel centres at integer coordinates)."""
    height, width = depth.shape[-2:]
    v, u = torch.meshgrid(
        torch.arange(height, dtype=depth.dtype, device=depth.device),
        torch.arange(width, dtype=depth.dtype, device=depth.device),
        indexing="ij",
    )
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy = K[..., 0, 2, None, None], K[..., 1, 2, None, None]
    cam = torch.stack(((u - cx) / fx * depth, (v - cy) / fy * depth, depth), -1)  # [..., H, W, 3]
    c2w = invert_rigid(w2c[..., :3, :])
    rot, trans = c2w[..., :3, :3], c2w[..., :3, 3]
    return torch.einsum("...ij,...hwj->...hwi", rot, cam) + trans[..., None, None, :]


def normalize_clip_cameras(w2c: torch.Tensor, K: torch.Tensor, depth: torch.Tensor, ref_view: int = 0
                           ) -> NormalizedCameras:
    """Express a batch of clips in view ``ref_view``'s camera frame with unit mean point distance.

    Args:
        w2c: ``[B, V, 4, 4]`` world-to-camera; K: ``[B, V, 3, 3]`` pixel intrinsics of ``depth``'s size;
        depth: ``[B, V, H, W]`` z-depth, background ``+inf`` or 0.
    """
    w2c = to_homogeneous(w2c[..., :3, :]).float()
    ref_c2w = to_homogeneous(invert_rigid(w2c[:, ref_view, :3, :]))  # [B, 4, 4]
    rel = w2c @ ref_c2w[:, None]
    valid = valid_depth(depth)
    safe_depth = torch.where(valid, depth.float(), torch.zeros_like(depth, dtype=torch.float32))
    points = unproject(safe_depth, rel, K.float())
    dist = points.norm(dim=-1) * valid
    count = valid.flatten(1).sum(1)
    mean_dist = dist.flatten(1).sum(1) / count.clamp_min(1)
    scale = torch.where(count > 0, mean_dist, torch.ones_like(mean_dist)).clamp_min(1e-6)
    rel = rel.clone()
    rel[..., :3, 3] = rel[..., :3, 3] / scale[:, None, None]
    depth_n = torch.where(valid, depth.float() / scale[:, None, None, None], depth.float())
    return NormalizedCameras(rel, depth_n, valid, scale)


def to_model_input(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Frames ``[B, V, 3, h, w]`` -> ``[B, V, 3, size, size]`` (bilinear; antialiased when shrinking)."""
    b, v, c, h, w = frames.shape
    if (h, w) == (size, size):
        return frames
    out = F.interpolate(frames.reshape(b * v, c, h, w), size=(size, size), mode="bilinear", align_corners=False,
                        antialias=size < min(h, w))
    return out.clamp(0.0, 1.0).reshape(b, v, c, size, size)


def resize_depth(depth: torch.Tensor, size: int) -> torch.Tensor:
    """z-depth ``[B, V, h, w]`` -> ``[B, V, size, size]`` by nearest neighbour (never mixes edges or background)."""
    b, v, h, w = depth.shape
    if (h, w) == (size, size):
        return depth
    out = F.interpolate(depth.reshape(b * v, 1, h, w), size=(size, size), mode="nearest-exact")
    return out.reshape(b, v, size, size)


def scale_intrinsics(K: torch.Tensor, from_size: int, to_size: int) -> torch.Tensor:
    """Pixel ``K`` of a square image resized from ``from_size`` to ``to_size`` (pixel-centre aware)."""
    s = to_size / from_size
    return crop_resize_intrinsics(K, (0, 0), (s, s))


def render_intrinsics(focal_K: torch.Tensor, model_size: int, render_size: int) -> torch.Tensor:
    """Render ``K`` at ``render_size`` from a predicted ``K`` at ``model_size``: focal lengths scaled, principal
    point at the image centre in vist3a's pixel-centre convention (``(size - 1) / 2``)."""
    s = render_size / model_size
    K = torch.zeros_like(focal_K)
    K[..., 0, 0] = focal_K[..., 0, 0] * s
    K[..., 1, 1] = focal_K[..., 1, 1] * s
    K[..., 0, 2] = (render_size - 1) / 2.0
    K[..., 1, 2] = (render_size - 1) / 2.0
    K[..., 2, 2] = 1.0
    return K


def init_splat_scales(model: Any, fov_deg: float = 50.0) -> float:
    """Initialise the Gaussian head so a fresh splat covers about one input pixel at unit depth.

    AnySplat activates scales as ``0.001 * softplus(raw)`` (``vist3a.recon.gaussian_ops``), tuned for its
    released scenes; in the normalised nano frame (mean point distance 1) a pixel of the ``img_size`` input
    spans ``2 tan(fov / 2) / img_size`` at unit depth (~0.008 for 112 px and 50 degrees), so a zero raw
    output would start with splats ~10x smaller than a pixel and renders with almost no coverage. The bias of
    the three scale channels of the head's last convolution is set to ``softplus⁻¹(footprint / 0.001)``.
    Returns that bias.
    """
    from vist3a.recon.gaussian_ops import SCALE_FACTOR

    size = int(model.config.aggregator_config["img_size"])
    footprint = 2.0 * math.tan(math.radians(fov_deg) / 2.0) / size
    target = footprint / SCALE_FACTOR
    raw = target + math.log(-math.expm1(-target))  # inverse softplus
    last = model.gaussian_head.scratch.output_conv2[-1]
    with torch.no_grad():
        last.bias[1:4] = raw  # raw channel order: density, 3 scales, 4 rotation, SH, (confidence)
    return raw


# ----------------------------------------------------------------------------- losses
def camera_loss(pose_enc_list: list[torch.Tensor], target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Weighted L1 of every refinement step's ``[B, V, 9]`` pose encoding against ``target``."""
    n = len(pose_enc_list)
    weights = [gamma ** (n - 1 - i) for i in range(n)]
    total = sum(w * (p.float() - target).abs().mean() for w, p in zip(weights, pose_enc_list, strict=True))
    return total / sum(weights)


def depth_loss(pred: torch.Tensor, conf: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, alpha: float,
               background_weight: float, background_factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(geometry term, background term)`` for predicted depth/confidence ``[B, V, H, W]``."""
    pred, conf = pred.float(), conf.float()
    err = (pred - torch.where(valid, target, torch.zeros_like(target))).abs()
    n_valid = valid.sum().clamp_min(1)
    geom = ((conf * err - alpha * torch.log(conf)) * valid).sum() / n_valid
    background = ~valid
    if background_weight <= 0 or not bool(background.any()):
        return geom, pred.new_zeros(())
    far = torch.where(valid, target, torch.zeros_like(target)).flatten(1).amax(1).clamp_min(1.0) * background_factor
    bg = ((pred - far[:, None, None, None]).abs() * background).sum() / background.sum()
    return geom, background_weight * bg


def render_loss(gaussians: list[Any], w2c: torch.Tensor, K: torch.Tensor, frames: torch.Tensor, ssim_weight: float,
                backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, mean PSNR)`` of rendering each scene's Gaussians at its ``[V', 4, 4]`` cameras vs ``frames
    [B, V', 3, S, S]``; background black."""
    from vist3a.splats import render

    size = frames.shape[-1]
    losses, psnrs = [], []
    for b, g in enumerate(gaussians):
        out = render(g.to(torch.float32), w2c[b].float(), K[b].float(), size, size, backend=backend)
        pred = out.colors.permute(0, 3, 1, 2)  # [V', 3, S, S]
        target = frames[b].float()
        loss = (pred - target).abs().mean()
        if ssim_weight > 0:
            loss = loss + ssim_weight * (1.0 - ssim(pred, target).mean())
        losses.append(loss)
        psnrs.append(psnr(pred.detach(), target).mean())
    return torch.stack(losses).mean(), torch.stack(psnrs).mean()


def recon_step_loss(model: Any, batch: ClipBatch, cfg: ReconTrainConfig, generator: torch.Generator,
                    device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch of clips (see the module docstring) and its terms."""
    size = cfg.image_size
    clip_size = batch.frames.shape[-1]
    gt = normalize_clip_cameras(batch.w2c, batch.K, batch.depth)
    K_model = scale_intrinsics(batch.K.float(), clip_size, size)
    target_pose = w2c_K_to_pose_encoding(gt.w2c[..., :3, :], K_model, (size, size))
    images = to_model_input(batch.frames, size)
    with autocast(device):
        out = model(images)
    depth_t = resize_depth(gt.depth, size)
    valid_t = resize_depth(gt.valid.float(), size) > 0.5
    geom, background = depth_loss(out.depth, out.depth_conf, depth_t, valid_t, cfg.conf_alpha,
                                  cfg.background_weight, cfg.background_depth_factor)
    cam = camera_loss(out.cameras.pose_enc_list, target_pose, cfg.camera_gamma)
    loss = cfg.depth_weight * (geom + background) + cfg.camera_weight * cam
    terms = {"depth": float(geom.detach()), "background": float(background.detach()), "camera": float(cam.detach())}
    if cfg.render_views > 0 and cfg.render_weight > 0:
        views = batch.frames.shape[1]
        pick = torch.randperm(views, generator=generator)[: min(cfg.render_views, views)].to(batch.frames.device)
        if cfg.render_cameras == "pred":
            w2c = to_homogeneous(out.cameras.w2c.detach().float())[:, pick]
            K = render_intrinsics(out.cameras.K.detach().float(), size, clip_size)[:, pick]
        else:
            w2c, K = gt.w2c[:, pick], batch.K.float()[:, pick]
        rgb, rgb_psnr = render_loss(out.gaussians, w2c, K, batch.frames[:, pick], cfg.ssim_weight, cfg.render_backend)
        loss = loss + cfg.render_weight * rgb
        terms.update({"render": float(rgb.detach()), "render_psnr": float(rgb_psnr)})
    return loss, terms


# ----------------------------------------------------------------------------- evaluation
def split_views(num_views: int, num_targets: int) -> tuple[list[int], list[int]]:
    """``(context, targets)``: ``num_targets`` evenly spread interior views are held out (13, 4 -> 2, 5, 7, 10)."""
    if not 0 < num_targets < num_views - 1:
        raise ValueError(f"`num_targets` must be in [1, {num_views - 2}] for {num_views} views, got {num_targets}")
    targets = sorted({round((i + 1) * (num_views - 1) / (num_targets + 1)) for i in range(num_targets)})
    return [v for v in range(num_views) if v not in targets], targets


def rotation_angle_deg(r_pred: torch.Tensor, r_gt: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (degrees) between rotations ``[..., 3, 3]``."""
    cos = ((r_pred.transpose(-1, -2) @ r_gt).diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


@torch.no_grad()
def evaluate_recon(model: Any, cache: ClipCache, cfg: ReconTrainConfig, device: torch.device,
                   batch_size: int = 1) -> dict[str, float]:
    """Held-out metrics (see the module docstring), averaged over the clips of ``cache``."""
    model.eval()
    size = cfg.image_size
    sums: dict[str, float] = {}
    count = 0
    for start in range(0, len(cache), batch_size):
        batch = cache.batch(range(start, min(start + batch_size, len(cache)))).to(device)
        views, clip_size = batch.frames.shape[1], batch.frames.shape[-1]
        context, targets = split_views(views, cfg.eval_target_views)
        ctx = torch.tensor(context, device=device)
        tgt = torch.tensor(targets, device=device)
        # normalise with the first *context* view as reference; target cameras follow into that frame
        order = torch.cat((ctx, tgt))
        gt = normalize_clip_cameras(batch.w2c[:, order], batch.K[:, order], batch.depth[:, order])
        n_ctx = len(context)
        with autocast(device):
            out = model(to_model_input(batch.frames[:, ctx], size))
        gaussians = [g.to(torch.float32) for g in out.gaussians]
        novel = _render_metrics(gaussians, gt.w2c[:, n_ctx:], batch.K[:, tgt].float(), batch.frames[:, tgt], cfg)
        ctx_w2c = to_homogeneous(out.cameras.w2c.float())
        ctx_K = render_intrinsics(out.cameras.K.float(), size, clip_size)
        own = _render_metrics(gaussians, ctx_w2c, ctx_K, batch.frames[:, ctx], cfg)
        depth_t = resize_depth(gt.depth[:, :n_ctx], size)
        valid_t = resize_depth(gt.valid[:, :n_ctx].float(), size) > 0.5
        abs_rel = ((out.depth.float() - depth_t).abs() / depth_t.clamp_min(1e-6))[valid_t].mean()
        rot = rotation_angle_deg(out.cameras.w2c[..., :3, :3].float(), gt.w2c[:, :n_ctx, :3, :3]).mean()
        trans = (out.cameras.w2c[..., :3, 3].float() - gt.w2c[:, :n_ctx, :3, 3]).norm(dim=-1).mean()
        values = {
            "novel_psnr": novel[0], "novel_ssim": novel[1], "context_psnr": own[0], "context_ssim": own[1],
            "depth_abs_rel": float(abs_rel), "rotation_error_deg": float(rot), "translation_error": float(trans),
            "num_gaussians": float(sum(out.num_gaussians) / len(out.num_gaussians)),
        }
        n = batch.frames.shape[0]
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value * n
        count += n
    metrics = {key: value / count for key, value in sums.items()}
    metrics["num_clips"] = count
    metrics["context_views"], metrics["target_views"] = len(context), len(targets)
    return metrics


def _render_metrics(gaussians: list[Any], w2c: torch.Tensor, K: torch.Tensor, frames: torch.Tensor,
                    cfg: ReconTrainConfig) -> tuple[float, float]:
    from vist3a.splats import render

    size = frames.shape[-1]
    psnrs, ssims = [], []
    for b, g in enumerate(gaussians):
        pred = render(g, w2c[b], K[b], size, size, backend=cfg.render_backend).colors.permute(0, 3, 1, 2)
        target = frames[b].float()
        psnrs.append(psnr(pred, target).mean())
        ssims.append(ssim(pred, target).mean())
    return float(torch.stack(psnrs).mean()), float(torch.stack(ssims).mean())


# ----------------------------------------------------------------------------- the stage
def train_recon(
    cfg: ReconTrainConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    caches: tuple[ClipCache, ClipCache] | None = None,
) -> Path:
    """Train the nano AnySplat; returns the run folder (``model/`` holds it in the shipped format).

    ``caches``: ``(train, held_out)`` clip caches to use instead of rendering the world (tests).
    """
    from vist3a.recon import AnySplat

    run = begin_stage(cfg, out_dir, STAGE, device)
    device = run.device
    train, held = run.clips(caches)
    if train.depth is None or train.w2c is None:
        raise ValueError("the recon stage needs clips with cameras and depth (synthetic clips have both)")
    run.data_ready()

    model = AnySplat(**cfg.model)
    init_splat_scales(model)
    model = run.start_from(model, "recon").to(device).train()
    logger.info("nano AnySplat: %.2f M parameters", module_num_params(model) / 1e6)
    optimizer = make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    view_gen = torch.Generator().manual_seed(cfg.seed + 1)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        batch = train.sample(cfg.batch_size, batch_gen).to(device)
        return recon_step_loss(model, batch, cfg, view_gen, device)

    result = train_loop(step_fn, optimizer, cfg, run.clock, run.log, desc="nano recon")
    run.log.plot("nano AnySplat")

    metrics, metrics_fp16 = evaluate_with_fp16(model, lambda: evaluate_recon(model, held, cfg, device))
    dtype = run.save(model, metrics["novel_psnr"], metrics_fp16["novel_psnr"], cfg.fp16_psnr_tolerance, True)
    evaluation = {f"heldout_{k}": v for k, v in metrics.items()}
    evaluation["heldout_novel_psnr_fp16"] = metrics_fp16["novel_psnr"]
    run.finish(evaluation, result.outcome())
    logger.info("nano AnySplat: held-out novel-view PSNR %.2f dB / SSIM %.3f, saved as %s",
                metrics["novel_psnr"], metrics["novel_ssim"], dtype)
    return run.run_dir

__all__ = [
    "ReconTrainConfig",
    "evaluate_recon",
    "normalize_clip_cameras",
    "recon_step_loss",
    "split_views",
    "train_recon",
]
