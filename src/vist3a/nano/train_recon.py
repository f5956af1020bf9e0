"""Stage ``recon``: train the nano AnySplat (``vist3a.recon.AnySplat`` at a tiny config) as the "pretrained 3D
foundation model" of the nano pipeline.

Inputs are the 64 px clips upsampled to the model's ``img_size`` (112 px): exactly what the model sees at
generation time, where its frames come from the 64 px video decoder. Targets come from the ray-caster:

- **Frame of reference** (:func:`normalize_clip_cameras`): cameras relative to the first view (which becomes
  the identity) and lengths divided by the clip's scale, the mean distance of the first view's camera centre
  to all valid ground-truth points (VGGT's normalisation). Predicted depth, cameras and Gaussians live there.
- **Camera loss** (``camera_loss_kind``): every refinement step against the ground truth, steps weighted
  ``gamma^(n-1-i)`` (normalised), as VGGT. ``"geodesic"`` (default): the geodesic angle between predicted and
  true rotation matrices (the quaternion's sign cannot matter and the loss stays well-conditioned past 180°,
  where the ground-truth quaternion of an orbit flips sign), the same angle for the rotation between
  consecutive views (local motion, which an orbit's 13 frames share), and L1 on translation and FoV;
  ``"l1"``: VGGT's L1 on the raw 9-d encoding (rounds 1-4: it let the camera head collapse to an almost
  constant rotation, see docs/nano.md).
- **Depth loss**: VGGT's confidence-weighted ``conf * |d - d*| - alpha * log(conf)`` on pixels with geometry,
  plus ``background_weight * |d - b|`` on background pixels, pulled to a far shell ``b`` =
  ``background_depth_factor`` x the clip's largest depth, so that the sky gets splats behind the scene.
- **Render loss**: the predicted Gaussians rendered (``vist3a.splats.render``, gsplat on CUDA) at the
  predicted (or ground-truth) cameras of ``render_views`` random views vs the 64 px frames:
  ``L1 + ssim_weight * (1 - SSIM)``. With ``target_views > 0`` that many random views (never the first) are
  left out of the Gaussians and rendered at their *predicted* cameras (gradients reach the camera head):
  novel views are what make the splats 3D and the cameras consistent with them (AnySplat's protocol).
- **Curriculum** (``curriculum_fraction``): during that share of training, clips are drawn only among those
  whose ground-truth rotation from the first view stays under a limit growing from ``curriculum_start_deg``
  to 360°: small arcs first, full orbits last (progress counted from the second step, so that a first step
  that compiles kernels does not use the curriculum up).

Evaluation (held-out compositions): the model sees 9 of 13 views; the other 4 are rendered at their
ground-truth cameras in the normalised frame (novel-view PSNR / SSIM), plus context-view PSNR, depth AbsRel and
camera rotation / translation errors. :func:`camera_metrics` (all 13 views: rotation error median / p90,
translation direction error, predicted vs true rotation span) and the AnySplat protocol (all 13 views in, the
Gaussians of the 9 context views rendered at the 4 targets' *predicted* cameras: ``novel_psnr_pred``) measure
what generation uses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
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
from vist3a.recon.direction import gaussians_of_views
from vist3a.recon.direction import heldout_views as split_views
from vist3a.recon.gaussian_ops import unproject_depth

logger = logging.getLogger(__name__)

STAGE = "recon"
RENDER_CAMERAS = ("pred", "gt")
CAMERA_LOSSES = ("geodesic", "l1")


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
        camera_loss_kind: "geodesic" (rotation angles, translation and FoV L1) or "l1" (VGGT's encoding L1).
        relative_rotation_weight: weight of the consecutive-view rotation angle (geodesic loss only).
        target_views: views per clip left out of the Gaussians and rendered at their predicted cameras.
        camera_kinds: camera-path kinds of the training and held-out clips (None: every kind of the world).
        curriculum_fraction, curriculum_start_deg: the small-arcs-first schedule (0 disables).
        camera_patch_pool: sets the model's ``camera_config.patch_pool_dim`` (the camera head also reads a
            spatial summary of the patch tokens; 0 leaves the model config as it is). Continuing (``init``)
            from weights without it starts the new module at zero.
        canonical_direction: mirror every clip (training and held-out) whose camera turns clockwise seen from
            above (:func:`signed_yaw` < 0) into its mirror image (:func:`vist3a.data.cache.mirror_batch`, an exact
            symmetry of the world), so that all paths turn one way: a probe of whether the turning direction is
            what the camera head cannot learn.
        quaternion_norm_weight: weight of ``(|q| - 1)^2`` (geodesic loss): the rotation decoder divides by
            ``|q|^2``, and a growing norm silences the rotation gradients (seen: |q| 1 -> 5.5 in 1 400 steps).
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
    camera_loss_kind: str = "geodesic"
    relative_rotation_weight: float = 1.0
    target_views: int = 0
    camera_kinds: tuple[str, ...] | None = None
    curriculum_fraction: float = 0.0
    curriculum_start_deg: float = 90.0
    camera_patch_pool: int = 0
    quaternion_norm_weight: float = 1.0
    canonical_direction: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.model = with_camera_patch_pool(self.model, self.camera_patch_pool)
        if self.render_cameras not in RENDER_CAMERAS:
            raise ValueError(f"`render_cameras` must be one of {RENDER_CAMERAS}, got {self.render_cameras!r}")
        if self.camera_loss_kind not in CAMERA_LOSSES:
            raise ValueError(f"`camera_loss_kind` must be one of {CAMERA_LOSSES}, got {self.camera_loss_kind!r}")
        if not 0 <= self.target_views < self.num_frames - 1:
            raise ValueError(f"`target_views` must be in [0, {self.num_frames - 2}], got {self.target_views}")
        if not 0.0 <= self.curriculum_fraction <= 1.0:
            raise ValueError(f"`curriculum_fraction` must be in [0, 1], got {self.curriculum_fraction}")
        self.camera_kinds = check_camera_kinds(self.camera_kinds)

    @property
    def image_size(self) -> int:
        return int(self.model["aggregator_config"]["img_size"])


def with_camera_patch_pool(model: dict[str, Any], dim: int) -> dict[str, Any]:
    """Model kwargs (AnySplat or VGGT) whose camera head also reads its frame's patch tokens, projected to ``dim``
    channels each (``CameraHeadConfig.patch_pool_dim``; the token count follows from the aggregator's grid);
    ``dim = 0`` returns ``model`` unchanged."""
    if not dim:
        return model
    agg = model["aggregator_config"]
    grid = int(agg["img_size"]) // int(agg["patch_size"])
    return {**model, "camera_config": {**model.get("camera_config", {}), "patch_pool_dim": int(dim),
                                       "patch_pool_tokens": grid * grid}}


def check_camera_kinds(kinds: Any) -> tuple[str, ...] | None:
    """``camera_kinds`` as a tuple of the world's camera-path kinds (None stays None: every kind)."""
    if kinds is None:
        return None
    from vist3a.world import CAMERA_PATH_KINDS

    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in CAMERA_PATH_KINDS]
    if unknown or not kinds:
        raise ValueError(f"`camera_kinds` must be a non-empty subset of {CAMERA_PATH_KINDS}, got {kinds}")
    return kinds


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
    points = unproject_depth(safe_depth, rel, K.float())
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


def geodesic_angle(r_pred: torch.Tensor, r_gt: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Angle (radians) between rotations ``[..., 3, 3]``, as ``atan2(|axis|, trace - 1)`` of ``r_pred^T r_gt``.

    Unlike ``arccos`` of the trace, the gradient stays bounded at 0° and near 180° (an orbit's far side).
    """
    rel = r_pred.transpose(-1, -2) @ r_gt
    cos2 = rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0  # 2 cos(angle)
    axis = torch.stack((rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                        rel[..., 1, 0] - rel[..., 0, 1]), -1)  # 2 sin(angle) * unit axis
    return torch.atan2(torch.sqrt((axis * axis).sum(-1) + eps), cos2)


def consecutive_rotations(rot: torch.Tensor) -> torch.Tensor:
    """World-to-camera rotations ``[B, V, 3, 3]`` -> the rotations from view ``i`` to ``i + 1``: ``[B, V-1, 3, 3]``."""
    return rot[:, 1:] @ rot[:, :-1].transpose(-1, -2)


def geodesic_camera_loss(pose_enc_list: list[torch.Tensor], target: torch.Tensor, gamma: float,
                         relative_weight: float = 1.0, norm_weight: float = 1.0
                         ) -> tuple[torch.Tensor, dict[str, float]]:
    """Sign-invariant camera loss of every refinement step (weights ``gamma^(n-1-i)``, normalised).

    Per step: mean geodesic angle (radians) between the predicted and the true rotation of every view,
    ``relative_weight`` x the same for the rotations between consecutive views, and L1 on translation and
    FoV (the encoding's other 5 entries), ``norm_weight`` x ``(|q| - 1)^2``. ``target``: ``[B, V, 9]``
    ground-truth pose encoding. Returns the loss and the last step's terms (rotation terms in degrees).
    """
    from vist3a.cameras import quat_to_rotmat

    target = target.float()
    r_gt = quat_to_rotmat(target[..., 3:7], scalar_first=False)
    rel_gt = consecutive_rotations(r_gt)
    n = len(pose_enc_list)
    weights = [gamma ** (n - 1 - i) for i in range(n)]
    total = target.new_zeros(())
    terms: dict[str, float] = {}
    for w, pose in zip(weights, pose_enc_list, strict=True):
        pose = pose.float()
        r_pred = quat_to_rotmat(pose[..., 3:7], scalar_first=False)
        rot = geodesic_angle(r_pred, r_gt).mean()
        rel = geodesic_angle(consecutive_rotations(r_pred), rel_gt).mean() if pose.shape[1] > 1 else rot * 0
        trans = (pose[..., :3] - target[..., :3]).abs().mean()
        fov = (pose[..., 7:] - target[..., 7:]).abs().mean()
        qnorm = (pose[..., 3:7].norm(dim=-1) - 1.0).square().mean()
        total = total + w * (rot + relative_weight * rel + trans + fov + norm_weight * qnorm)
        terms = {"cam_rot_deg": math.degrees(float(rot.detach())), "cam_rel_deg": math.degrees(float(rel.detach())),
                 "cam_trans": float(trans.detach()), "cam_qnorm": float(qnorm.detach())}
    return total / sum(weights), terms


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
    if cfg.camera_loss_kind == "geodesic":
        cam, cam_terms = geodesic_camera_loss(out.cameras.pose_enc_list, target_pose, cfg.camera_gamma,
                                              cfg.relative_rotation_weight, cfg.quaternion_norm_weight)
    else:
        cam, cam_terms = camera_loss(out.cameras.pose_enc_list, target_pose, cfg.camera_gamma), {}
    loss = cfg.depth_weight * (geom + background) + cfg.camera_weight * cam
    terms = {"depth": float(geom.detach()), "background": float(background.detach()), "camera": float(cam.detach()),
             **cam_terms}
    if cfg.render_views > 0 and cfg.render_weight > 0:
        views = batch.frames.shape[1]
        device_ = batch.frames.device
        if cfg.target_views > 0:
            # novel views: left out of the Gaussians, rendered at their predicted cameras (camera gradients on)
            order = torch.randperm(views - 1, generator=generator) + 1
            targets, context = order[: cfg.target_views].sort().values, order[cfg.target_views:]
            context = torch.cat((torch.zeros(1, dtype=torch.long), context)).sort().values
            ctx_pick = context[torch.randperm(len(context), generator=generator)[: cfg.render_views]]
            pick = torch.cat((ctx_pick, targets)).to(device_)
            gaussians = gaussians_of_views(model, out, context.to(device_))
            w2c = to_homogeneous(out.cameras.w2c.float())[:, pick]
            K = render_intrinsics(out.cameras.K.float(), size, clip_size)[:, pick]
        else:
            pick = torch.randperm(views, generator=generator)[: min(cfg.render_views, views)].to(device_)
            gaussians = out.gaussians
            if cfg.render_cameras == "pred":
                w2c = to_homogeneous(out.cameras.w2c.detach().float())[:, pick]
                K = render_intrinsics(out.cameras.K.detach().float(), size, clip_size)[:, pick]
            else:
                w2c, K = gt.w2c[:, pick], batch.K.float()[:, pick]
        rgb, rgb_psnr = render_loss(gaussians, w2c, K, batch.frames[:, pick], cfg.ssim_weight, cfg.render_backend)
        loss = loss + cfg.render_weight * rgb
        terms.update({"render": float(rgb.detach()), "render_psnr": float(rgb_psnr)})
    return loss, terms


# ----------------------------------------------------------------------------- evaluation
def rotation_angle_deg(r_pred: torch.Tensor, r_gt: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (degrees) between rotations ``[..., 3, 3]``."""
    cos = ((r_pred.transpose(-1, -2) @ r_gt).diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


def camera_centres(w2c: torch.Tensor) -> torch.Tensor:
    """Camera centres ``[..., 3]`` of world-to-camera ``[..., 3|4, 4]``: ``-R^T t``."""
    rot, trans = w2c[..., :3, :3], w2c[..., :3, 3]
    return -(rot.transpose(-1, -2) @ trans[..., None])[..., 0]


def camera_errors(w2c_pred: torch.Tensor, w2c_gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-view errors of predicted cameras ``[B, V, 3|4, 4]`` against the ground truth, both relative to view 0.

    ``rotation_deg [B, V-1]``: geodesic angle of each view's rotation; ``translation_dir_deg [B, V-1]``: angle
    between predicted and true camera-centre offsets from view 0 (scale-free; NaN where the truth does not
    move, 90° where only the prediction stands still); ``span_pred_deg`` / ``span_gt_deg [B]``: the largest
    rotation from view 0 (how far the path turns).
    """
    w2c_pred, w2c_gt = w2c_pred.float(), w2c_gt.float()
    rot = torch.rad2deg(geodesic_angle(w2c_pred[:, 1:, :3, :3], w2c_gt[:, 1:, :3, :3]))
    c_pred, c_gt = camera_centres(w2c_pred), camera_centres(w2c_gt)
    d_pred, d_gt = c_pred[:, 1:] - c_pred[:, :1], c_gt[:, 1:] - c_gt[:, :1]
    cos = F.cosine_similarity(d_pred, d_gt, dim=-1, eps=1e-8).clamp(-1.0, 1.0)
    moving = d_gt.norm(dim=-1) > 1e-3 * c_gt.norm(dim=-1).amax().clamp_min(1e-6)
    direction = torch.where(moving, torch.rad2deg(torch.arccos(cos)), torch.full_like(cos, float("nan")))
    eye = torch.eye(3, device=w2c_gt.device).expand_as(w2c_gt[:, 1:, :3, :3])
    span_pred = torch.rad2deg(geodesic_angle(eye, w2c_pred[:, 1:, :3, :3])).amax(1)
    span_gt = torch.rad2deg(geodesic_angle(eye, w2c_gt[:, 1:, :3, :3])).amax(1)
    return {"rotation_deg": rot, "translation_dir_deg": direction, "span_pred_deg": span_pred,
            "span_gt_deg": span_gt}


@torch.no_grad()
def evaluate_cameras(model: Any, cache: ClipCache, cfg: ReconTrainConfig, device: torch.device,
                     batch_size: int = 4) -> dict[str, float]:
    """All views in: rotation error median / p90 (degrees), translation direction error median, mean
    predicted / true rotation span; and the AnySplat protocol: the Gaussians of the context views (the same
    split as :func:`evaluate_recon`) rendered at the *predicted* cameras of the held-out views
    (``novel_psnr_pred`` / ``novel_ssim_pred``)."""
    model.eval()
    size = cfg.image_size
    rot, direction, span_pred, span_gt, psnrs, ssims = [], [], [], [], [], []
    for start in range(0, len(cache), batch_size):
        batch = cache.batch(range(start, min(start + batch_size, len(cache)))).to(device)
        views, clip_size = batch.frames.shape[1], batch.frames.shape[-1]
        gt = normalize_clip_cameras(batch.w2c, batch.K, batch.depth)
        with autocast(device):
            out = model(to_model_input(batch.frames, size))
        errors = camera_errors(to_homogeneous(out.cameras.w2c.float()), gt.w2c)
        rot.append(errors["rotation_deg"].flatten())
        direction.append(errors["translation_dir_deg"].flatten())
        span_pred.append(errors["span_pred_deg"])
        span_gt.append(errors["span_gt_deg"])
        context, targets = split_views(views, cfg.eval_target_views)
        gaussians = gaussians_of_views(model, out, torch.tensor(context, device=device))
        tgt = torch.tensor(targets, device=device)
        w2c = to_homogeneous(out.cameras.w2c.float())[:, tgt]
        K = render_intrinsics(out.cameras.K.float(), size, clip_size)[:, tgt]
        p, q = _render_metrics(gaussians, w2c, K, batch.frames[:, tgt], cfg)
        psnrs.append(p * batch.frames.shape[0])
        ssims.append(q * batch.frames.shape[0])
    rot_all, dir_all = torch.cat(rot), torch.cat(direction)
    dir_all = dir_all[~torch.isnan(dir_all)]
    return {
        "rotation_error_median_deg": float(rot_all.median()),
        "rotation_error_p90_deg": float(rot_all.quantile(0.9)),
        "translation_dir_error_median_deg": float(dir_all.median()) if dir_all.numel() else float("nan"),
        "rotation_span_pred_deg": float(torch.cat(span_pred).mean()),
        "rotation_span_gt_deg": float(torch.cat(span_gt).mean()),
        "novel_psnr_pred": sum(psnrs) / len(cache),
        "novel_ssim_pred": sum(ssims) / len(cache),
    }


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
    metrics.update(evaluate_cameras(model, cache, cfg, device))
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
def clip_rotation_spans(w2c: torch.Tensor) -> torch.Tensor:
    """``[N]`` largest rotation (degrees) of each clip's views from its first view; ``w2c [N, T, 4, 4]``."""
    rot = w2c[..., :3, :3].float()
    rel = rot @ rot[:, :1].transpose(-1, -2)
    eye = torch.eye(3, device=rot.device).expand_as(rel)
    return torch.rad2deg(geodesic_angle(eye, rel)).amax(1).cpu()


def signed_yaw(w2c: torch.Tensor) -> torch.Tensor:
    """``[N]`` total turn of each clip's viewing direction about the world up axis (+y), radians-ish (sum of the
    up components of cross products of consecutive forward vectors); positive = counter-clockwise from above."""
    forward = w2c[..., 2, :3].float()  # camera z axis in world coordinates (row 2 of R)
    cross = torch.linalg.cross(forward[:, :-1], forward[:, 1:], dim=-1)
    return cross[..., 1].sum(1)


def canonicalise_direction(batch: ClipBatch) -> ClipBatch:
    """``batch`` with every clip whose :func:`signed_yaw` is negative replaced by its mirror image."""
    from vist3a.data.cache import mirror_batch

    flip = signed_yaw(batch.w2c) < 0
    if not bool(flip.any()):
        return batch
    mirrored = mirror_batch(batch)
    pick = lambda a, b: None if a is None else torch.where(flip.view(-1, *([1] * (a.dim() - 1))), b, a)
    from dataclasses import replace

    return replace(batch, frames=pick(batch.frames, mirrored.frames), depth=pick(batch.depth, mirrored.depth),
                   w2c=pick(batch.w2c, mirrored.w2c), K=pick(batch.K, mirrored.K))


def canonical_cache(cache: ClipCache, chunk: int = 64) -> ClipCache:
    """``cache`` with every clip turning clockwise replaced by its mirror image (:func:`canonicalise_direction`),
    in chunks so that the float copies stay small."""
    parts = []
    for start in range(0, len(cache), chunk):
        canon = canonicalise_direction(cache.batch(range(start, min(start + chunk, len(cache)))))
        parts.append(replace(canon, frames=(canon.frames * 255.0).round().to(torch.uint8),
                             depth=None if canon.depth is None else canon.depth.half()))
    return ClipCache.from_batches(parts, cache.device)


def curriculum_limit_deg(progress: float, fraction: float, start_deg: float) -> float:
    """Largest rotation span allowed at training ``progress`` in [0, 1]: ``start_deg`` growing linearly to 360°
    over the first ``fraction`` of training, then everything (181+: full orbits' spans are up to 180°)."""
    if fraction <= 0 or progress >= fraction:
        return 360.0
    return start_deg + (360.0 - start_deg) * progress / fraction


def world_caches(cfg: Any, device: torch.device) -> tuple[ClipCache, ClipCache]:
    """The world's clips restricted to ``cfg.camera_kinds`` (any stage config with that field)."""
    from vist3a.data.cache import make_caches, world_dataset

    render_device = torch.device(cfg.render_device)
    kinds = {"camera_kinds": cfg.camera_kinds}
    train = world_dataset(cfg.num_train_clips, cfg.num_frames, cfg.size, cfg.seed, "train", render_device, **kinds)
    held = world_dataset(cfg.num_eval_clips, cfg.num_frames, cfg.size, cfg.seed + 1_000_003, "heldout",
                         render_device, **kinds)
    return make_caches(cfg.num_train_clips, cfg.num_eval_clips, cfg.num_frames, cfg.size, cfg.seed, device,
                       cfg.data_workers, render_device, train_dataset=train, eval_dataset=held,
                       progress=cfg.progress)


def geometry_clips(run: Any, cfg: Any, caches: tuple[ClipCache, ClipCache] | None, stage: str
                   ) -> tuple[ClipCache, ClipCache]:
    """``(train, held_out)`` clips of a 3D-model stage: the world restricted to ``cfg.camera_kinds``, the held-out
    ones mirrored to turn one way under ``cfg.canonical_direction`` (training batches are mirrored per step), and a
    check that they carry cameras and depth; records the data time."""
    if caches is None and cfg.camera_kinds is not None:
        caches = world_caches(cfg, run.device)
    train, held = run.clips(caches)
    if train.depth is None or train.w2c is None:
        raise ValueError(f"the {stage} stage needs clips with cameras and depth (synthetic clips have both)")
    if cfg.canonical_direction:
        held = canonical_cache(held)
    run.data_ready()
    return train, held


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
    train, held = geometry_clips(run, cfg, caches, STAGE)

    model = AnySplat(**cfg.model)
    init_splat_scales(model)
    model = run.start_from(model, "recon", ("camera_head.patch_pool",)).to(device).train()
    logger.info("nano AnySplat: %.2f M parameters", module_num_params(model) / 1e6)
    optimizer = make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    view_gen = torch.Generator().manual_seed(cfg.seed + 1)

    spans = clip_rotation_spans(train.w2c) if cfg.curriculum_fraction > 0 else None
    first_step = [0.0]  # schedule progress spent by step 0 (gsplat compiles there: ~75 s once per machine)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if spans is None:
            batch = train.sample(cfg.batch_size, batch_gen)
        else:
            progress = run.clock.progress(step)
            if step == 1:
                first_step[0] = min(progress, 0.5)
            progress = max(0.0, progress - first_step[0]) / (1.0 - first_step[0])
            limit = curriculum_limit_deg(progress, cfg.curriculum_fraction, cfg.curriculum_start_deg)
            allowed = torch.nonzero(spans <= limit).flatten()
            allowed = allowed if len(allowed) >= cfg.batch_size else torch.argsort(spans)[: cfg.batch_size]
            batch = train.batch(allowed[torch.randint(len(allowed), (cfg.batch_size,), generator=batch_gen)])
        batch = batch.to(device)
        if cfg.canonical_direction:
            batch = canonicalise_direction(batch)
        loss, terms = recon_step_loss(model, batch, cfg, view_gen, device)
        if spans is not None:
            terms["curriculum_deg"] = limit
        return loss, terms

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
    "camera_errors",
    "evaluate_cameras",
    "evaluate_recon",
    "geodesic_angle",
    "geodesic_camera_loss",
    "normalize_clip_cameras",
    "recon_step_loss",
    "split_views",
    "train_recon",
]
