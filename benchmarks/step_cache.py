"""Step caching on the trained nano generator (CPU): how far cached scenes land from uncached ones, and their cost.

Settings, each over the same ``--prompts`` held-out prompts of the nano world (scene ``i`` from seed ``i``, one
scene per pipeline call as ``vist3a generate`` makes them, the nano preset's 20 steps and ``mirror-select``):

- ``none``: the uncached reference;
- ``none, seeds +1000``: uncached with other seeds, the scale of *unrelated* scenes and of R-precision's seed noise;
- ``none, N steps`` (``--fewer-steps``): uncached with fewer steps, the plain way to spend less compute;
- ``first-block`` and ``mag`` at each of ``--first-block`` / ``--mag`` thresholds (``mag`` uses ratios measured
  once, on a prompt outside the set, before its first setting).

Per scene, against the uncached reference: PSNR of the 13 decoded frames (the whole video, one MSE); PSNR of the
renders of the scene's Gaussians at its own predicted cameras of ``--views`` evenly spaced frames (what ``vist3a nano
eval`` scores) against the reference's renders of the same frames; CLIP-R-precision with the evaluation image-text
model (top-1 of 10 one-attribute candidates, on renders and on decoded frames); the share of transformer block runs
skipped (a hook on each block's feed-forward counts the runs) and of steps whose last block was skipped; whether
``mirror-select`` kept the other pass than the reference did; the scene's own render-vs-frame PSNR (3D consistency,
as ``vist3a nano eval`` reports it); CPU seconds
(``time.process_time``, all threads, the pipeline call only) and the ``denoise`` stage's wall seconds.

    python benchmarks/step_cache.py --out step_cache.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def block_counter(transformer: torch.nn.Module) -> list[int]:
    """A list that counts, per transformer block, the runs of its feed-forward (a skipped block never reaches it)."""
    counts = [0] * len(transformer.blocks)
    for i, block in enumerate(transformer.blocks):
        block.ffn.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


def run_scene(pipe: Any, prompt: str, seed: int, counts: list[int], steps: int | None, views: list[int]) -> dict:
    """One scene: frames, renders of ``views`` at its predicted cameras, block runs and times."""
    from vist3a.evaluation.views import render_predicted_views

    counts[:] = [0] * len(counts)
    cpu, wall = time.process_time(), time.perf_counter()
    scene = pipe(prompt, generator=torch.Generator().manual_seed(seed), progress=False, num_inference_steps=steps)[0]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"frames": scene.frames.float(), "renders": render_predicted_views(scene, views, "torch"),
            "counts": list(counts), "cpu_s": cpu, "wall_s": wall, "denoise_s": scene.timings["denoise"],
            "mirrored": scene.settings.get("direction_choice", {}).get("decoded") == "mirror image"}


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two image tensors in [0, 1] over all their values (one MSE); 100 dB when equal."""
    mse = float((a.clamp(0, 1) - b.clamp(0, 1)).square().mean())
    return 100.0 if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()


def settings_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = [{"name": "none"}, {"name": "none, seeds +1000", "seed_offset": 1000}]
    rows += [{"name": f"none, {n} steps", "steps": n} for n in args.fewer_steps]
    rows += [{"name": f"first-block {t:g}", "kind": "first-block", "threshold": t} for t in args.first_block]
    rows += [{"name": f"mag {t:g}", "kind": "mag", "threshold": t} for t in args.mag]
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--first-block", type=float, nargs="*", default=[0.05, 0.1, 0.2])
    parser.add_argument("--mag", type=float, nargs="*", default=[0.06, 0.12, 0.25])
    parser.add_argument("--fewer-steps", type=int, nargs="*", default=[10, 13])
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--calibration-prompt", default="a red cube left of a blue sphere")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from vist3a.evaluation.metrics import prompt_scores, top1_hit
    from vist3a.evaluation.prompts import heldout_compositions, r_precision_prompts
    from vist3a.evaluation.views import evenly_spaced
    from vist3a.nano.provider import nano_clip_scorer
    from vist3a.pipeline import Text2ScenePipeline

    pipe = Text2ScenePipeline.from_pretrained("nano", device="cpu")
    scorer = nano_clip_scorer("clip_eval", "cpu", text_encoder=pipe.generator.text_encoder)
    counts = block_counter(pipe.generator.transformer)
    candidates = [r_precision_prompts(c) for c in heldout_compositions(args.prompts, 0)]
    defaults = pipe.settings()
    views = evenly_spaced(defaults.num_frames, args.views)
    results: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "threads":
                               torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
                               "prompts": [c[0] for c in candidates], "num_steps": defaults.num_steps, "settings": []}
    reference: list[dict] = []
    mag_ratios = None
    for setting in settings_list(args):
        kind = setting.get("kind")
        if kind == "mag" and mag_ratios is None:  # measure the ratios once, on a prompt outside the set
            pipe.enable_step_cache("mag")
            pipe(args.calibration_prompt, generator=torch.Generator().manual_seed(10_000), progress=False)
            mag_ratios = pipe.step_cache.options["mag_ratios"]
            results["mag_ratios"] = mag_ratios
        if kind is None:
            pipe.disable_step_cache()
        else:
            pipe.enable_step_cache(kind, setting["threshold"], **({"mag_ratios": mag_ratios} if kind == "mag" else {}))
        steps = setting.get("steps", defaults.num_steps)
        is_reference = setting["name"] == "none"
        rows = []
        for i, prompts in enumerate(candidates):
            scene = run_scene(pipe, prompts[0], i + setting.get("seed_offset", 0), counts, steps, views)
            hits = {source: top1_hit(prompt_scores(scorer, images, prompts).cpu())
                    for source, images in (("rendered", scene["renders"]), ("decoded", scene["frames"][views]))}
            row = {"prompt": prompts[0], "hit_rendered": hits["rendered"], "hit_decoded": hits["decoded"],
                   "block_runs_skipped": 1 - sum(scene["counts"]) / (steps * len(scene["counts"])),
                   "steps_skipped": 1 - scene["counts"][-1] / steps,
                   "consistency_psnr": psnr_db(scene["renders"], scene["frames"][views]),
                   **{k: scene[k] for k in ("cpu_s", "wall_s", "denoise_s", "mirrored")}}
            if is_reference:
                reference.append({**scene, "hit_rendered": row["hit_rendered"]})
            else:
                ref = reference[i]
                row.update(frames_psnr=psnr_db(scene["frames"], ref["frames"]),
                           renders_psnr=psnr_db(scene["renders"], ref["renders"]),
                           hit_rendered_changed=row["hit_rendered"] != ref["hit_rendered"],
                           mirror_choice_changed=row["mirrored"] != ref["mirrored"])
            rows.append(row)
        summary = summarise(setting["name"], rows)
        results["settings"].append({**setting, "summary": summary, "per_prompt": rows})
        print(json.dumps(summary), flush=True)
        if args.out:  # after every setting, so that a stopped run keeps what it measured
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)
    return results


def summarise(name: str, rows: list[dict]) -> dict[str, Any]:
    mean = lambda key: statistics.fmean(r[key] for r in rows)
    out = {"setting": name, "scenes": len(rows), "r_precision_rendered": mean("hit_rendered"),
           "r_precision_decoded": mean("hit_decoded"), "block_runs_skipped": mean("block_runs_skipped"),
           "steps_skipped": mean("steps_skipped"), "consistency_psnr": mean("consistency_psnr"),
           "cpu_s": mean("cpu_s"), "wall_s": mean("wall_s"),
           "denoise_s": mean("denoise_s")}
    if "frames_psnr" in rows[0]:
        out.update(frames_psnr_mean=mean("frames_psnr"), frames_psnr_min=min(r["frames_psnr"] for r in rows),
                   renders_psnr_mean=mean("renders_psnr"), renders_psnr_min=min(r["renders_psnr"] for r in rows),
                   hit_rendered_changed=sum(r["hit_rendered_changed"] for r in rows),
                   mirror_choice_changed=sum(r["mirror_choice_changed"] for r in rows))
        same = [r["renders_psnr"] for r in rows if not r["mirror_choice_changed"]]
        out["renders_psnr_same_choice_mean"] = statistics.fmean(same) if same else None
    return out


def print_table(results: dict[str, Any]) -> None:
    print("| setting | block runs skipped | steps skipped | frames PSNR dB (mean / min) | renders PSNR dB (mean / min) "
          "| renders PSNR, same mirror choice | mirror choice changed | R-prec. renders | R-prec. frames "
          "| hits changed | render-vs-frame PSNR | CPU s / scene | denoise s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for setting in results["settings"]:
        s = setting["summary"]
        psnr = lambda key, s=s: f"{s[key + '_mean']:.1f} / {s[key + '_min']:.1f}" if key + "_mean" in s else "—"
        same = s.get("renders_psnr_same_choice_mean")
        print(f"| {s['setting']} | {s['block_runs_skipped']:.0%} | {s['steps_skipped']:.0%} | {psnr('frames_psnr')} | "
              f"{psnr('renders_psnr')} | {'—' if same is None else f'{same:.1f}'} | "
              f"{s.get('mirror_choice_changed', '—')} | {s['r_precision_rendered']:.3f} | "
              f"{s['r_precision_decoded']:.3f} | {s.get('hit_rendered_changed', '—')} | {s['consistency_psnr']:.1f} | "
              f"{s['cpu_s']:.2f} | {s['denoise_s']:.2f} |")


if __name__ == "__main__":
    main()
