"""``vist3a stitch``: find the stitching layer (``search``) and fine-tune the stitched decoder (``train``)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError

PRESET_HELP = (
    "tiny-random (seconds on a CPU), nano (the shipped nano models), vist3a-1.3b / vist3a-14b (Wan 2.1 VAE + "
    "AnySplat) or a preset .json; sizes come from its stitching block."
)
RECON_TYPES = ("anysplat", "vggt", "mvdust3r")
#: Entries that mark a folder as a stitching run (``--overwrite`` may empty it).
RUN_MARKERS = ("train_config.json", "checkpoint-*", "losses.csv", "final")
#: Synthetic clips rendered for a run at most (each step draws --batch-size of them).
MAX_POOL_CLIPS = 256
VAE_HELP = ("Video VAE: a family (wan2.1, wan2.2, cogvideox, hunyuanvideo, svd, ltx: tiny random under the tiny-random "
            "and nano presets, the family's released VAE otherwise), a Hub repo id or a folder (default: the preset's; "
            "for train, the one its --init search used).")


def _device(device: str | None):
    return options.parse_device(device)


def _check_frame_rule(models, frames: int | None, option: str) -> None:
    """``frames`` against the loaded VAE's frame rule (4n+1 for Wan, 8n+1 for LTX-Video, any for SVD)."""
    if frames is None:
        return
    try:
        models.vae_adapter.check_num_frames(frames)
    except ValueError as exc:
        raise UserInputError(f"{option} {frames}: {exc}") from None


def _check_data(data: str) -> None:
    """``--data``: synthetic, dl3dv:<folder> or a folder, checked before any model loads."""
    if data == "synthetic":
        return
    folder = Path(data.removeprefix("dl3dv:"))
    if not folder.is_dir():
        raise UserInputError(f"--data {data!r}: folder '{folder}' does not exist (use synthetic, dl3dv:<folder> or "
                             "a folder of videos)")


def _check_init(init: Path | None, resume: Path | None, layer: str | None = None) -> None:
    """``--init``, ``--resume`` and ``--layer`` point at what they should, before models load and clips render."""
    if resume is not None and not (resume / "meta.json").is_file():
        raise UserInputError(f"--resume '{resume}' is not a stitching checkpoint (no meta.json); pass "
                             "RUN/checkpoint-<step>")
    if init is None:
        return
    if init.is_file():
        if init.suffix != ".safetensors":
            raise UserInputError(f"--init '{init}' is a file but not a layers/<name>.safetensors fit")
    elif not init.is_dir():
        raise UserInputError(f"--init '{init}' does not exist (a layer-search folder, a layers/<name>.safetensors "
                             "file or a StitchedDecoder folder)")
    elif not ((init / "report.json").is_file() or (init / "config.json").is_file()):
        raise UserInputError(f"--init '{init}' has neither report.json (layer search) nor config.json "
                             "(StitchedDecoder folder)")
    search = (init / "report.json").is_file()
    if layer is not None and search and not (init / "layers" / f"{layer}.safetensors").is_file():
        fitted = sorted(p.stem for p in (init / "layers").glob("*.safetensors"))
        raise UserInputError(f"--layer {layer}: the layer search in '{init}' fitted no such layer; fitted: {fitted}")


def _int_list(text: str | None, option: str) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UserInputError(f"{option} must be comma-separated integers, got {text!r}") from None


RECON_HELP = ("3D model: Hub repo id or local folder (default: preset's); by name: mvdust3r, mvdust3r-plus "
              "(release weights, CC BY-NC 4.0, with --preset vist3a-1.3b; a tiny random one with the nano and "
              "tiny-random presets), tiny-random-mvdust3r[-plus].")


def register(app: typer.Typer) -> None:
    stitch_app = typer.Typer(
        help=(
            "Stitch a 3D reconstruction model onto video-VAE latents: find the best cut layer with a closed-form "
            "fit (search), then fine-tune the stitched decoder against the original model (train).\n\n"
            "Start with:\n\n\b\n  vist3a stitch search --preset tiny-random --num-clips 8 --out runs/search"
        ),
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @stitch_app.command(
        "search",
        help=(
            "Extract VAE latents and DINO-block features of the 3D model on the same clips (resumable), fit a "
            "stitching layer per candidate block by ridge regression, and rank the blocks by MSE. Writes "
            "report.json / report.md, mse.png and layers/<name>.safetensors under --out.\n\n"
            "Examples:\n\n\b\n"
            "  vist3a stitch search --preset nano --num-clips 64 --out runs/search\n"
            "  vist3a stitch search --preset vist3a-1.3b --data dl3dv:/data/DL3DV-10K/1K --num-clips 400 "
            "--device cuda --out runs/search"
        ),
    )
    def _search(
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (features are reused if present)."),
        preset: str = typer.Option("nano", "--preset", help=PRESET_HELP),
        num_clips: int = typer.Option(64, "--num-clips", help="Clips to use (fit + hold-out)."),
        recon: str = typer.Option(None, "--recon", help=RECON_HELP),
        recon_type: str = typer.Option(
            None, "--recon-type", help="anysplat (default), vggt or mvdust3r (with --recon; else the preset's model)."
        ),
        vae: str = typer.Option(None, "--vae", help=VAE_HELP),
        data: str = typer.Option("synthetic", "--data", help="synthetic, dl3dv:<folder>, or a folder of videos."),
        holdout_fraction: float = typer.Option(0.2, "--holdout-fraction", help="Share of clips held out."),
        layers: str = typer.Option(None, "--layers", help="Comma-separated candidates (default: all enc_blocks_k)."),
        spec: str = typer.Option(None, "--spec", help="Stitching spec (default: derived, conv3d_k5x3x3_o<C>_s..)."),
        num_frames: int = typer.Option(None, "--num-frames", help="Frames per clip, by the VAE's rule (4n+1 for Wan)."),
        vae_size: int = typer.Option(None, "--vae-size", help="VAE input size in pixels (default: preset's)."),
        recon_size: int = typer.Option(None, "--recon-size", help="3D model input size (default: preset's)."),
        rank_by: str = typer.Option("fit", "--rank-by", help="fit (as the release) or holdout."),
        batch_size: int = typer.Option(1, "--batch-size", help="Clips per forward pass during extraction."),
        seed: int = typer.Option(0, "--seed", help="Seed of the data and of the posterior samples."),
        device: str = options.device_option(),
    ) -> None:
        from vist3a.stitching.models import resolve_clips, resolve_stitch_models
        from vist3a.stitching.search import SearchConfig, run_layer_search

        options.check_int_range(num_frames, "--num-frames", 1)  # the VAE's frame rule: checked once it is loaded
        options.check_int_range(num_clips, "--num-clips", 1)
        options.check_int_range(batch_size, "--batch-size", 1)
        options.check_finite(holdout_fraction, "--holdout-fraction", 0.0)
        options.check_choice(rank_by, ("fit", "holdout"), "--rank-by")
        options.check_choice(recon_type, RECON_TYPES, "--recon-type")
        options.check_seed(seed)
        for option, value in (("--vae-size", vae_size), ("--recon-size", recon_size)):
            options.check_int_range(value, option, 1)
        _check_data(data)
        if out.exists() and not out.is_dir():
            raise UserInputError(f"--out '{out}' is a file; the search writes a folder")
        options.check_writable(out)
        dev = _device(device)
        models = resolve_stitch_models(preset, recon, vae, recon_type, vae_size, recon_size, num_frames, spec, seed,
                                       dev)
        _check_frame_rule(models, num_frames, "--num-frames")
        try:
            config = SearchConfig(
                spec=models.spec, num_clips=num_clips, num_frames=models.num_frames, vae_size=models.vae_size,
                recon_size=models.recon_size, layers=tuple(layers.split(",")) if layers else None,
                holdout_fraction=holdout_fraction, rank_by=rank_by, batch_size=batch_size, seed=seed,
                resample_hw=models.resample_hw,
            )
        except ValueError as exc:
            raise UserInputError(str(exc)) from None
        clips = resolve_clips(data, num_clips, models.num_frames, max(models.vae_size, models.recon_size), seed)
        sources = {**models.sources, "preset": preset, "data": data}
        report = run_layer_search(clips, models.vae, models.recon, models.adapter, out, config, sources)
        best = report.layers[report.best_layer]
        typer.echo(f"{report.vae['family']} VAE x {models.adapter.name}: best layer {report.best_layer}: "
                   f"MSE fit {best['mse_fit']:.4g}"
                   + (f", hold-out {best['mse_holdout']:.4g}" if best["mse_holdout"] is not None else "")
                   + f" -> {out / 'report.json'}")

    @stitch_app.command(
        "train",
        help=(
            "Fine-tune the stitched decoder (stitching layer + LoRA + special tokens) to reproduce the original 3D "
            "model, starting from a layer-search folder. Checkpoints go to RUN/checkpoint-<step>/, the final "
            "decoder to RUN/final/, losses to RUN/losses.csv and losses.png.\n\n"
            "Examples:\n\n\b\n"
            "  vist3a stitch train --preset nano --init runs/search --max-steps 2000 --out runs/stitch\n"
            "  vist3a stitch train --preset nano --init runs/search --max-steps 2000 --out runs/stitch "
            "--time-budget 3600\n"
            "  vist3a stitch train --preset nano --init runs/search --max-steps 2000 --out runs/stitch "
            "--resume runs/stitch/checkpoint-500"
        ),
    )
    def _train(
        out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
        init: Path = typer.Option(
            None, "--init", help="Layer-search folder, a layers/<name>.safetensors file, or a StitchedDecoder folder."
        ),
        max_steps: int = typer.Option(..., "--max-steps", help="Optimizer steps of the whole run."),
        preset: str = typer.Option("nano", "--preset", help=PRESET_HELP),
        resume: Path = typer.Option(None, "--resume", help="RUN/checkpoint-<step> to continue from."),
        checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Checkpoint interval in steps."),
        time_budget: float = typer.Option(
            None, "--time-budget",
            help="Wall-clock seconds for this call: stops cleanly (checkpoint + final decoder) once the next step "
                 "would overrun it; continue with --resume.",
        ),
        layer: str = typer.Option(None, "--layer", help="Layer to stitch at (default: the search's best)."),
        recon: str = typer.Option(None, "--recon", help=RECON_HELP),
        recon_type: str = typer.Option(
            None, "--recon-type", help="anysplat (default), vggt or mvdust3r (with --recon; else the preset's model)."
        ),
        vae: str = typer.Option(None, "--vae", help=VAE_HELP),
        data: str = typer.Option("synthetic", "--data", help="synthetic, dl3dv:<folder>, or a folder of videos."),
        num_clips: int = typer.Option(
            None, "--num-clips",
            help=f"Synthetic clips, rendered once (with the most --views frames) into memory and drawn from: "
                 f"num-clips x frames x 3 x size^2 bytes (default: what the run draws, at most {MAX_POOL_CLIPS}).",
            show_default=False,
        ),
        views: str = typer.Option(None, "--views", help="Views per clip to draw from, e.g. 9,13,17,21."),
        batch_size: int = typer.Option(None, "--batch-size", help="Clips per step and GPU (default: 12, CPU: 1)."),
        lr: float = typer.Option(2e-4, "--lr", help="Peak learning rate (AdamW)."),
        warmup_steps: int = typer.Option(None, "--warmup-steps", help="Default: 500, at most 10% of --max-steps."),
        lora_rank: int = typer.Option(64, "--lora-rank", help="LoRA rank on every Linear/Conv2d of the tail."),
        lora_alpha: float = typer.Option(32.0, "--lora-alpha", help="LoRA alpha."),
        vae_size: int = typer.Option(None, "--vae-size", help="VAE input size in pixels (default: preset's)."),
        recon_size: int = typer.Option(None, "--recon-size", help="3D model input size (default: preset's)."),
        seed: int = typer.Option(0, "--seed", help="Seed of everything random."),
        device: str = options.device_option(),
        overwrite: bool = options.overwrite_option("Start afresh in an --out that holds another run (deletes it)."),
    ) -> None:
        from vist3a.stitching.models import resolve_clips, resolve_stitch_models
        from vist3a.stitching.train import (
            StitchTrainConfig,
            build_student,
            init_model_args,
            read_run_init,
            train_stitched,
        )

        # 1. everything that needs no model: paths, the run folder, numbers
        _check_init(init, resume, layer)
        if init is None:
            if resume is None:
                raise UserInputError("--init is required (a layer-search folder), unless --resume names a checkpoint")
            init = read_run_init(resume)
            _check_init(init, None, layer)
        options.check_run_dir(out, resume, overwrite, RUN_MARKERS)
        options.check_int_range(max_steps, "--max-steps", 1)
        options.check_int_range(num_clips, "--num-clips", 1)
        options.check_int_range(batch_size, "--batch-size", 1)
        options.check_finite(lr, "--lr", 0.0)
        options.check_finite(time_budget, "--time-budget", 0.0)
        options.check_choice(recon_type, RECON_TYPES, "--recon-type")
        options.check_seed(seed)
        view_list = _int_list(views, "--views")
        for count in view_list or ():
            options.check_int_range(count, "--views", 1)  # the VAE's frame rule is checked once it is loaded
        _check_data(data)
        searched = init_model_args(init)  # default to the models the layer search used
        vae, recon = vae or searched.get("vae"), recon or searched.get("recon")
        dev = _device(device)
        # 2. models and the student (which checks --init against --layer), then the clips it trains on
        models = resolve_stitch_models(preset, recon, vae, recon_type, vae_size, recon_size, None, None, seed, dev)
        for count in view_list or ():
            _check_frame_rule(models, count, "--views")
        try:
            config = StitchTrainConfig(
                max_steps=max_steps, lr=lr, warmup_steps=warmup_steps,
                batch_size=batch_size or (12 if dev.type == "cuda" else 1),
                view_choices=view_list or models.view_choices, vae_size=models.vae_size,
                recon_size=models.recon_size, lora_rank=lora_rank, lora_alpha=lora_alpha,
                checkpoint_every=checkpoint_every, seed=seed, time_budget_s=time_budget,
            )
        except ValueError as exc:
            raise UserInputError(str(exc)) from None
        decoder = build_student(models.recon, init, config, layer, models.temporal_factor)
        if num_clips is None:  # a pool the size of what the run draws: --max-steps 2 renders 2 batches, not 256 clips
            num_clips = min(MAX_POOL_CLIPS, max_steps * config.batch_size)
        if overwrite:
            options.clear_run_dir(out)
        clips = resolve_clips(data, num_clips, max(config.view_choices), max(models.vae_size, models.recon_size),
                              seed, render_once=True, device=dev)
        sources = {**models.sources, "preset": preset, "data": data, "init": str(init)}
        result = train_stitched(decoder, models.recon, models.vae, clips, out, config, resume, dev, sources)
        if result.final_dir is not None:  # the main process (one line per run, also with several GPUs)
            last = result.history[-1]["loss"] if result.history else float("nan")
            stopped = "" if result.stopped_by == "steps" else f" (stopped by {result.stopped_by.replace('_', ' ')})"
            typer.echo(f"step {result.step}{stopped}: loss {last:.4g}; decoder -> {result.final_dir}")

    app.add_typer(stitch_app, name="stitch")
