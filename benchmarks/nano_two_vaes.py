"""Issue 18's nano question (the paper's Fig. 10): across VAEs, does the lower minimum stitching MSE give the better
stitched 3D? One row per ``vist3a nano train stitch`` run (each stitched onto another VAE, same recon, seed, clips).

Per run it reads ``stitch/eval.json`` (search MSE per layer, stitched and teacher PSNR at the views' own predicted
cameras and at held-out views, ``novel_psnr_pred``), ``stitch/train_config.json`` (steps, the VAE's source) and the
VAE's own ``eval.json`` where the source has one (held-out reconstruction PSNR), then says whether ordering the VAEs
by minimum search MSE orders them by stitched novel-view PSNR too.

    python benchmarks/nano_two_vaes.py runs/v2wan runs/v2hy runs/v2ship --json two_vaes.json

Each argument is an output root holding ``stitch/`` (``--out`` of the stitch stage) or the stitch run folder itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _stitch_dir(path: Path) -> Path:
    for candidate in (path / "stitch", path):
        if (candidate / "eval.json").is_file() and (candidate / "search").is_dir():
            return candidate
    raise SystemExit(f"{path}: no stitch run (expected {path}/stitch/eval.json)")


def _vae_eval(source: str | None) -> dict[str, Any]:
    """The VAE run's ``eval.json`` (a run folder, its ``model/``, or an installed component via the manifest)."""
    if not source:
        return {}
    path = Path(source)
    for candidate in (path / "eval.json", path.parent / "eval.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    manifest = path.parent / "MANIFEST.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())["components"].get(path.name, {}).get("eval", {})
    return {}


def row(path: Path) -> dict[str, Any]:
    """One VAE's numbers from its stitch run under ``path``."""
    run = _stitch_dir(path)
    evaluation = json.loads((run / "eval.json").read_text())
    record = json.loads((run / "train_config.json").read_text())
    source = record.get("sources", {}).get("vae") or record["config"].get("vae")
    search = evaluation["search_mse"]
    best_fit = min(search, key=lambda k: search[k]["mse_fit"])
    vae = _vae_eval(source)
    return {
        "run": str(path),
        "vae_family": evaluation.get("vae_family"),
        "vae_source": source,
        "vae_heldout_psnr": vae.get("heldout_psnr"),
        "search_mse": search,
        "min_mse_fit": search[best_fit]["mse_fit"],
        "min_mse_holdout": min(v["mse_holdout"] for v in search.values()),
        "best_layer": best_fit,
        "layer": evaluation["layer"],
        "steps": record.get("steps_done"),
        "stitched_psnr": evaluation["heldout_stitched_psnr"],
        "teacher_psnr": evaluation["heldout_teacher_psnr"],
        "stitched_novel_psnr_pred": evaluation.get("heldout_stitched_novel_psnr_pred"),
        "teacher_novel_psnr_pred": evaluation.get("heldout_teacher_novel_psnr_pred"),
        "num_eval_clips": evaluation.get("heldout_num_clips"),
    }


def _fmt(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of ``rows`` and the verdict line."""
    lines = ["| run | VAE | VAE PSNR | min search MSE (fit / hold-out) | layer | steps | stitched PSNR (own views) "
             "| stitched novel PSNR (pred. cameras) | teacher: own / novel |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        teacher = f"{_fmt(r['teacher_psnr'])} / {_fmt(r['teacher_novel_psnr_pred'])}"
        lines.append(
            f"| {r['run']} | {r['vae_family']} | {_fmt(r['vae_heldout_psnr'])} | {_fmt(r['min_mse_fit'], 3)} / "
            f"{_fmt(r['min_mse_holdout'], 3)} | {r['layer']} | {r['steps']} | {_fmt(r['stitched_psnr'])} | "
            f"{_fmt(r['stitched_novel_psnr_pred'])} | {teacher} |")
    return "\n".join(lines) + "\n\n" + verdict(rows)


def verdict(rows: list[dict[str, Any]]) -> str:
    """Whether ordering the VAEs by minimum search MSE (on the fit clips, which rank the layers, and on the search's
    hold-out clips) orders them by stitched novel-view PSNR too."""
    scored = [r for r in rows if r["stitched_novel_psnr_pred"] is not None]
    if len(scored) < 2:
        return "fewer than two runs with a novel-view PSNR: nothing to compare"
    by_psnr = [r["run"] for r in sorted(scored, key=lambda r: -r["stitched_novel_psnr_pred"])]
    lines = [f"order by stitched novel PSNR (high first): {', '.join(by_psnr)}"]
    for key, what in (("min_mse_fit", "fit"), ("min_mse_holdout", "hold-out")):
        by_mse = [r["run"] for r in sorted(scored, key=lambda r: r[key])]
        same = "the same order" if by_mse == by_psnr else "a different order"
        lines.append(f"order by min search MSE on the {what} clips (low first): {', '.join(by_mse)} -> {same}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="stitch output roots (or stitch run folders), one per VAE")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = [row(path) for path in args.runs]
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
