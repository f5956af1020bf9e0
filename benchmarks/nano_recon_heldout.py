"""Several nano AnySplats on the *same* held-out clips: the recon stage's own evaluation, one set for all.

Each ``vist3a nano train recon`` run evaluates on 32 held-out clips drawn from its own seed, so two runs' eval.json
files are measured on different clips, and those sets differ in difficulty by more than one continuation round
gains (docs/nano.md § Round 13: the installed r11 has 6.9° median rotation error on its own seed's set and 5.5° on
round 13's). This script rebuilds the held-out set of each given seed exactly as the stage does (the run's
``camera_kinds``, size and frames, turned one way under ``canonical_direction``) and runs
:func:`vist3a.nano.train_recon.evaluate_recon` for every model on every set.

    python benchmarks/nano_recon_heldout.py --config runs/r13/recon/train_config.json --seeds 111 131 \\
        --model installed=src/vist3a/nano/weights/recon --model r13=runs/r13/recon/model --out recon_heldout.json

CPU, ~80 s per model and set (32 clips).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

KEYS = ("novel_psnr", "novel_psnr_pred", "depth_abs_rel", "rotation_error_median_deg", "rotation_error_p90_deg",
        "translation_dir_error_median_deg", "rotation_span_pred_deg", "rotation_span_gt_deg")


def heldout_set(config: dict, seed: int):
    """The held-out clips of a recon run with this config and ``seed`` (rendered on the CPU), and its config."""
    from vist3a.nano.train_recon import ReconTrainConfig, canonical_cache, world_caches

    names = {f.name for f in dataclasses.fields(ReconTrainConfig)}
    values = {k: v for k, v in config.items() if k in names}
    values.update(seed=seed, num_train_clips=1, data_workers=0, render_device="cpu", init=None, progress=False)
    cfg = ReconTrainConfig(**values)
    held = world_caches(cfg, torch.device("cpu"))[1]
    return (canonical_cache(held) if cfg.canonical_direction else held), cfg


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True,
                        help="a recon run's train_config.json (its camera kinds, size, frames, direction rule)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="held-out sets: these runs' seeds")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER",
                        help="a nano AnySplat model folder (config.json + safetensors); repeatable")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from vist3a.nano.train_recon import evaluate_recon
    from vist3a.recon import AnySplat

    if any("=" not in item for item in args.model):
        parser.error("--model takes NAME=FOLDER, e.g. --model r13=runs/r13/recon/model")
    models = dict(item.split("=", 1) for item in args.model)
    config = json.loads(args.config.read_text())["config"]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for seed in args.seeds:
        held, cfg = heldout_set(config, seed)
        for name, folder in models.items():
            model = AnySplat.from_pretrained(folder).float().eval()
            metrics = evaluate_recon(model, held, cfg, torch.device("cpu"))
            results.setdefault(f"seed {seed}", {})[name] = {k: round(float(metrics[k]), 4) for k in KEYS}
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {v}" for k, v in results[f"seed {seed}"][name].items()),
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
