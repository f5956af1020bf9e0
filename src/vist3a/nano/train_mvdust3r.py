"""Stage ``mvdust3r``: train the nano MV-DUSt3R (``vist3a.recon.MVDust3r`` at :func:`~vist3a.nano.configs.
nano_mvdust3r_config`) as the second "pretrained 3D foundation model" of the nano text-to-pointmap pipeline
(issue 21), beside the nano VGGT (:mod:`vist3a.nano.train_vggt`).

Inputs and frame of reference are the vggt stage's: the 64 px clips upsampled to the model's ``img_size`` (112 px;
the model reads them in ``[-1, 1]``), ground truth from :func:`~vist3a.nano.train_vggt.pointmap_targets` (the
ray-caster's depth unprojected, background on a far shell). MV-DUSt3R predicts no cameras: every view's pointmap in
the camera frame of a path's reference view (view 0; MV-DUSt3R+ decodes a path per reference view, each with its
own targets).

Losses (DUSt3R's and MV-DUSt3R's):

- **Pointmaps** (every path, averaged): prediction and ground truth each divided by their mean distance from the
  reference camera over the pixels with geometry (DUSt3R's ``avg_dis`` normalisation: the model learns the shape,
  not the scale), then the confidence-weighted regression ``conf * |x - x*| - alpha * log(conf)`` of
  :func:`~vist3a.nano.train_vggt.head_loss` (DUSt3R's ``ConfLoss``; its gradient term is off by default) with the
  vggt stage's background terms (far shell, confidence pulled to its floor, so that the confidence filter of
  ``points.ply`` drops the sky).
- **Gaussians** (MV-DUSt3R+'s Gaussian head, when the model has one and ``render_weight > 0``): path 0's per-pixel
  Gaussians (:attr:`~vist3a.recon.mvdust3r.MVDust3rOutput.gaussians`: means = the normalised pointmap, colours =
  the input pixels, as the release renders them) rendered at ``render_views`` ground-truth cameras of the
  normalised frame against the clip's frames: L1 + ``ssim_weight`` x (1 - SSIM) (the recon stage's
  :func:`~vist3a.nano.train_recon.render_loss`; the release pairs MSE with LPIPS).

Evaluation (held-out compositions, all views in, :func:`~vist3a.nano.train_vggt.evaluate_pointmap_model`): the vggt
stage's numbers with the cameras recovered from the pointmaps (:mod:`vist3a.recon.pointmap_cameras`) and the depth
metrics after a per-clip least-squares scale fit (``scale_align``: the pointmaps carry no scale of their own).

No ``trunk_init``: the CroCo encoder with 2D RoPE shares no trunk with the nano AnySplat's DINO + alternating
attention, so nothing carries over; ``init`` continues an mvdust3r run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from vist3a.data.cache import ClipCache
from vist3a.data.clip import ClipBatch
from vist3a.nano.configs import nano_mvdust3r_config, recon_input_size
from vist3a.nano.train_recon import (
    check_camera_kinds,
    geometry_clips,
    render_loss,
    to_model_input,
)
from vist3a.nano.train_vggt import (
    BACKGROUND_DEPTH_FACTOR,
    evaluate_pointmap_model,
    head_loss,
    pointmap_targets,
    save_pointmap_model,
    train_pointmap_model,
)
from vist3a.nano.training import StageConfig, autocast, begin_stage, module_num_params

logger = logging.getLogger(__name__)

STAGE = "mvdust3r"


@dataclass
class MVDust3rTrainConfig(StageConfig):
    """Config of the mvdust3r stage (shared fields: :class:`~vist3a.nano.training.StageConfig`).

    Attributes:
        model: ``MVDust3r`` kwargs (default :func:`~vist3a.nano.configs.nano_mvdust3r_config`); its ``img_size`` is
            the input size the clips are upsampled to.
        conf_alpha: weight of ``-log(conf)`` in the confidence-weighted regression (DUSt3R: 0.2).
        gradient_weight: the vggt stage's confidence-weighted gradient term (0: DUSt3R's loss alone).
        background_weight, background_depth_factor, background_conf_weight: the far-shell target of background
            pixels and the pull of their confidence to its floor (as the vggt stage).
        render_weight: weight of the Gaussian render loss (used when the model has the Gaussian head).
        render_views: views per clip rendered for it (random subset; 0 = no render loss).
        ssim_weight: weight of ``1 - SSIM`` in the render loss.
        render_backend: ``vist3a.splats.render`` backend ("auto": gsplat on CUDA when installed).
        camera_kinds: camera-path kinds of the training and held-out clips (None: every kind of the world).
        canonical_direction: mirror every clip that turns clockwise into its mirror image (as the recon and vggt
            stages; the preset then decodes with ``--direction motion``).
        eval_max_points: pixels per held-out clip in the Acc / Comp / NC nearest-neighbour search.
        fp16_acc_tolerance: pointmap accuracy (normalised scene units) that fp16 storage may cost under
            ``save_dtype="auto"``.
    """

    steps: int = 3000
    batch_size: int = 4
    lr: float = 2e-4
    warmup_steps: int = 200
    model: dict[str, Any] = field(default_factory=nano_mvdust3r_config)
    conf_alpha: float = 0.2
    gradient_weight: float = 0.0
    background_weight: float = 0.1
    background_depth_factor: float = BACKGROUND_DEPTH_FACTOR
    background_conf_weight: float = 0.05
    render_weight: float = 1.0
    render_views: int = 2
    ssim_weight: float = 0.2
    render_backend: str = "auto"
    camera_kinds: tuple[str, ...] | None = None
    canonical_direction: bool = False
    eval_max_points: int = 4096
    fp16_acc_tolerance: float = 0.002

    def __post_init__(self) -> None:
        super().__post_init__()
        self.camera_kinds = check_camera_kinds(self.camera_kinds)
        for name in ("conf_alpha", "gradient_weight", "background_weight", "background_conf_weight", "render_weight",
                     "ssim_weight", "render_views"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.eval_max_points < 16:
            raise ValueError(f"`eval_max_points` must be >= 16, got {self.eval_max_points}")

    @property
    def image_size(self) -> int:
        return recon_input_size(self.model)


# ----------------------------------------------------------------------------- losses
def mean_distance(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean ``|x|`` of ``points [B, V, H, W, 3]`` over the ``valid [B, V, H, W]`` pixels (DUSt3R's
    ``avg_dis`` scale; at least 1e-8)."""
    dist = points.float().norm(dim=-1) * valid
    return (dist.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)).clamp_min(1e-8)


def mvdust3r_step_loss(model: Any, batch: ClipBatch, cfg: MVDust3rTrainConfig, generator: torch.Generator,
                       device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch of clips (see the module docstring) and its terms; ``generator`` draws the
    rendered views."""
    size = cfg.image_size
    with autocast(device):
        out = model(to_model_input(batch.frames, size) * 2 - 1)
    paths = out.reference_views.tolist()
    points = out.points.new_zeros((), dtype=torch.float32)
    terms: dict[str, float] = {}
    for p, ref in enumerate(paths):
        target = pointmap_targets(batch, size, cfg.background_depth_factor, ref)
        pred = out.points[:, p].float()
        pred_scale, gt_scale = mean_distance(pred, target.valid), mean_distance(target.points, target.valid)
        loss_p, terms_p = head_loss(pred / pred_scale[:, None, None, None, None], out.conf[:, p],
                                    target.points / gt_scale[:, None, None, None, None], target.valid, cfg)
        points = points + loss_p / len(paths)
        for key, value in terms_p.items():
            terms[f"points_{key}"] = terms.get(f"points_{key}", 0.0) + value / len(paths)
        if p == 0:
            first = (target, pred_scale, gt_scale)
    loss = points
    terms["points"] = float(points.detach())
    if out.opacity is not None and cfg.render_weight > 0 and cfg.render_views > 0:
        target, pred_scale, gt_scale = first
        scaled = replace(out, points=out.points / pred_scale[:, None, None, None, None, None])  # path 0's frame
        w2c = target.w2c.clone()
        w2c[..., :3, 3] = w2c[..., :3, 3] / gt_scale[:, None, None]  # the cameras of the normalised ground truth
        views = batch.frames.shape[1]
        pick = torch.randperm(views, generator=generator)[: min(cfg.render_views, views)].to(batch.frames.device)
        rgb, rgb_psnr = render_loss(scaled.gaussians, w2c[:, pick], batch.K.float()[:, pick], batch.frames[:, pick],
                                    cfg.ssim_weight, cfg.render_backend)
        loss = loss + cfg.render_weight * rgb
        terms.update(render=float(rgb.detach()), render_psnr=float(rgb_psnr))
    return loss, terms


# ----------------------------------------------------------------------------- evaluation
def evaluate_mvdust3r(model: Any, cache: ClipCache, cfg: MVDust3rTrainConfig, device: torch.device,
                      batch_size: int = 2) -> dict[str, float]:
    """Held-out metrics of the plain model (all views in, path 0), averaged over the clips of ``cache``."""
    model.eval()
    return evaluate_pointmap_model(lambda frames: model(frames * 2 - 1), cache, cfg.image_size, device,
                                   cfg.eval_max_points, cfg.background_depth_factor, batch_size, scale_align=True)


# ----------------------------------------------------------------------------- the stage
def train_mvdust3r(
    cfg: MVDust3rTrainConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    caches: tuple[ClipCache, ClipCache] | None = None,
) -> Path:
    """Train the nano MV-DUSt3R; returns the run folder (``model/`` holds it in the shipped format).

    ``caches``: ``(train, held_out)`` clip caches to use instead of rendering the world (tests).
    """
    from vist3a.recon import MVDust3r

    run = begin_stage(cfg, out_dir, STAGE, device)
    device = run.device
    train, held = geometry_clips(run, cfg, caches, STAGE)
    model = run.start_from(MVDust3r(**cfg.model), "mvdust3r").to(device).train()
    logger.info("nano MV-DUSt3R: %.2f M parameters", module_num_params(model) / 1e6)
    result = train_pointmap_model(run, model, train,
                                  lambda batch, gen: mvdust3r_step_loss(model, batch, cfg, gen, device),
                                  "nano MV-DUSt3R")
    evaluation = save_pointmap_model(run, model, lambda: evaluate_mvdust3r(model, held, cfg, device),
                                     cfg.fp16_acc_tolerance)
    run.finish(evaluation, result.outcome())
    return run.run_dir


__all__ = [
    "MVDust3rTrainConfig",
    "evaluate_mvdust3r",
    "mean_distance",
    "mvdust3r_step_loss",
    "train_mvdust3r",
]
