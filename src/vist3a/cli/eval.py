"""``vist3a eval``: the paper's benchmarks, one command per table (thin wrappers over :mod:`vist3a.benchmark`)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError

TEXT3D_HELP = """Text-to-3DGS quality on a prompt suite (the paper's Tables 1, 2, 6).

Generates one scene per prompt (seed SEED + index), renders 8 views evenly spaced on its fly-through path and
scores them; writes OUT/results.json, OUT/results.md (the paper's table layout and reference rows) and
OUT/contact_sheet.png. Resumable: rerun the same command after an interruption and finished prompts are kept.

Real presets score imaging, aesthetic, CLIP and consistency, plus UnifiedReward-Qwen-7B's alignment / coherence /
style ratings when that judge is at hand (in the Hugging Face cache, or --metric-model unifiedreward=FOLDER), and on
--suite dpg the DPG-Bench score when --dpg-questions names the question file too.

The judge is asked in vist3a's own words, which differ from the VIST3A release's; judge ratings depend on the
wording, so for numbers comparable with the paper pass the release's question texts as template files with
--judge-prompt ({caption} where the prompt goes) and --dpg-prompt ({question} where the question goes). The wording
used (builtin or the file's sha256) is recorded in results.json.

Examples:

\b
  vist3a eval text3d --suite scenebench --preset nano --limit 8 --out runs/eval/scenebench-nano
  vist3a eval text3d --suite t3bench --preset vist3a-1.3b --out runs/eval/t3 --device cuda
  accelerate launch --num_processes 8 $(which vist3a) eval text3d --suite t3bench --preset vist3a-14b --out runs/t3
  vist3a eval text3d --suite dpg --preset vist3a-1.3b --dpg-questions dpg_bench_sampled_answers.csv --out runs/dpg
"""


def _parse_sources(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UserInputError(f"--metric-model expects NAME=PATH (e.g. clip=/models/clip-b16), got {item!r}")
        out[name] = value
    return out


def _device(device: str | None) -> str | None:
    """``--device`` checked by the shared rule; ``auto`` -> ``None`` (the runners pick, one GPU per rank)."""
    if device is None or device == "auto":
        return None
    return str(options.parse_device(device))


def _out_folder(out: Path | None) -> Path | None:
    """An output folder the command writes into (and reuses): not a file, and writable, checked up front."""
    if out is not None:
        if out.exists() and not out.is_dir():
            raise UserInputError(f"--out '{out}' is an existing file; the results go into a folder")
        options.check_writable(out)
    return out


def _echo_summary(summary: dict) -> None:
    for key, value in summary.items():
        if isinstance(value, dict):
            for k, v in value.items():
                typer.echo(f"{key}.{k}: {v:.4g}" if isinstance(v, float) else f"{key}.{k}: {v}")
        else:
            typer.echo(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


def direction_option() -> str | None:
    """``--direction`` of ``eval nvs`` / ``eval geometry`` (``None``: the preset's default, as generate has it)."""
    return typer.Option(
        None, "--direction", help="For decoders trained on one turning direction. as-is | motion: decode a clip's "
        "mirror image instead when its image motion says it turns clockwise | mirror-select: decode both and keep "
        "the pass whose splats render held-out views better. A mirror pass is mapped back to the clip's frame; no "
        "ground truth is used. Applies to every compared decoder. Default: the preset's, as for vist3a generate "
        "(motion for nano, nano-vggt and nano-mvdust3r, as-is for the others)."
    )


def _direction(direction: str | None) -> str | None:
    from vist3a.recon.direction import DIRECTIONS

    return options.check_choice(direction, DIRECTIONS, "--direction")


def register(app: typer.Typer) -> None:
    eval_app = typer.Typer(help="The paper's benchmarks: text3d (Tables 1, 2, 6), nvs (Table 3), geometry (Table 5).",
                           no_args_is_help=True, rich_markup_mode=None)

    @eval_app.command("text3d", help=TEXT3D_HELP)
    def text3d_cmd(
        out: Path = options.out_option("output folder (reused to resume)"),
        suite: str = typer.Option("scenebench", "--suite", help="t3bench | scenebench | dpg | nano | a prompts file"),
        preset: str = options.preset_option(help="pipeline preset (as for vist3a generate)"),
        lora: Path | None = typer.Option(None, "--lora", help="extra generator LoRA folder"),
        limit: int | None = typer.Option(None, "--limit", help="evaluate only the first N prompts"),
        seed: int = typer.Option(0, "--seed", help="prompt i uses SEED + i"),
        steps: int | None = typer.Option(None, "--steps", "--num-inference-steps",
                                         help="sampling steps (default: the preset's)"),
        cfg_scale: float | None = typer.Option(None, "--cfg", "--guidance-scale",
                                               help="guidance scale (default: the preset's)"),
        num_views: int = typer.Option(8, "--num-views", help="scored views per scene"),
        refine: int = typer.Option(0, "--refine", help="per-scene refinement steps before scoring (0: none)"),
        metrics: str | None = typer.Option(
            None, "--metrics", help="comma-separated: imaging, aesthetic, clip, longclip, unifiedreward, dpg, "
            "consistency (real presets), clip_nano (nano), clip_tiny (tiny-random); default: the preset's set"
        ),
        metric_model: list[str] = typer.Option(
            [], "--metric-model", help="NAME=PATH: a local folder or hub id for a metric model (repeatable; NAME: "
            "imaging, aesthetic, clip, longclip, unifiedreward, dpg)"
        ),
        dpg_questions: Path | None = typer.Option(
            None, "--dpg-questions", help="DPG-Bench's question CSV for the dpg metric (default: "
            "$VIST3A_DPG_QUESTIONS)"
        ),
        judge_prompt: Path | None = typer.Option(
            None, "--judge-prompt", help="text file with the UnifiedReward question's wording, {caption} where the "
            "prompt goes (default: $VIST3A_JUDGE_PROMPT, else vist3a's own wording)"
        ),
        dpg_prompt: Path | None = typer.Option(
            None, "--dpg-prompt", help="text file with the DPG-Bench question's wording, {question} where the "
            "question goes (default: $VIST3A_DPG_PROMPT, else vist3a's own wording)"
        ),
        device: str = options.device_option(),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        from vist3a.benchmark.text3d import Text3DConfig, evaluate_text3d

        dev = _device(device)
        options.check_int_range(limit, "--limit", 1)
        options.check_int_range(steps, "--steps", 1)
        options.check_finite(cfg_scale, "--cfg", 0.0)
        options.check_int_range(num_views, "--num-views", 1)
        options.check_int_range(refine, "--refine", 0)
        options.check_seed(seed)
        _out_folder(out)
        for name in ("vist3a.benchmark", "vist3a.evaluation"):  # the runner, and the refinement it may run
            logging.getLogger(name).setLevel(logging.INFO)
        names = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None
        cfg = Text3DConfig(suite=suite, preset=preset, lora=str(lora) if lora else None, limit=limit, seed=seed,
                           num_steps=steps, guidance_scale=cfg_scale, num_views=num_views, refine_steps=refine,
                           metrics=names, metric_sources=_parse_sources(metric_model),
                           dpg_questions=str(dpg_questions) if dpg_questions else None,
                           judge_prompt=str(judge_prompt) if judge_prompt else None,
                           dpg_prompt=str(dpg_prompt) if dpg_prompt else None, progress=not quiet)
        summary = evaluate_text3d(cfg, out, dev)
        if summary is None:
            typer.echo("this rank's prompts are done; the last rank to finish writes the results")
            return
        _echo_summary(summary)
        typer.echo(f"wrote {out}/results.json, results.md, contact_sheet.png")

    @eval_app.command("nvs")
    def nvs_cmd(
        data: str = typer.Option("nano", "--data", help="nano | re10k:DIR (pixelSplat chunks) | dl3dv:DIR | "
                                 "7scenes:DIR | eth3d:DIR | scannet:DIR (release layouts, docs/evaluation.md)"),
        preset: str = options.preset_option(help="preset whose decoders are compared"),
        compare: str = typer.Option(
            "original", "--compare", help="decoders beside the stitched one: 'original' or 'none'"
        ),
        num_clips: int = typer.Option(8, "--num-clips", help="clips (sequences) evaluated"),
        context: int = typer.Option(9, "--context", help="context views per clip (4k+1 for the stitched decoder)"),
        targets: int = typer.Option(4, "--targets", help="target views per clip"),
        lpips: bool = typer.Option(False, "--lpips", help="also LPIPS (VGG; needs torchmetrics and its weights)"),
        seed: int = typer.Option(0, "--seed", help="seeds the nano clips / the frame windows"),
        direction: str | None = direction_option(),
        out: Path | None = options.out_option("also write nvs.json and nvs.md here", required=False),
        device: str = options.device_option(),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Novel-view synthesis of the stitched vs the original decoder on the same clips (Table 3)."""
        from vist3a.benchmark.nvs import NVSConfig, evaluate_nvs, nvs_markdown

        dev = _device(device)
        options.check_seed(seed)
        _direction(direction)
        _out_folder(out)
        cfg = NVSConfig(data=data, preset=preset, decoders=_decoders(compare), num_clips=_positive(num_clips),
                        num_frames=max(13, context + targets), num_context=context, num_targets=targets, lpips=lpips,
                        seed=seed, direction=direction, progress=not quiet)
        result = evaluate_nvs(cfg, dev)
        _report(result, nvs_markdown(result), out, "nvs")

    @eval_app.command("geometry")
    def geometry_cmd(
        data: str = typer.Option("nano", "--data", help="nano | 7scenes:DIR | eth3d:DIR | scannet:DIR (release "
                                 "layouts, with depth) | re10k:DIR | dl3dv:DIR (cameras only)"),
        preset: str = options.preset_option(help="preset whose decoders are compared"),
        compare: str = typer.Option("original", "--compare", help="decoders beside the stitched one: original|none"),
        num_clips: int = typer.Option(8, "--num-clips", help="clips evaluated"),
        frames: int = typer.Option(13, "--num-frames", "--frames",
                                   help="views per clip (4k+1 for the stitched decoder)"),
        seed: int = typer.Option(0, "--seed", help="seeds the nano clips / the frame windows"),
        keyframe_every: int | None = typer.Option(
            None, "--keyframe-every", help="7scenes / eth3d / scannet: spread the views over every N-th frame "
            "(default: 7scenes and eth3d every frame, scannet every 3rd of the first 270)"
        ),
        direction: str | None = direction_option(),
        out: Path | None = options.out_option("also write geometry.json and geometry.md here", required=False),
        device: str = options.device_option(),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Camera (RRA/RTA/AUC, ATE/RPE) and pointmap (Acc/Comp/NC) quality of the decoders (Table 5)."""
        from vist3a.benchmark.geometry import GeometryConfig, evaluate_geometry, geometry_markdown

        dev = _device(device)
        options.check_frames(frames, "--num-frames")
        options.check_seed(seed)
        options.check_int_range(keyframe_every, "--keyframe-every", 1)
        _direction(direction)
        _out_folder(out)
        cfg = GeometryConfig(data=data, preset=preset, decoders=_decoders(compare), num_clips=_positive(num_clips),
                             num_frames=frames, seed=seed, keyframe_every=keyframe_every, direction=direction,
                             progress=not quiet)
        result = evaluate_geometry(cfg, dev)
        _report(result, geometry_markdown(result), out, "geometry")

    app.add_typer(eval_app, name="eval")


def _positive(value: int) -> int:
    if value < 1:
        raise UserInputError(f"--num-clips must be >= 1, got {value}")
    return value


def _decoders(compare: str) -> tuple[str, ...]:
    if compare not in ("original", "none"):
        raise UserInputError(f"--compare must be 'original' or 'none', got {compare!r}")
    return ("stitched", "original") if compare == "original" else ("stitched",)


def _report(result: dict, markdown: str, out: Path | None, name: str) -> None:
    """Print the table; with --out also write NAME.json and NAME.md (atomically)."""
    import json

    from vist3a.io_utils import atomic_path

    typer.echo(markdown, nl=False)
    if out is not None:
        with atomic_path(out / f"{name}.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2))
        with atomic_path(out / f"{name}.md") as tmp:
            tmp.write_text(markdown)
        typer.echo(f"wrote {out}/{name}.json and {name}.md")
