"""Stage ``vggt``: train the nano VGGT (``vist3a.recon.VGGT`` at a tiny config) as the "pretrained 3D foundation
model" of the nano text-to-pointmap pipeline (issue 21).

Inputs and frame of reference are the recon stage's (:mod:`vist3a.nano.train_recon`): the 64 px clips upsampled to
the model's ``img_size`` (112 px); ground truth in the first view's camera frame with lengths divided by the clip's
scale (:func:`~vist3a.nano.train_recon.normalize_clip_cameras`). Targets at the model's resolution
(:func:`pointmap_targets`): the ray-caster's z-depth, the world points it unprojects to, the pose encoding of the
normalised cameras. Background pixels (sky: no geometry) get a far shell ``background_depth_factor`` x the clip's
largest depth, points on it along their rays.

Losses (VGGT's, per head):

- **Camera**: the geodesic camera loss of the recon stage (:func:`~vist3a.nano.train_recon.geodesic_camera_loss`:
  every refinement step, rotation angle, consecutive-view rotation, translation / FoV L1, quaternion norm).
- **Depth** and **points**: VGGT's confidence-weighted regression ``conf * |x - x*| - alpha * log(conf)`` on
  pixels with geometry (``|.|`` the Euclidean norm of a point's error), plus ``gradient_weight`` x the
  confidence-weighted gradient term ``conf * |grad (x - x*)|`` over neighbouring pixel pairs with geometry
  (VGGT's "grad" loss). Background pixels: ``background_weight`` x L1 to the far shell, and
  ``background_conf_weight`` x ``log(conf)``, which pulls the confidence of the sky down to its floor (1), so
  that the confidence filter of ``points.ply`` drops it.

Evaluation (held-out compositions, all views in, :func:`pointmap_scene_metrics` per clip): depth AbsRel and δ<1.25
(normalised frame, no alignment), pointmap Acc / Comp / NC after a Sim(3) fit
(:func:`vist3a.evaluation.pointmap_metrics`), pairwise RRA@5 / RTA@5 / AUC@30
(:func:`vist3a.evaluation.relative_pose_metrics`), and the recon stage's camera numbers (rotation error median /
p90 from the first view, predicted vs true rotation span).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vist3a.cameras import to_homogeneous, w2c_K_to_pose_encoding
from vist3a.data.cache import ClipCache
from vist3a.data.clip import ClipBatch
from vist3a.nano.configs import nano_vggt_config
from vist3a.nano.train_recon import (
    NormalizedCameras,
    camera_errors,
    canonicalise_direction,
    check_camera_kinds,
    geodesic_camera_loss,
    geometry_clips,
    normalize_clip_cameras,
    resize_depth,
    scale_intrinsics,
    to_model_input,
    with_camera_patch_pool,
)
from vist3a.nano.training import (
    LoopResult,
    StageConfig,
    autocast,
    begin_stage,
    evaluate_with_fp16,
    make_optimizer,
    module_num_params,
    train_loop,
)
from vist3a.recon.gaussian_ops import unproject_depth

logger = logging.getLogger(__name__)

STAGE = "vggt"
#: Far shell of background pixels, in multiples of the clip's largest depth (the recon stage's default too).
BACKGROUND_DEPTH_FACTOR = 2.0


@dataclass
class VGGTTrainConfig(StageConfig):
    """Config of the vggt stage (shared fields: :class:`~vist3a.nano.training.StageConfig`).

    Attributes:
        model: ``VGGT`` kwargs (default :func:`~vist3a.nano.configs.nano_vggt_config`); its
            ``aggregator_config.img_size`` is the input size the clips are upsampled to.
        depth_weight, point_weight, camera_weight: loss weights of the three heads.
        conf_alpha: weight of ``-log(conf)`` in the confidence-weighted regression.
        gradient_weight: weight of the confidence-weighted gradient term (0 disables it).
        camera_gamma: decay of the weights of earlier camera refinement steps.
        relative_rotation_weight, quaternion_norm_weight: terms of the geodesic camera loss.
        background_weight, background_depth_factor: the far-shell depth / point target of background pixels.
        background_conf_weight: weight of ``log(conf)`` on background pixels (their confidence pulled down).
        camera_kinds: camera-path kinds of the training and held-out clips (None: every kind of the world).
        camera_patch_pool: sets the model's ``camera_config.patch_pool_dim`` (the camera head also reads a summary
            of its frame's patch tokens; 0 leaves the model config as it is).
        canonical_direction: mirror every clip (training and held-out) that turns clockwise into its mirror
            image, so that all paths turn one way (docs/nano.md § Round 5: the turning direction is what a small
            camera head could not learn).
        trunk_init: a nano AnySplat (recon run folder, component folder or "installed") whose trunk starts this
            VGGT: every tensor with the same name and shape (aggregator, camera head, depth head; the two models
            share the trunk config) and the point head's layers from the depth head's, except the output layer
            whose channel count differs (:func:`trunk_state_from_recon`). Exclusive with ``init``.
        eval_max_points: pixels per held-out clip in the Acc / Comp / NC nearest-neighbour search.
        fp16_acc_tolerance: pointmap accuracy (normalised scene units) that fp16 storage may cost under
            ``save_dtype="auto"``.
    """

    steps: int = 3000
    batch_size: int = 4
    lr: float = 2e-4
    warmup_steps: int = 200
    model: dict[str, Any] = field(default_factory=nano_vggt_config)
    depth_weight: float = 1.0
    point_weight: float = 1.0
    camera_weight: float = 1.0
    conf_alpha: float = 0.2
    gradient_weight: float = 1.0
    camera_gamma: float = 0.6
    relative_rotation_weight: float = 1.0
    quaternion_norm_weight: float = 1.0
    background_weight: float = 0.1
    background_depth_factor: float = BACKGROUND_DEPTH_FACTOR
    background_conf_weight: float = 0.05
    camera_kinds: tuple[str, ...] | None = None
    camera_patch_pool: int = 0
    canonical_direction: bool = False
    trunk_init: str | None = None
    eval_max_points: int = 4096
    fp16_acc_tolerance: float = 0.002

    def __post_init__(self) -> None:
        super().__post_init__()
        self.model = with_camera_patch_pool(self.model, self.camera_patch_pool)
        self.camera_kinds = check_camera_kinds(self.camera_kinds)
        for name in ("conf_alpha", "gradient_weight", "background_weight", "background_conf_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.eval_max_points < 16:
            raise ValueError(f"`eval_max_points` must be >= 16, got {self.eval_max_points}")
        if self.trunk_init is not None and self.init is not None:
            raise ValueError("`trunk_init` and `init` both set: `init` continues a VGGT run, `trunk_init` starts one "
                             "from a nano AnySplat's trunk; set one")

    @property
    def image_size(self) -> int:
        return int(self.model["aggregator_config"]["img_size"])


# ----------------------------------------------------------------------------- targets
class PointmapTargets(NamedTuple):
    """Ground truth at the model's input size ``S`` in the normalised frame (see the module docstring).

    ``pose [B, V, 9]`` (VGGT encoding), ``depth [B, V, S, S]`` and ``points [B, V, S, S, 3]`` (background on the
    far shell), ``valid [B, V, S, S]`` (pixels with geometry), ``w2c [B, V, 4, 4]`` (view 0 = identity),
    ``K [B, V, 3, 3]`` (pixel intrinsics at ``S``), ``cameras`` (the full-resolution normalisation).
    """

    pose: torch.Tensor
    depth: torch.Tensor
    points: torch.Tensor
    valid: torch.Tensor
    w2c: torch.Tensor
    K: torch.Tensor
    cameras: NormalizedCameras


def pointmap_targets(batch: ClipBatch, size: int, background_factor: float = BACKGROUND_DEPTH_FACTOR,
                     ref_view: int = 0) -> PointmapTargets:
    """:class:`PointmapTargets` of a batch of clips (frames ``[B, V, 3, h, w]``, depth, ``w2c``, ``K``), in the
    camera frame of view ``ref_view`` (0: the first view's, the nano frame of reference; MV-DUSt3R+ paths have
    other reference views)."""
    clip_size = batch.frames.shape[-1]
    gt = normalize_clip_cameras(batch.w2c, batch.K, batch.depth, ref_view)
    K = scale_intrinsics(batch.K.float(), clip_size, size)
    pose = w2c_K_to_pose_encoding(gt.w2c[..., :3, :], K, (size, size))
    depth = resize_depth(gt.depth, size)
    valid = resize_depth(gt.valid.float(), size) > 0.5
    known = torch.where(valid, depth, torch.zeros_like(depth))
    far = known.flatten(1).amax(1).clamp_min(1.0) * background_factor  # [B]
    depth = torch.where(valid, depth, far[:, None, None, None].expand_as(depth))
    points = unproject_depth(depth, gt.w2c, K)
    return PointmapTargets(pose, depth, points, valid, gt.w2c, K, gt)


# ----------------------------------------------------------------------------- losses
def confidence_regression(pred: torch.Tensor, conf: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                          alpha: float) -> torch.Tensor:
    """VGGT's ``conf * |x - x*| - alpha * log(conf)``, mean over ``valid`` pixels.

    ``pred``, ``target``: ``[B, V, H, W, C]`` (the error is the Euclidean norm over ``C``); ``conf``, ``valid``:
    ``[B, V, H, W]``.
    """
    err = (pred.float() - target).norm(dim=-1)
    conf = conf.float()
    return ((conf * err - alpha * torch.log(conf)) * valid).sum() / valid.sum().clamp_min(1)


def confidence_gradient(pred: torch.Tensor, conf: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
                        ) -> torch.Tensor:
    """Confidence-weighted gradient matching: ``conf * |r_p - r_q|`` (L1 over ``C``) of the residual
    ``r = pred - target`` over horizontally and vertically neighbouring pixels ``p, q`` that both have geometry,
    weighted by the mean confidence of the pair; mean over those pairs. Shapes as in
    :func:`confidence_regression`."""
    res = pred.float() - target
    conf = conf.float()
    total, count = res.new_zeros(()), res.new_zeros(())
    for dim in (2, 3):  # rows, columns of [B, V, H, W]
        n = res.shape[dim]
        a, b = res.narrow(dim, 1, n - 1), res.narrow(dim, 0, n - 1)
        pair = valid.narrow(dim, 1, n - 1) & valid.narrow(dim, 0, n - 1)
        weight = 0.5 * (conf.narrow(dim, 1, n - 1) + conf.narrow(dim, 0, n - 1))
        total = total + (weight * (a - b).abs().sum(-1) * pair).sum()
        count = count + pair.sum()
    return total / count.clamp_min(1)


def head_loss(pred: torch.Tensor, conf: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
              cfg: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """One dense head's loss (depth as ``[B, V, H, W, 1]``, points ``[B, V, H, W, 3]``): regression + gradient on
    pixels with geometry, far shell + low confidence on the background. Returns the loss and its terms.

    ``cfg``: a config with ``conf_alpha``, ``gradient_weight``, ``background_weight`` and
    ``background_conf_weight`` (:class:`VGGTTrainConfig`, the mvdust3r stage's)."""
    regression = confidence_regression(pred, conf, target, valid, cfg.conf_alpha)
    loss = regression
    terms = {"regression": float(regression.detach())}
    if cfg.gradient_weight > 0:
        gradient = confidence_gradient(pred, conf, target, valid)
        loss = loss + cfg.gradient_weight * gradient
        terms["gradient"] = float(gradient.detach())
    background = ~valid
    if bool(background.any()) and (cfg.background_weight > 0 or cfg.background_conf_weight > 0):
        n_bg = background.sum()
        far = ((pred.float() - target).abs().mean(-1) * background).sum() / n_bg
        low = (torch.log(conf.float()) * background).sum() / n_bg
        loss = loss + cfg.background_weight * far + cfg.background_conf_weight * low
        terms.update(background=float(far.detach()), background_log_conf=float(low.detach()))
    return loss, terms


def vggt_step_loss(model: Any, batch: ClipBatch, cfg: VGGTTrainConfig, device: torch.device
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch of clips (see the module docstring) and its terms."""
    size = cfg.image_size
    target = pointmap_targets(batch, size, cfg.background_depth_factor)
    with autocast(device):
        out = model(to_model_input(batch.frames, size))
    depth, depth_terms = head_loss(out.depth[..., None], out.depth_conf, target.depth[..., None], target.valid, cfg)
    points, point_terms = head_loss(out.world_points, out.world_points_conf, target.points, target.valid, cfg)
    cam, cam_terms = geodesic_camera_loss(out.cameras.pose_enc_list, target.pose, cfg.camera_gamma,
                                          cfg.relative_rotation_weight, cfg.quaternion_norm_weight)
    loss = cfg.depth_weight * depth + cfg.point_weight * points + cfg.camera_weight * cam
    terms = {"depth": float(depth.detach()), "points": float(points.detach()), "camera": float(cam.detach()),
             **{f"depth_{k}": v for k, v in depth_terms.items()}, **{f"points_{k}": v for k, v in point_terms.items()},
             **cam_terms}
    return loss, terms


# ----------------------------------------------------------------------------- evaluation
def pointmap_scene_metrics(out: Any, target: PointmapTargets, b: int, max_points: int, seed: int = 0,
                           scale_align: bool = False) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics of batch element ``b`` of a pointmap output ``out`` (``depth``, ``world_points``, ``cameras``: VGGT
    or MV-DUSt3R, the plain model's or a stitched decoder's) against ``target`` (:func:`pointmap_targets` at the
    output's size); see the module docstring.

    ``scale_align``: scale the predicted depth by its least-squares fit to the target depth over the pixels with
    geometry first (``s = <d, d*> / <d, d>``: defined for any sign, unlike a median of ratios), for models whose
    outputs have no scale of their own (MV-DUSt3R's pointmaps are normalised by their mean distance in training, as
    DUSt3R's); the pointmap metrics fit a Sim(3) and the pose metrics are scale-free either way.

    Returns ``(metrics, rotation errors [V-1] in degrees from the first view)``; the rotation errors are returned
    apart so that callers can take medians over every view of every clip.
    """
    from vist3a.evaluation.pointmap_metrics import pointmap_metrics
    from vist3a.evaluation.pose_metrics import relative_pose_metrics

    # on the CPU: small tensors, and the metric helpers build their thresholds and samplers there
    valid = target.valid[b].cpu()
    depth, depth_t = out.depth[b].float().cpu(), target.depth[b].cpu()
    if scale_align:
        depth = depth * (depth[valid] * depth_t[valid]).sum() / depth[valid].square().sum().clamp_min(1e-12)
    ratio = (depth / depth_t).clamp_min(1e-6)
    metrics = {
        "depth_abs_rel": float(((depth - depth_t).abs() / depth_t)[valid].mean()),
        "depth_delta1": float((torch.maximum(ratio, 1.0 / ratio) < 1.25)[valid].float().mean()),
    }
    points = pointmap_metrics(out.world_points[b].float().cpu(), target.points[b].cpu(), valid, align=True,
                              max_points=max_points, seed=seed)
    metrics.update({f"points_{k}": v for k, v in points.items()})
    w2c, w2c_t = to_homogeneous(out.cameras.w2c[b].float().cpu()), target.w2c[b].cpu()
    metrics.update(relative_pose_metrics(w2c, w2c_t))
    errors = camera_errors(w2c[None], w2c_t[None])
    metrics["rotation_span_pred_deg"] = float(errors["span_pred_deg"][0])
    metrics["rotation_span_gt_deg"] = float(errors["span_gt_deg"][0])
    return metrics, errors["rotation_deg"][0]


def summarise(rows: list[dict[str, float]], rotations: list[torch.Tensor]) -> dict[str, float]:
    """Per-clip metric rows -> their means, plus the rotation error median / p90 over all views of all clips."""
    out = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
    rot = torch.cat(rotations)
    out["rotation_error_median_deg"] = float(rot.median())
    out["rotation_error_p90_deg"] = float(rot.quantile(0.9))
    out["num_clips"] = len(rows)
    return out


@torch.no_grad()
def evaluate_pointmap_model(forward: Callable[[torch.Tensor], Any], cache: ClipCache, size: int,
                            device: torch.device, max_points: int,
                            background_factor: float = BACKGROUND_DEPTH_FACTOR, batch_size: int = 2,
                            scale_align: bool = False) -> dict[str, float]:
    """Held-out metrics of a pointmap model (all views in), averaged over the clips of ``cache``:
    ``forward(frames [B, V, 3, size, size] in [0, 1])`` gives its output (:func:`pointmap_scene_metrics`, with
    ``scale_align``)."""
    rows, rotations = [], []
    for start in range(0, len(cache), batch_size):
        batch = cache.batch(range(start, min(start + batch_size, len(cache)))).to(device)
        target = pointmap_targets(batch, size, background_factor)
        with autocast(device):
            out = forward(to_model_input(batch.frames, size))
        for b in range(batch.frames.shape[0]):
            row, rot = pointmap_scene_metrics(out, target, b, max_points, seed=start + b, scale_align=scale_align)
            rows.append(row)
            rotations.append(rot)
    return summarise(rows, rotations)


def evaluate_vggt(model: Any, cache: ClipCache, cfg: VGGTTrainConfig, device: torch.device, batch_size: int = 2
                  ) -> dict[str, float]:
    """Held-out metrics of the plain model (all views in), averaged over the clips of ``cache``."""
    model.eval()
    return evaluate_pointmap_model(model, cache, cfg.image_size, device, cfg.eval_max_points,
                                   cfg.background_depth_factor, batch_size)


# ----------------------------------------------------------------------------- the stage
def trunk_state_from_recon(vggt: torch.nn.Module, recon: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of a nano AnySplat that fit ``vggt``: same name and shape (aggregator, camera head, depth head:
    the two models share the trunk config), and for the point head the depth head's tensors of the same suffix and
    shape (both are DPT heads reading the same layers; only their output layers differ in channels).

    Why: training the trunk is most of the nano AnySplat's GPU time, and its camera head is what round 5 fixed;
    a VGGT that starts from it only has to learn the point head's last layers and the pointmap losses.
    """
    mine = vggt.state_dict()
    theirs = recon.state_dict()
    state = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    for key, value in mine.items():
        if key.startswith("point_head.") and key not in state:
            source = theirs.get("depth_head." + key[len("point_head."):])
            if source is not None and source.shape == value.shape:
                state[key] = source
    return state


def train_vggt(
    cfg: VGGTTrainConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    caches: tuple[ClipCache, ClipCache] | None = None,
) -> Path:
    """Train the nano VGGT; returns the run folder (``model/`` holds it in the shipped format).

    ``caches``: ``(train, held_out)`` clip caches to use instead of rendering the world (tests).
    """
    from vist3a.recon import VGGT

    run = begin_stage(cfg, out_dir, STAGE, device)
    device = run.device
    train, held = geometry_clips(run, cfg, caches, STAGE)

    model = VGGT(**cfg.model)
    model = run.start_from(model, "vggt", ("camera_head.patch_pool",))
    if cfg.trunk_init is not None:
        from vist3a.nano.weights import load_component_from

        recon = load_component_from(None if cfg.trunk_init == "installed" else cfg.trunk_init, "recon", "cpu",
                                    torch.float32)
        state = trunk_state_from_recon(model, recon)
        model.load_state_dict(state, strict=False)
        logger.info("nano VGGT: %d of %d tensors from the trunk of %s", len(state), len(model.state_dict()),
                    cfg.trunk_init)
    model = model.to(device).train()
    logger.info("nano VGGT: %.2f M parameters", module_num_params(model) / 1e6)
    result = train_pointmap_model(run, model, train, lambda batch, gen: vggt_step_loss(model, batch, cfg, device),
                                  "nano VGGT")
    evaluation = save_pointmap_model(run, model, lambda: evaluate_vggt(model, held, cfg, device),
                                     cfg.fp16_acc_tolerance)
    run.finish(evaluation, result.outcome())
    return run.run_dir


def train_pointmap_model(run: Any, model: torch.nn.Module, train: ClipCache,
                         step_loss: Callable[[ClipBatch, torch.Generator], tuple[torch.Tensor, dict[str, float]]],
                         title: str) -> LoopResult:
    """The training loop of a pointmap-model stage (vggt, mvdust3r): AdamW on ``model``, each step
    ``run.cfg.batch_size`` clips of ``train`` drawn by a generator seeded with ``run.cfg.seed`` (mirrored to turn one
    way under ``canonical_direction``) and ``step_loss(batch, generator) -> (loss, terms)``; ``loss.png`` titled
    ``title``."""
    cfg, device = run.cfg, run.device
    optimizer = make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay)
    batch_gen = torch.Generator().manual_seed(cfg.seed)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        batch = train.sample(cfg.batch_size, batch_gen).to(device)
        if cfg.canonical_direction:
            batch = canonicalise_direction(batch)
        return step_loss(batch, batch_gen)

    result = train_loop(step_fn, optimizer, cfg, run.clock, run.log, desc=title.lower())
    run.log.plot(title)
    return result


def save_pointmap_model(run: Any, model: torch.nn.Module, evaluate: Callable[[], dict[str, float]],
                        tolerance: float) -> dict[str, Any]:
    """The end of a pointmap-model stage (vggt, mvdust3r): ``evaluate()`` with the weights as trained and rounded
    through fp16, ``model/`` saved in the dtype that costs at most ``tolerance`` of pointmap accuracy
    (:meth:`~vist3a.nano.training.StageRun.save`); returns the ``eval.json`` numbers (``heldout_*``)."""
    metrics, metrics_fp16 = evaluate_with_fp16(model, evaluate)
    dtype = run.save(model, metrics["points_acc"], metrics_fp16["points_acc"], tolerance, False)
    evaluation = {f"heldout_{k}": v for k, v in metrics.items()}
    evaluation["heldout_points_acc_fp16"] = metrics_fp16["points_acc"]
    logger.info("nano %s: held-out depth AbsRel %.3f, points Acc %.4f / Comp %.4f, rotation error median %.1f°, "
                "saved as %s", run.stage, metrics["depth_abs_rel"], metrics["points_acc"], metrics["points_comp"],
                metrics["rotation_error_median_deg"], dtype)
    return evaluation


__all__ = [
    "PointmapTargets",
    "VGGTTrainConfig",
    "confidence_gradient",
    "confidence_regression",
    "evaluate_pointmap_model",
    "evaluate_vggt",
    "pointmap_scene_metrics",
    "pointmap_targets",
    "save_pointmap_model",
    "train_pointmap_model",
    "train_vggt",
    "vggt_step_loss",
]
