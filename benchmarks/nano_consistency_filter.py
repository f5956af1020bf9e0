"""Does a test-time multi-view depth-consistency filter of the Gaussians stop the nano scenes' smear (issue 15)?

MVS depth fusion's rule, applied to a generated scene's (voxel-fused) Gaussians with the cameras and depth maps
the stitched decoder predicts: project each Gaussian's mean into every view and compare its camera depth ``z``
with the view's predicted depth ``D`` at that pixel, ``r = (z - D) / D``. A view *agrees* if ``|r| <= tol``; the
Gaussian *violates* the view's free space if ``r < -tol`` (it floats where that view saw through to a surface
behind). A variant keeps Gaussians agreed with by at least ``min_views`` views (the view it came from counts),
by at least ``min_ratio`` of the views that see it, and/or violating at most ``max_violations`` views.

Scenes: those of ``benchmarks/nano_camera_paths.py`` (the quickstart prompt with the preset's template, seeds
0-7, and the 32 two-object prompts of ``--left-right 32``), each generated once and scored with every variant:
the ±45° turntable judge (quickstart), both named colours in all five turntable views -60..+60° (two-object
prompts), left/right on the render at the first camera, and the consistency PSNR of renders at all 13 predicted
cameras against the decoded frames. The result (not kept in the pipeline) is in docs/nano.md § Round 8.

    python benchmarks/nano_consistency_filter.py --cache runs/consist/scenes --out consistency_filter.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

#: name -> (tol, min_views, min_ratio, max_violations); ``None``: that test is off. "none": no filter.
VARIANTS: dict[str, tuple[float, int, float | None, int | None]] = {
    "none": (0.0, 0, None, None),
    "a2_t05": (0.05, 2, None, None), "a3_t05": (0.05, 3, None, None),
    "a2_t10": (0.10, 2, None, None), "a3_t10": (0.10, 3, None, None), "a4_t10": (0.10, 4, None, None),
    "a2_t20": (0.20, 2, None, None), "a4_t20": (0.20, 4, None, None),
    "r50_t10": (0.10, 0, 0.5, None), "r30_t20": (0.20, 0, 0.3, None),
    "v1_t10": (0.10, 0, None, 1), "v3_t10": (0.10, 0, None, 3), "v6_t10": (0.10, 0, None, 6),
    "v3_t20": (0.20, 0, None, 3), "a2v3_t10": (0.10, 2, None, 3),
}
QUICKSTART = "a red cube left of a blue sphere"
TEMPLATE = "The camera rises while circling {prompt}."


def depth_agreement(points: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, depth: torch.Tensor,
                    tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(agree, front, seen)``, ``[N, V]`` bool each, of world points ``[N, 3]`` against depth maps ``[V, H, W]``
    (z-depth) of cameras ``w2c [V, 4, 4]`` (OpenCV) with pixel intrinsics ``K [V, 3, 3]`` (``depth[j, v, u]`` at
    pixel ``(u, v)``): nearest-pixel lookup, ``seen`` = in front of the camera and inside the image."""
    views, height, width = depth.shape
    cam = torch.einsum("vij,nj->nvi", w2c[:, :3, :3].float(), points.float()) + w2c[:, :3, 3].float()
    z = cam[..., 2]
    safe = z.clamp_min(1e-8)
    u = ((K[:, 0, 0] * cam[..., 0] + K[:, 0, 1] * cam[..., 1]) / safe + K[:, 0, 2]).round()
    v = (K[:, 1, 1] * cam[..., 1] / safe + K[:, 1, 2]).round()
    seen = (z > 1e-8) & (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)
    index = (v.clamp(0, height - 1) * width + u.clamp(0, width - 1)).long()
    surface = torch.gather(depth.float().reshape(views, -1), 1, index.T).T.clamp_min(1e-8)
    rel = (z - surface) / surface
    return seen & (rel.abs() <= tol), seen & (rel < -tol), seen


def keep_mask(scene, variant: str) -> torch.Tensor:
    """``[N]`` bool: the scene's Gaussians that ``variant`` (a key of :data:`VARIANTS`) keeps."""
    tol, min_views, min_ratio, max_violations = VARIANTS[variant]
    means = scene.gaussians.means
    if tol == 0.0:
        return torch.ones(means.shape[0], dtype=torch.bool)
    agree, front, seen = depth_agreement(means, scene.w2c, scene.K, scene.depth, tol)
    keep = agree.sum(1) >= min_views
    if min_ratio is not None:
        keep &= agree.sum(1) >= min_ratio * seen.sum(1)
    if max_violations is not None:
        keep &= front.sum(1) <= max_violations
    return keep


def scenes(cache: Path, seeds: int, left_right: int):
    """``(name, scene, colours, case)`` of the benchmark's scenes, generated once into ``cache``."""
    from vist3a.evaluation.relations import left_right_cases

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from nano_camera_paths import nano_pipeline

    cases = left_right_cases(24, 2026)
    jobs = [(f"qs{s}", QUICKSTART, s, ("red", "blue"), None) for s in range(seeds)]
    for i in range(left_right):  # as nano_camera_paths.measure_left_right
        case = cases[i % len(cases)]
        jobs.append((f"lr{i:02d}", case.prompt, i if i < 24 else 1000 + i,
                     (case.subject_colour, case.reference_colour), case))
    cache.mkdir(parents=True, exist_ok=True)
    pipe = None
    for name, prompt, seed, colours, case in jobs:
        path = cache / f"{name}.pt"
        if not path.exists():
            pipe = pipe or nano_pipeline()
            extra = {"template": TEMPLATE} if case is None else {}
            scene = pipe(prompt, generator=torch.Generator().manual_seed(seed), progress=False, **extra)[0]
            torch.save({"scene": scene, "colours": colours, "case": case}, path)
        saved = torch.load(path, weights_only=False)
        yield name, saved["scene"], saved["colours"], saved["case"]


def score(scene, colours, case) -> dict:
    """The benchmark's judges on one (filtered) scene, and its consistency PSNR at its own cameras."""
    from vist3a.evaluation.metrics import consistency_psnr
    from vist3a.evaluation.relations import judge_left_right
    from vist3a.evaluation.views import render_predicted_views
    from vist3a.nano.scene3d import colour_pixel_fraction, turntable_views

    row: dict = {}
    if case is None:  # the ±45° judge of tests/nano/test_nano_3d.py
        views = turntable_views(scene, colours, (0.0, -45.0, 45.0), backend="torch")
        kept = [sum(colour_pixel_fraction(v, c) for c in colours) for v in views] if views is not None else []
        visible = min(colour_pixel_fraction(views[0], c) for c in colours) if views is not None else 0.0
        row["turntable_ok"] = bool(kept) and visible >= 0.005 and all(k >= 0.5 * kept[0] for k in kept[1:])
    else:
        views = turntable_views(scene, colours, (0.0, -60.0, -30.0, 30.0, 60.0), backend="torch")
        both = [all(colour_pixel_fraction(v, c) >= 0.005 for c in colours) for v in views] if views is not None else []
        row["both_visible_share"] = sum(both) / 5
        row["left_right_render0"] = judge_left_right(render_predicted_views(scene, [0], "torch")[0], case)
    rendered = render_predicted_views(scene, range(scene.frames.shape[0]), "torch")
    row["consistency_psnr"] = float(consistency_psnr(scene.frames.float(), rendered).mean())
    return row


def summary(rows: list[dict]) -> str:
    qs = [r for r in rows if "turntable_ok" in r]
    lr = [r for r in rows if "both_visible_share" in r]
    text = (f"kept {sum(r['kept'] for r in rows) / len(rows):.2f}, "
            f"PSNR {sum(r['consistency_psnr'] for r in rows) / len(rows):.2f} dB")
    if qs:
        text += f", turntable ±45° {sum(r['turntable_ok'] for r in qs)}/{len(qs)}"
    if lr:
        text += (f", both colours in all 5 views {sum(r['both_visible_share'] == 1 for r in lr)}/{len(lr)} "
                 f"({100 * sum(r['both_visible_share'] for r in lr) / len(lr):.0f} % of views), left/right on "
                 f"render 0 right {sum(r['left_right_render0'] is True for r in lr)}, "
                 f"wrong {sum(r['left_right_render0'] is False for r in lr)}")
    return text


def main(argv: list[str] | None = None) -> None:
    from dataclasses import replace

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="quickstart seeds (the ±45° judge)")
    parser.add_argument("--left-right", type=int, default=32, help="two-object prompts (-60..+60° views)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cache", type=Path, default=Path("runs/consistency_filter/scenes"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for name, scene, colours, case in scenes(args.cache, args.seeds, args.left_right):
        for variant in args.variants:
            keep = keep_mask(scene, variant)
            row = {"scene": name, "kept": float(keep.float().mean()),
                   **score(replace(scene, gaussians=scene.gaussians[keep]), colours, case)}
            results[variant].append(row)
            print(variant, json.dumps(row), flush=True)
    for variant, rows in results.items():
        print(f"{variant:>9}: {summary(rows)}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
