"""``vist3a eval geometry``: camera and pointmap quality of the stitched vs the original decoder (Table 5).

Per clip, the decoder sees all its views; its cameras are scored against the true ones with RRA@5 / RTA@5 /
AUC@30 (pairwise, :mod:`~vist3a.evaluation.pose_metrics`) and ATE / RPE-T / RPE-R (trajectory, after Sim(3)
alignment), its world pointmap against the true depth unprojected with the true cameras with Acc / Comp / NC
(:mod:`~vist3a.evaluation.pointmap_metrics`, after Sim(3) alignment on corresponding pixels). Means over clips.

``direction="mirror-select"`` or ``"motion"`` (the nano presets' default; for decoders trained on one turning
direction): each decoder runs on the clip or on its mirror image, chosen without ground truth
(:func:`vist3a.benchmark.decoders.decode`: mirror-select runs both and keeps the pass that explains held-out views
better, motion reads the turn off the frames' image motion); a mirror pass's cameras and pointmaps are mapped back
to the clip's own world, so the metrics always compare against the ground truth as the clip has it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

COLUMNS = (("rra@5", "RRA@5 ↑"), ("rta@5", "RTA@5 ↑"), ("auc@30", "AUC@30 ↑"), ("ate", "ATE ↓"),
           ("rpe_t", "RPE-T ↓"), ("rpe_r", "RPE-R ↓"), ("acc", "Acc ↓"), ("acc_med", "Acc med ↓"),
           ("comp", "Comp ↓"), ("comp_med", "Comp med ↓"), ("nc", "NC ↑"), ("nc_med", "NC med ↑"))


@dataclass
class GeometryConfig:
    """Settings of ``vist3a eval geometry`` (fields as the CLI options; ``size``: square frame size, None = the
    preset's ``stitching.vae_size``; ``keyframe_every``: keyframe stride of the 7scenes / eth3d / scannet loaders,
    None = each loader's default; ``direction``: "as-is" | "mirror-select" | "motion", None = the preset's default)."""

    data: str = "nano"
    preset: str = "nano"
    decoders: tuple[str, ...] = ("stitched", "original")
    num_clips: int = 8
    num_frames: int = 13
    size: int | None = None
    seed: int = 0
    max_points: int = 10_000
    keyframe_every: int | None = None
    direction: str | None = None
    progress: bool = True


def evaluate_geometry(cfg: GeometryConfig, device: str | torch.device | None = None, *,
                      decoders: list[Any] | None = None, clips: list[Any] | None = None) -> dict[str, Any]:
    """Table 5: ``{"rows": {decoder: {metric: mean}}, "per_clip": [...]}`` (pointmap metrics where the clips have
    depth and the decoder gives pointmaps; with mirror-select or motion, per clip the pass each decoder kept and
    ``"mirror_taken"``, as :func:`~vist3a.benchmark.nvs.evaluate_nvs`)."""
    from vist3a.benchmark.decoders import (
        StitchedLatentDecoder,
        check_direction_views,
        check_view_count,
        decode,
        load_decoders,
        mirror_summary,
        preset_sizes,
        resolve_direction,
    )
    from vist3a.benchmark.eval_data import check_data, eval_clips
    from vist3a.data.clip import valid_depth
    from vist3a.evaluation.pointmap_metrics import pointmap_metrics
    from vist3a.evaluation.pose_metrics import relative_pose_metrics, trajectory_metrics
    from vist3a.recon.gaussian_ops import unproject_depth

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    direction = resolve_direction(cfg.direction, cfg.preset)
    check_direction_views(direction, cfg.num_frames, "each clip")
    if clips is None:
        check_data(cfg.data, cfg.keyframe_every)  # a bad --data fails before any model loads
    if decoders is None:
        if "stitched" in cfg.decoders:  # fail before loading anything (Wan VAEs: 4k+1 frames)
            check_view_count("stitched", StitchedLatentDecoder.frame_step, cfg.num_frames, "each clip")
        decoders = load_decoders(cfg.preset, cfg.decoders, device)
    for dec in decoders:
        dec.check_views(cfg.num_frames, "each clip")
    if clips is None:
        clips = eval_clips(cfg.data, cfg.num_clips, cfg.num_frames, cfg.size or preset_sizes(cfg.preset)[0], cfg.seed,
                           keyframe_every=cfg.keyframe_every)
    per_clip: list[dict[str, Any]] = []
    for index, clip in enumerate(tqdm(clips, desc="eval geometry", unit="clip", disable=not cfg.progress)):
        gt_w2c = clip.w2c.double().cpu()
        gt_points = mask = None
        if clip.depth is not None:
            depth = clip.depth.float().cpu()
            mask = valid_depth(depth)
            # NaN where there is no depth: normals next to holes are undefined (left out of NC), not garbage
            holes = torch.where(mask, depth, torch.full_like(depth, float("nan"))).double()
            gt_points = unproject_depth(holes, gt_w2c.double(), clip.K.cpu().double()).float()
        row: dict[str, Any] = {"clip": index}
        for dec in decoders:
            pred, choice = decode(dec, clip.frames.float().cpu(), direction)  # in the clip's world either way
            if choice is not None:
                row.setdefault("direction_choice", {})[dec.name] = choice
            values = {**relative_pose_metrics(pred.w2c, gt_w2c), **trajectory_metrics(pred.w2c, gt_w2c)}
            if gt_points is not None and pred.points is not None:
                values.update(pointmap_metrics(pred.points, gt_points, mask, max_points=cfg.max_points, seed=index))
            row[dec.name] = values
        per_clip.append(row)
    names = [d.name for d in decoders]
    rows = {n: {k: sum(r[n][k] for r in per_clip) / len(per_clip) for k in per_clip[0][n]} for n in names}
    result = {"rows": rows, "per_clip": per_clip, "num_clips": len(per_clip), "data": cfg.data, "preset": cfg.preset,
              "direction": direction}
    return mirror_summary(result, names)


def geometry_markdown(result: dict[str, Any]) -> str:
    """Table 5's layout: one row per decoder; pose columns, then pointmap columns."""
    present = next(iter(result["rows"].values()))
    cols = [(k, label) for k, label in COLUMNS if k in present]
    from vist3a.benchmark.decoders import direction_line

    lines = [f"Geometry on {result['data']} ({result['num_clips']} clips), preset {result['preset']}",
             direction_line(result), "",
             "| Decoder | " + " | ".join(label for _, label in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.4f}" for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"
