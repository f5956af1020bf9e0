"""``vist3a stitch``: find the stitching layer (``search``) and fine-tune the stitched decoder (``train``)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.errors import UserInputError

PRESET_HELP = (
    "tiny-random (seconds on a CPU), nano (the shipped nano models), vist3a-1.3b / vist3a-14b (Wan 2.1 VAE + "
    "AnySplat) or a preset .json; sizes come from its stitching block."
)
VAE_HELP = ("Video VAE: a family (wan2.1, wan2.2, cogvideox, hunyuanvideo, svd, ltx: tiny random under the tiny-random "
            "and nano presets, the family's released VAE otherwise), a Hub repo id or a folder (default: the preset's; "
            "for train, the one its --init search used).")
RECON_HELP = ("3D model: anysplat or vggt (the preset's size), a Hub repo id or a local folder (default: the "
              "preset's).")


def _device(device: str | None):
    import torch

    try:
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    except RuntimeError as exc:
        raise UserInputError(f"--device {device!r} is not a valid torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"--device {device!r} asks for CUDA, but no CUDA device is available")
    return dev


def _int_list(text: str | None, option: str) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UserInputError(f"{option} must be comma-separated integers, got {text!r}") from None


def register(app: typer.Typer) -> None:
    stitch_app = typer.Typer(
        help=(
            "Stitch a 3D reconstruction model onto video-VAE latents: find the best cut layer with a closed-form "
            "fit (search), then fine-tune the stitched decoder against the original model (train).\n\n"
            "Start with:  vist3a stitch search --preset tiny-random --num-clips 8 --out runs/search"
        ),
        no_args_is_help=True,
    )

    @stitch_app.command(
        "search",
        help=(
            "Extract VAE latents and DINO-block features of the 3D model on the same clips (resumable), fit a "
            "stitching layer per candidate block by ridge regression, and rank the blocks by MSE. Writes "
            "report.json / report.md, mse.png and layers/<name>.safetensors under --out.\n\n"
            "Examples:\n\n"
            "  vist3a stitch search --preset nano --num-clips 64 --out runs/search\n\n"
            "  vist3a stitch search --preset vist3a-1.3b --data dl3dv:/data/DL3DV-10K/1K --num-clips 400 "
            "--device cuda --out runs/search"
        ),
    )
    def _search(
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (features are reused if present)."),
        preset: str = typer.Option("nano", "--preset", help=PRESET_HELP),
        num_clips: int = typer.Option(64, "--num-clips", help="Clips to use (fit + hold-out)."),
        recon: str = typer.Option(None, "--recon", help=RECON_HELP),
        recon_type: str = typer.Option("anysplat", "--recon-type", help="anysplat or vggt (with --recon)."),
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
        device: str = typer.Option(None, "--device", help="cuda, cpu, cuda:1 ... (default: cuda if available)."),
    ) -> None:
        from vist3a.stitching.models import resolve_clips, resolve_stitch_models
        from vist3a.stitching.search import SearchConfig, run_layer_search

        dev = _device(device)
        models = resolve_stitch_models(preset, recon, vae, recon_type, vae_size, recon_size, num_frames, spec, seed,
                                       dev)
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
            "Examples:\n\n"
            "  vist3a stitch train --preset nano --init runs/search --max-steps 2000 --out runs/stitch\n\n"
            "  vist3a stitch train --preset nano --init runs/search --max-steps 2000 --out runs/stitch "
            "--time-budget 3600\n\n"
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
        recon_type: str = typer.Option("anysplat", "--recon-type", help="anysplat or vggt (with --recon)."),
        vae: str = typer.Option(None, "--vae", help=VAE_HELP),
        data: str = typer.Option("synthetic", "--data", help="synthetic, dl3dv:<folder>, or a folder of videos."),
        num_clips: int = typer.Option(
            256, "--num-clips",
            help="Synthetic clips, rendered once (with the most --views frames) into memory and drawn from: "
                 "num-clips x frames x 3 x size^2 bytes.",
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
        device: str = typer.Option(None, "--device", help="cuda, cpu ... (default: cuda if available)."),
    ) -> None:
        from vist3a.stitching.models import resolve_clips, resolve_stitch_models
        from vist3a.stitching.train import (
            StitchTrainConfig,
            build_student,
            init_model_args,
            read_run_init,
            train_stitched,
        )

        if init is None:
            if resume is None:
                raise UserInputError("--init is required (a layer-search folder), unless --resume names a checkpoint")
            init = read_run_init(resume)
        searched = init_model_args(init)  # default to the models the layer search used
        vae, recon = vae or searched.get("vae"), recon or searched.get("recon")
        dev = _device(device)
        models = resolve_stitch_models(preset, recon, vae, recon_type, vae_size, recon_size, None, None, seed, dev)
        try:
            config = StitchTrainConfig(
                max_steps=max_steps, lr=lr, warmup_steps=warmup_steps,
                batch_size=batch_size or (12 if dev.type == "cuda" else 1),
                view_choices=_int_list(views, "--views") or models.view_choices, vae_size=models.vae_size,
                recon_size=models.recon_size, lora_rank=lora_rank, lora_alpha=lora_alpha,
                checkpoint_every=checkpoint_every, seed=seed, time_budget_s=time_budget,
            )
        except ValueError as exc:
            raise UserInputError(str(exc)) from None
        clips = resolve_clips(data, num_clips, max(config.view_choices), max(models.vae_size, models.recon_size),
                              seed, render_once=True, device=dev)
        decoder = build_student(models.recon, init, config, layer, models.temporal_factor)
        sources = {**models.sources, "preset": preset, "data": data, "init": str(init)}
        result = train_stitched(decoder, models.recon, models.vae, clips, out, config, resume, dev, sources)
        if result.final_dir is not None:  # the main process (one line per run, also with several GPUs)
            last = result.history[-1]["loss"] if result.history else float("nan")
            stopped = "" if result.stopped_by == "steps" else f" (stopped by {result.stopped_by.replace('_', ' ')})"
            typer.echo(f"step {result.step}{stopped}: loss {last:.4g}; decoder -> {result.final_dir}")

    app.add_typer(stitch_app, name="stitch")
