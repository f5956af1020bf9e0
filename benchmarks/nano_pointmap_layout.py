"""Does a nano MV-DUSt3R know where a pixel is? The reference view's pointmap against the pixel column.

In the first view's camera frame a pixel's ``x / z`` is ``(u - cx) / f``: a straight line in the column ``u``. For
held-out canonical clips this prints, over the first view's pixels with geometry, the correlation of the model's
``x / z`` with ``u`` (ground truth: ~1) and its mean ``x / z`` on the left and right quarters of the image, beside
the ground truth's; and the correlation of all views' normalised points with the ground truth per axis. A model
whose pointmaps ignore the column (docs/nano.md, Nano MV-DUSt3R, round 9) scores ~0 on the first number however
well it places the views as a whole.

    python benchmarks/nano_pointmap_layout.py runs/m1 runs/cpu_sincos --clips 8
"""

from __future__ import annotations

import argparse

import torch


def layout(model, clips: int, seed: int) -> dict[str, float]:
    """The numbers above for one model on ``clips`` held-out clips of the nano kinds (canonical direction)."""
    from vist3a.nano.camera_eval import canonicalise_direction, kind_cache
    from vist3a.nano.train_mvdust3r import MVDust3rTrainConfig, mean_distance
    from vist3a.nano.train_vggt import pointmap_targets, to_model_input

    cfg = MVDust3rTrainConfig()
    kinds = ("arc", "aerial_rise", "aerial_descend", "partial_orbit")
    rows: dict[str, list[float]] = {}
    for kind in kinds:
        batch = canonicalise_direction(kind_cache(kind, max(1, clips // len(kinds)), seed=seed).batch(
            range(max(1, clips // len(kinds)))))
        with torch.no_grad():
            out = model(to_model_input(batch.frames, cfg.image_size) * 2 - 1)
        target = pointmap_targets(batch, cfg.image_size, cfg.background_depth_factor, 0)
        valid = target.valid
        pred = out.points[:, 0].float()
        pred = pred / mean_distance(pred, valid)[:, None, None, None, None]
        truth = target.points / mean_distance(target.points, valid)[:, None, None, None, None]
        for axis, name in enumerate("xyz"):
            pair = torch.stack([pred[..., axis][valid], truth[..., axis][valid]])
            rows.setdefault(f"corr_{name}", []).append(float(torch.corrcoef(pair)[0, 1]))
        width = pred.shape[-2]
        column = torch.arange(width, dtype=torch.float32).expand(pred.shape[-3], width)
        for label, points in (("model", pred), ("truth", truth)):
            first, seen = points[:, 0], valid[:, 0] & (points[:, 0, ..., 2] > 1e-3)
            ratio = first[..., 0] / first[..., 2].clamp_min(1e-3)
            cols = column.expand_as(ratio)
            rows.setdefault(f"{label}_corr_xz_u", []).append(float(torch.corrcoef(torch.stack([ratio[seen],
                                                                                                  cols[seen]]))[0, 1]))
            quarter = width // 4
            rows.setdefault(f"{label}_xz_left", []).append(float(ratio[..., :quarter][seen[..., :quarter]].mean()))
            rows.setdefault(f"{label}_xz_right", []).append(float(ratio[..., -quarter:][seen[..., -quarter:]].mean()))
    return {key: sum(values) / len(values) for key, values in rows.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="mvdust3r run folders (or output roots) of `vist3a nano train`")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    from vist3a.nano.weights import load_component_from

    for run in args.runs:
        numbers = layout(load_component_from(run, "mvdust3r").eval(), args.clips, args.seed)
        print(run, "  ".join(f"{k} {v:.3f}" for k, v in numbers.items()))


if __name__ == "__main__":
    main()
