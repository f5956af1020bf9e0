"""Camera accuracy of a nano AnySplat per camera-path kind, and test-time choice of the turning direction.

Why: the aggregate numbers of the recon stage hid that the shipped camera head predicts (almost) the same
rotation for every view (docs/nano.md § Round 5). This module measures, per kind of
:data:`vist3a.world.CAMERA_PATH_KINDS`, on held-out clips with all 13 views in:

- rotation error median / p90 (geodesic, degrees; views 1..12 against the truth relative to view 0),
- translation direction error median (angle between camera-centre offsets from view 0; scale-free),
- the predicted and true rotation span (largest rotation from view 0): a sheet has a span near 0.

``direction="mirror-select"`` runs the model on the clip and on its mirror image (an exact symmetry of the
world) and keeps the pass chosen by ``criterion`` (no ground truth used): "heldout", whose Gaussians render the
held-out views better at the predicted cameras; "own", all views at their own cameras; "motion", the pass that
turns counter-clockwise by the frames' image motion (:func:`vist3a.recon.direction.image_motion_turn`, the
pipeline's ``--direction motion``). These are the ways to use a model trained on one turning direction
(``canonical_direction``).

Run: ``python3 -m vist3a.nano.camera_eval --recon RUN_OR_MODEL --clips-per-kind 4 --out cams.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import torch

from vist3a.cameras import to_homogeneous
from vist3a.data.cache import ClipCache, mirror_batch
from vist3a.data.clip import ClipBatch
from vist3a.nano.train_recon import (
    ReconTrainConfig,
    _render_metrics,
    camera_errors,
    canonicalise_direction,
    gaussians_of_views,
    normalize_clip_cameras,
    render_intrinsics,
    signed_yaw,
    to_model_input,
)
from vist3a.recon.direction import heldout_consistency, image_motion_turn

DIRECTIONS = ("as-is", "canonical", "mirror-select")
_FLIP = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
_MIN_TURN = 0.087  # |signed_yaw| below ~5 degrees: either direction is right


def kind_cache(kind: str, num_clips: int, seed: int = 2026, num_frames: int = 13, size: int = 64) -> ClipCache:
    """``num_clips`` held-out clips of one camera-path kind (rendered on the CPU)."""
    from vist3a.data import SyntheticClips

    dataset = SyntheticClips(num_clips, num_frames=num_frames, size=size, seed=seed, split="heldout",
                             camera_kinds=(kind,))
    return ClipCache.from_clips([dataset[i] for i in range(num_clips)])


CRITERIA = ("heldout", "own", "motion")


@torch.no_grad()
def predict_w2c(model: Any, frames: torch.Tensor, cfg: ReconTrainConfig, num_targets: int = 4
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(w2c [B, V, 4, 4], scores)``: predicted cameras of all views and two self-consistency PSNRs ``[B]``
    (no ground truth): "heldout", the context views' Gaussians rendered at the predicted cameras of
    ``num_targets`` held-out views; "own", all views' Gaussians rendered at every view's predicted camera."""
    size, clip_size = cfg.image_size, frames.shape[-1]
    out = model(to_model_input(frames, size))
    w2c = to_homogeneous(out.cameras.w2c.float())
    every = gaussians_of_views(model, out, torch.arange(frames.shape[1]))
    K = render_intrinsics(out.cameras.K.float(), size, clip_size)
    scores: dict[str, list[float]] = {"own": []}
    for b in range(frames.shape[0]):
        scores["own"].append(_render_metrics([every[b]], w2c[b : b + 1], K[b : b + 1], frames[b : b + 1], cfg)[0])
    # "heldout" is exactly what the pipeline's --direction mirror-select computes
    scores["heldout"] = heldout_consistency(model, out, frames, num_targets, backend=cfg.render_backend).tolist()
    return w2c, {key: torch.tensor(value) for key, value in scores.items()}


def mirror_select(model: Any, batch: ClipBatch, cfg: ReconTrainConfig, criterion: str = "heldout"
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Predicted ``w2c`` of ``batch`` from the better of the clip and its mirror image by ``criterion``
    (:func:`predict_w2c`), mapped back to the clip's own frame (``S w2c S``); and, per criterion, which clips
    that criterion would send through the mirror ``[B]`` (bool)."""
    if criterion not in CRITERIA:
        raise ValueError(f"`criterion` must be one of {CRITERIA}, got {criterion!r}")
    w2c, score = predict_w2c(model, batch.frames, cfg)
    w2c_m, score_m = predict_w2c(model, mirror_batch(batch).frames, cfg)
    flip = _FLIP.to(w2c_m)
    takes = {key: score_m[key] > score[key] for key in ("heldout", "own")}
    takes["motion"] = image_motion_turn(batch.frames) < 0
    back = flip @ w2c_m @ flip
    return torch.where(takes[criterion][:, None, None, None], back, w2c), takes


def evaluate_kind(model: Any, cache: ClipCache, cfg: ReconTrainConfig, direction: str = "as-is",
                  batch_size: int = 4, criterion: str = "heldout") -> dict[str, torch.Tensor]:
    """Per-view / per-clip camera errors of ``model`` on ``cache`` (``direction``: see the module docstring):
    ``rotation_deg``, ``translation_dir_deg`` (flat), ``span_pred_deg``, ``span_gt_deg`` and, for
    "mirror-select", per clip ``mirror_taken`` (by ``criterion``) and, for every criterion,
    ``choice_right_<criterion>``: 1 where it took the mirror exactly when the clip turns clockwise (the
    direction the model was trained on is counter-clockwise), NaN for clips turning less than 5°."""
    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` must be one of {DIRECTIONS}, got {direction!r}")
    model.eval()
    rows: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(cache), batch_size):
        batch = cache.batch(range(start, min(start + batch_size, len(cache))))
        if direction == "canonical":
            batch = canonicalise_direction(batch)
        gt = normalize_clip_cameras(batch.w2c, batch.K, batch.depth)
        if direction == "mirror-select":
            w2c, takes = mirror_select(model, batch, cfg, criterion)
            rows.setdefault("mirror_taken", []).append(takes[criterion].float())
            yaw = signed_yaw(batch.w2c)
            for key, take in takes.items():
                right = (take == (yaw < 0)).float()
                rows.setdefault(f"choice_right_{key}", []).append(torch.where(yaw.abs() < _MIN_TURN, torch.nan, right))
        else:
            w2c, _ = predict_w2c(model, batch.frames, cfg)
        for key, value in camera_errors(w2c, gt.w2c).items():
            rows.setdefault(key, []).append(value.flatten())
    return {key: torch.cat(values) for key, values in rows.items()}


def summarise(errors: dict[str, torch.Tensor]) -> dict[str, float]:
    """Medians / p90 / means of :func:`evaluate_kind`'s errors."""
    rot, trans = errors["rotation_deg"], errors["translation_dir_deg"]
    trans = trans[~torch.isnan(trans)]
    out = {
        "rotation_error_median_deg": float(rot.median()),
        "rotation_error_p90_deg": float(rot.quantile(0.9)),
        "translation_dir_error_median_deg": float(trans.median()) if trans.numel() else float("nan"),
        "span_pred_deg": float(errors["span_pred_deg"].mean()),
        "span_gt_deg": float(errors["span_gt_deg"].mean()),
        "num_clips": len(errors["span_gt_deg"]),
    }
    if "mirror_taken" in errors:
        out["mirror_taken"] = float(errors["mirror_taken"].mean())
    for key in sorted(k for k in errors if k.startswith("choice_right_")):
        right = errors[key][~torch.isnan(errors[key])]
        out[key] = float(right.mean()) if right.numel() else float("nan")
    return out


def evaluate_by_kind(model: Any, kinds: Sequence[str], clips_per_kind: int, direction: str = "as-is",
                     seed: int = 2026, criterion: str = "heldout") -> dict[str, dict[str, float]]:
    """:func:`summarise` of every kind in ``kinds``, plus ``"all"`` (errors pooled over the kinds)."""
    cfg = ReconTrainConfig(model=dict(model.config), render_backend="torch")
    results, pooled = {}, {}
    for kind in kinds:
        errors = evaluate_kind(model, kind_cache(kind, clips_per_kind, seed), cfg, direction, criterion=criterion)
        results[kind] = summarise(errors)
        for key, value in errors.items():
            pooled.setdefault(key, []).append(value)
    results["all"] = summarise({key: torch.cat(values) for key, values in pooled.items()})
    return results


def main(argv: Sequence[str] | None = None) -> None:
    from vist3a.nano.weights import load_component_from
    from vist3a.world import CAMERA_PATH_KINDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recon", default=None, help="run folder or model folder (default: the installed recon)")
    parser.add_argument("--clips-per-kind", type=int, default=4)
    parser.add_argument("--kinds", nargs="*", default=list(CAMERA_PATH_KINDS))
    parser.add_argument("--direction", choices=DIRECTIONS, default="as-is")
    parser.add_argument("--criterion", choices=CRITERIA, default="heldout",
                        help="what picks the pass under --direction mirror-select: held-out or own-view render "
                        "score, or image motion")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    model = load_component_from(args.recon, "recon", "cpu", torch.float32)
    results = evaluate_by_kind(model, args.kinds, args.clips_per_kind, args.direction, args.seed, args.criterion)
    text = json.dumps({"recon": args.recon or "installed", "direction": args.direction, "criterion": args.criterion,
                       "clips_per_kind": args.clips_per_kind, "seed": args.seed, "results": results}, indent=1)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text + "\n")
    for kind, row in results.items():
        print(f"{kind:15s} " + "  ".join(f"{k} {v:.1f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
