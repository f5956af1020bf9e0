"""Stages ``stitch``, ``stitch_vggt`` and ``stitch_mvdust3r``: stitch a nano 3D model (the nano AnySplat, or the
nano VGGT or MV-DUSt3R of issue 21) onto the nano VAE's latent space with vist3a's own stitching stage.

The VAE may be of any video-VAE family (a ``vae`` stage run with another ``family``, issue 18): the stage reaches
it only through its :mod:`vist3a.video.vae_adapters` adapter (encoding, spatial and temporal factors), as the
stitching package does.

Thin on purpose: it renders the clips, loads the two trained nano models and runs

1. the layer search (:func:`vist3a.stitching.search.run_layer_search`): a closed-form ridge fit of the
   stitching layer (spec :func:`~vist3a.nano.configs.nano_stitch_spec`, 8x8 latent -> 8x8 tokens) for every
   candidate ``enc_blocks_1..N`` (MV-DUSt3R: ``enc_blocks_0..N``, its patch embedding too), ranked by MSE;
2. stitched fine-tuning (:func:`vist3a.stitching.train.train_stitched`): the best layer + LoRA on the model's
   tail learn to reproduce the frozen nano AnySplat (the teacher) from latents.

The LoRA is merged and the :class:`~vist3a.stitching.decoder.StitchedDecoder` saved as the ``stitch`` (AnySplat),
``stitch_vggt`` (VGGT) or ``stitch_mvdust3r`` (MV-DUSt3R) component. The teacher is whatever uncut model ``recon``
holds (``teacher`` names the installed one to use without it). Evaluation on held-out clips compares the stitched
decoder (from VAE latents) with its teacher (from the frames), the paper's claim to check being that the stitched
model is at least as good as the original:

- AnySplat (:func:`evaluate_stitched`): both models' splats rendered at their own predicted cameras, PSNR / SSIM
  against the frames; novel views: the splats of the context views rendered at the held-out views' predicted
  cameras (``novel_psnr_pred``, AnySplat's protocol, :func:`vist3a.recon.direction.heldout_consistency`); and their
  depth disagreement;
- VGGT and MV-DUSt3R (:func:`evaluate_stitched_pointmaps`): both models against the ground truth of the world
  (Table 5 at nano scale): depth AbsRel, pointmap Acc / Comp / NC, RRA@5 / AUC@30, rotation error
  (:func:`vist3a.nano.train_vggt.pointmap_scene_metrics`; MV-DUSt3R: cameras recovered from its pointmaps, depth
  after a least-squares scale fit), and their depth and pointmap disagreement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from vist3a.cameras import to_homogeneous
from vist3a.data.cache import ClipCache
from vist3a.nano.configs import NanoVideo, nano_stitch_spec, recon_input_size
from vist3a.nano.train_recon import canonical_cache, render_intrinsics, to_model_input
from vist3a.nano.train_vae import encode_mean
from vist3a.nano.training import StageConfig, autocast, begin_stage, evaluate_with_fp16, psnr, ssim

logger = logging.getLogger(__name__)

STAGE = "stitch"
#: The uncut nano 3D models a stitch stage can cut (``teacher``).
TEACHERS = ("recon", "vggt", "mvdust3r")


@dataclass
class StitchStageConfig(StageConfig):
    """Config of the stitch stage (shared fields: :class:`~vist3a.nano.training.StageConfig`).

    Attributes:
        vae, recon: trained component folders (a run folder of ``vist3a nano train`` or its ``model/``; the VAE
            of any family the VAE stage trains); None = the installed nano weights.
        spec: stitching-layer spec; None derives it from the two models (:func:`nano_stitch_spec`).
        layer: force a cut point ``enc_blocks_k``; None = the search's best.
        search_clips: training clips used by the layer search (``search_holdout_fraction`` of them held out).
        lora_rank, lora_alpha: LoRA on the tail's Linear/Conv2d layers during fine-tuning.
        view_choices: views per clip drawn per step (``4n + 1``, at most ``num_frames``).
        color_jitter: brightness/contrast/saturation jitter strength of the fine-tuning inputs.
        gradient_checkpointing: per-block checkpointing (not needed at nano size).
        render_backend: ``vist3a.splats.render`` backend for the evaluation renders.
        fp16_psnr_tolerance: dB of stitched PSNR that fp16 storage may cost under ``save_dtype="auto"`` (AnySplat).
        teacher: the nano component to stitch, "recon" (AnySplat), "vggt" or "mvdust3r"; None = what ``recon``
            holds, else the installed "recon". With ``recon`` given, it must hold that kind of model.
        canonical_direction: distil (and evaluate) on clips mirrored to turn one way, as the teacher was trained
            with ``ReconTrainConfig.canonical_direction``: the student need not learn the teacher's outputs on
            the other direction, which the pipeline never uses (it picks the better of a clip and its mirror).
        eval_max_points: pixels per held-out clip in the pointmap Acc / Comp search (VGGT, MV-DUSt3R).
        fp16_acc_tolerance: pointmap accuracy that fp16 storage may cost under ``save_dtype="auto"`` (VGGT,
            MV-DUSt3R).
        loss_weights: ``{term: weight}`` over the teacher adapter's distillation terms (e.g. ``{"extrinsics": 10}``:
            a student can match the teacher's images closely and still turn its cameras less, docs/nano.md round 8).
        init: a run of this stage (or its ``model/``) to continue fine-tuning: the layer search is skipped, the
            saved decoder (LoRA merged) gets fresh LoRA. Same teacher and VAE as that run, or the student
            starts from a fit to other models. How a distillation gets more than one GPU call.
    """

    #: The stage name recorded in ``train_config.json``.
    stage: ClassVar[str] = STAGE

    steps: int = 1500
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    num_train_clips: int = 1024
    num_eval_clips: int = 16
    vae: str | None = None
    recon: str | None = None
    spec: str | None = None
    layer: str | None = None
    search_clips: int = 256
    search_holdout_fraction: float = 0.2
    lora_rank: int = 16
    lora_alpha: float = 16.0
    view_choices: tuple[int, ...] = (5, 9, 13)
    color_jitter: float = 0.1
    gradient_checkpointing: bool = False
    render_backend: str = "auto"
    fp16_psnr_tolerance: float = 0.05
    teacher: str | None = None
    canonical_direction: bool = False
    eval_max_points: int = 4096
    fp16_acc_tolerance: float = 0.002
    loss_weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.view_choices = tuple(int(v) for v in self.view_choices)
        if any(v > self.num_frames for v in self.view_choices):
            raise ValueError(f"`view_choices` {self.view_choices} must not exceed `num_frames` ({self.num_frames})")
        if self.teacher is not None and self.teacher not in TEACHERS:
            raise ValueError(f"`teacher` must be one of {TEACHERS} (or None), got {self.teacher!r}")

    def teacher_component(self) -> str:
        """The nano component of the teacher (see ``teacher``)."""
        if self.teacher is not None:
            return self.teacher
        if self.recon is None:
            return "recon"
        from vist3a.nano.weights import recon_component_in

        return recon_component_in(self.recon)


@dataclass
class StitchVGGTStageConfig(StitchStageConfig):
    """The ``stitch_vggt`` stage: :class:`StitchStageConfig` with the nano VGGT as the teacher (``recon``: a
    ``vist3a nano train vggt`` run; left out, ``OUT/vggt`` or the installed ``vggt``)."""

    stage: ClassVar[str] = "stitch_vggt"

    teacher: str | None = "vggt"


@dataclass
class StitchMVDust3rStageConfig(StitchStageConfig):
    """The ``stitch_mvdust3r`` stage: :class:`StitchStageConfig` with the nano MV-DUSt3R as the teacher (``recon``:
    a ``vist3a nano train mvdust3r`` run; left out, ``OUT/mvdust3r`` or the installed ``mvdust3r``)."""

    stage: ClassVar[str] = "stitch_mvdust3r"

    teacher: str | None = "mvdust3r"


def load_stitched_decoder(path: str | Path, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> Any:
    """A saved :class:`~vist3a.stitching.decoder.StitchedDecoder` (its own config rebuilds the cut model)."""
    from vist3a.stitching.decoder import StitchedDecoder

    return StitchedDecoder.from_pretrained(path, torch_dtype=dtype, local_files_only=True).to(device).eval()


@torch.no_grad()
def evaluate_stitched(decoder: Any, teacher: Any, vae: Any, cache: ClipCache, device: torch.device,
                      render_backend: str = "auto") -> dict[str, float]:
    """Held-out comparison of the stitched decoder (latents) with its teacher (frames); see the module docstring.
    Keys ``stitched_<m>`` / ``teacher_<m>`` for ``m`` in ``psnr``, ``ssim`` (all views at their own predicted
    cameras) and ``novel_psnr_pred`` (held-out views from the context views' splats), the cameras against the
    world's (``rotation_median_deg``, ``span_pred_deg`` beside ``span_gt_deg``: the teacher's images can be matched
    by a student whose cameras turn less), and between the two: ``depth_rel_diff`` and ``rotation_diff_median_deg``
    (geodesic angle between the two models' rotations of each view relative to view 0)."""
    from vist3a.nano.train_recon import camera_errors, normalize_clip_cameras
    from vist3a.recon.direction import heldout_consistency
    from vist3a.splats import render

    decoder.eval()
    teacher.eval()
    recon_size = recon_input_size(dict(teacher.config))
    sums: dict[str, float] = {}
    rotations: dict[str, list[torch.Tensor]] = {"stitched": [], "teacher": [], "diff": []}
    for i in range(len(cache)):
        batch = cache.batch([i])
        frames = batch.frames.to(device)
        gt_w2c = normalize_clip_cameras(batch.w2c, batch.K, batch.depth).w2c.cpu()
        clip_size = frames.shape[-1]
        latents = encode_mean(vae, frames)
        with autocast(device):
            student = decoder(latents, frames)
            original = teacher(to_model_input(frames, recon_size))
        values: dict[str, float] = {}
        predicted = {}
        for name, out, model in (("stitched", student, decoder.recon), ("teacher", original, teacher)):
            w2c = to_homogeneous(out.cameras.w2c[0].float())
            predicted[name] = w2c.cpu()[None]
            errors = camera_errors(predicted[name], gt_w2c)
            rotations[name].append(errors["rotation_deg"].flatten())
            values[f"{name}_span_pred_deg"] = float(errors["span_pred_deg"][0])
            values["span_gt_deg"] = float(errors["span_gt_deg"][0])
            K = render_intrinsics(out.cameras.K[0].float(), recon_size, clip_size)
            pred = render(out.gaussians[0].to(torch.float32), w2c, K, clip_size, clip_size,
                          backend=render_backend).colors.permute(0, 3, 1, 2)
            values[f"{name}_psnr"] = float(psnr(pred, frames[0]).mean())
            values[f"{name}_ssim"] = float(ssim(pred, frames[0]).mean())
            values[f"{name}_novel_psnr_pred"] = float(heldout_consistency(model, out, frames,
                                                                          backend=render_backend)[0])
        depth_s, depth_t = student.depth.float(), original.depth.float()
        values["depth_rel_diff"] = float(((depth_s - depth_t).abs() / depth_t.clamp_min(1e-6)).mean())
        rotations["diff"].append(camera_errors(predicted["stitched"], predicted["teacher"])["rotation_deg"].flatten())
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
    metrics = {key: value / len(cache) for key, value in sums.items()}
    for name in ("stitched", "teacher"):
        metrics[f"{name}_rotation_median_deg"] = float(torch.cat(rotations[name]).median())
    metrics["rotation_diff_median_deg"] = float(torch.cat(rotations["diff"]).median())
    metrics["num_clips"] = len(cache)
    return metrics


@torch.no_grad()
def evaluate_stitched_pointmaps(decoder: Any, teacher: Any, vae: Any, cache: ClipCache, device: torch.device,
                                max_points: int = 4096, scale_align: bool = False) -> dict[str, float]:
    """Held-out comparison of a stitched pointmap model (VGGT, MV-DUSt3R; from latents) and its teacher (from frames,
    through its adapter: :meth:`~vist3a.stitching.adapters.ReconAdapter.forward_original`) with the world's ground
    truth, and with each other (``depth_rel_diff``, ``points_rel_diff``: mean relative difference); see the module
    docstring. Keys: ``stitched_<metric>`` and ``teacher_<metric>`` for every metric of
    :func:`~vist3a.nano.train_vggt.pointmap_scene_metrics` (``scale_align`` passed on)."""
    from vist3a.nano.train_vggt import pointmap_scene_metrics, pointmap_targets, summarise
    from vist3a.stitching.adapters import adapter_for_model

    decoder.eval()
    teacher.eval()
    adapter = adapter_for_model(teacher)
    recon_size = recon_input_size(dict(teacher.config))
    rows: dict[str, list[dict[str, float]]] = {"stitched": [], "teacher": []}
    rotations: dict[str, list[torch.Tensor]] = {"stitched": [], "teacher": []}
    diffs = []
    for i in range(len(cache)):
        batch = cache.batch([i]).to(device)
        latents = encode_mean(vae, batch.frames)
        target = pointmap_targets(batch, recon_size)
        with autocast(device):
            outputs = {"stitched": decoder(latents, batch.frames),
                       "teacher": adapter.forward_original(teacher, to_model_input(batch.frames, recon_size))}
        for name, out in outputs.items():
            row, rot = pointmap_scene_metrics(out, target, 0, max_points, seed=i, scale_align=scale_align)
            rows[name].append(row)
            rotations[name].append(rot)
        student, original = outputs["stitched"], outputs["teacher"]
        depth_t = original.depth.float()
        points_t = original.world_points.float()
        diffs.append({
            "depth_rel_diff": float(((student.depth.float() - depth_t).abs() / depth_t.clamp_min(1e-6)).mean()),
            "points_rel_diff": float(((student.world_points.float() - points_t).norm(dim=-1)
                                      / points_t.norm(dim=-1).clamp_min(1e-6)).mean()),
        })
    metrics = {f"{name}_{k}": v for name in rows for k, v in summarise(rows[name], rotations[name]).items()
               if k != "num_clips"}
    metrics.update({k: sum(d[k] for d in diffs) / len(diffs) for k in diffs[0]})
    metrics["num_clips"] = len(cache)
    return metrics


def train_stitch(
    cfg: StitchStageConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    caches: tuple[ClipCache, ClipCache] | None = None,
    models: tuple[Any, Any] | None = None,
) -> Path:
    """Search + fine-tune the nano stitching; returns the run folder (``model/``: the stitched decoder).

    ``models``: ``(vae, recon)`` instead of loading ``cfg.vae`` / ``cfg.recon`` (``recon`` an AnySplat, a VGGT or an
    MV-DUSt3R);
    ``caches``: ``(train, held_out)`` instead of rendering the world (tests). Sub-folders ``search/`` and
    ``finetune/`` hold the stitching stage's own outputs (report, fitted layers, losses).
    """
    from vist3a.nano.weights import load_component_from
    from vist3a.stitching.adapters import adapter_for_model
    from vist3a.stitching.search import SearchConfig, run_layer_search
    from vist3a.stitching.train import StitchTrainConfig, build_student, train_stitched
    from vist3a.video.vae_adapters import vae_adapter

    run = begin_stage(cfg, out_dir, cfg.stage, device)
    device, clock = run.device, run.clock
    if models is None:
        models = (load_component_from(cfg.vae, "vae", device),
                  load_component_from(cfg.recon, cfg.teacher_component(), device))
    vae, teacher = models
    vae.to(device).eval().requires_grad_(False)
    teacher.to(device).eval().requires_grad_(False)
    train, held = run.clips(caches)
    if cfg.canonical_direction:
        train, held = canonical_cache(train), canonical_cache(held)
    recon_size = recon_input_size(dict(teacher.config))
    video = NanoVideo(num_frames=cfg.num_frames, height=cfg.size, width=cfg.size, recon_size=recon_size)
    spec = cfg.spec or nano_stitch_spec(dict(teacher.config), video=video,
                                        spatial_factor=vae_adapter(vae).spatial_factor)
    adapter = adapter_for_model(teacher)
    if adapter.name not in EVALUATIONS:
        raise ValueError(f"the nano stitch stage evaluates {sorted(EVALUATIONS)} teachers, got a {adapter.name}")
    sources = {"vae": cfg.vae or "installed nano weights", "recon": cfg.recon or "installed nano weights"}

    # 1. layer search (or the decoder of an earlier run of this stage)
    if cfg.init is not None:
        from vist3a.nano.weights import component_folder, verify_component

        start = verify_component(cfg.stage) if cfg.init == "installed" else component_folder(cfg.init, cfg.stage)
        report = None
        logger.info("nano stitch: continuing the stitched decoder of %s", start)
    else:
        start = run.run_dir / "search"
        report = run_layer_search(
            train, vae, teacher, adapter, start,
            SearchConfig(spec=spec, num_clips=min(cfg.search_clips, len(train)), num_frames=cfg.num_frames,
                         vae_size=cfg.size, recon_size=recon_size, holdout_fraction=cfg.search_holdout_fraction,
                         seed=cfg.seed, batch_size=min(cfg.batch_size, 8)),
            models=sources, progress=cfg.progress,
        )
        logger.info("nano stitch: search best %s; fine-tuning %s", report.best_layer, cfg.layer or report.best_layer)

    # 2. stitched fine-tuning
    stitch_cfg = StitchTrainConfig(
        max_steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
        grad_clip=cfg.grad_clip, batch_size=cfg.batch_size, view_choices=cfg.view_choices, vae_size=cfg.size,
        recon_size=recon_size, color_jitter=cfg.color_jitter, lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
        gradient_checkpointing=cfg.gradient_checkpointing, checkpoint_every=cfg.steps, keep_checkpoints=1,
        seed=cfg.seed, loss_weights=cfg.loss_weights,
    )
    decoder = build_student(teacher, start, stitch_cfg, layer=cfg.layer)
    layer, spec = decoder.layer, str(decoder.config.spec)
    log = run.log
    lr = cfg.lr

    def on_step(step: int, row: dict[str, float]) -> None:
        nonlocal lr
        lr = row.get("lr", lr)
        log.add({k: v for k, v in row.items() if k not in ("step", "lr", "views", "seconds")})
        if step % cfg.log_every == 0:
            log.flush(step, lr, clock.elapsed)

    clock.start_training()
    # the fine-tuning gets what the stage's budget leaves after data and search, minus the evaluation reserve
    stitch_cfg = replace(stitch_cfg, time_budget_s=clock.train_seconds)
    result = train_stitched(decoder, teacher, vae, train, run.run_dir / "finetune", stitch_cfg, device=device,
                            sources=sources, step_callback=on_step, progress=cfg.progress)
    log.flush(result.step, lr, clock.elapsed)
    log.plot("nano stitched fine-tuning")

    decoder.merge_lora()
    decoder.eval().requires_grad_(False)
    evaluate, key, higher_is_better, tolerance = EVALUATIONS[adapter.name]
    metrics, metrics_fp16 = evaluate_with_fp16(decoder, lambda: evaluate(decoder, teacher, vae, held, device, cfg))
    dtype = run.save(decoder, metrics[key], metrics_fp16[key], getattr(cfg, tolerance), higher_is_better)
    evaluation = {f"heldout_{k}": v for k, v in metrics.items()}
    evaluation.update({
        f"heldout_{key}_fp16": metrics_fp16[key],
        "teacher": adapter.name,
        "vae_family": vae_adapter(vae).name,
        "spec": spec,
        "layer": layer,
    })
    if report is not None:
        evaluation.update(search_best_layer=report.best_layer, search_mse=report.layers)
    else:
        evaluation["init"] = str(start)
    # train_stitched reports its steps and stop reason (no skipped-step count); sources name the two models
    run.finish(evaluation, {"steps_done": result.step, "stopped_by": result.stopped_by, "sources": sources})
    teacher_key = key.replace("stitched_", "teacher_", 1)
    logger.info("nano stitch (%s): %s, held-out %s stitched %.4g vs teacher %.4g, saved as %s", adapter.name, layer,
                key.removeprefix("stitched_"), metrics[key], metrics[teacher_key], dtype)
    return run.run_dir


#: Per teacher kind (adapter name): the held-out evaluation ``(decoder, teacher, vae, cache, device, cfg) ->
#: metrics``, the metric that decides the save dtype, whether higher is better, and the config field of its
#: fp16 tolerance.
EVALUATIONS: dict[str, tuple[Any, str, bool, str]] = {
    "anysplat": (lambda d, t, v, c, dev, cfg: evaluate_stitched(d, t, v, c, dev, cfg.render_backend),
                 "stitched_psnr", True, "fp16_psnr_tolerance"),
    "vggt": (lambda d, t, v, c, dev, cfg: evaluate_stitched_pointmaps(d, t, v, c, dev, cfg.eval_max_points),
             "stitched_points_acc", False, "fp16_acc_tolerance"),
    "mvdust3r": (lambda d, t, v, c, dev, cfg: evaluate_stitched_pointmaps(d, t, v, c, dev, cfg.eval_max_points,
                                                                          scale_align=True),
                 "stitched_points_acc", False, "fp16_acc_tolerance"),
}
