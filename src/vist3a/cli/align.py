"""``vist3a align``: reward alignment of the video generator (thin wrapper over :mod:`vist3a.alignment`)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.errors import UserInputError

HELP = (
    "Reward-align the video generator: train a LoRA on the Wan transformer with a flow-matching loss on "
    "captioned multi-view clips plus rewards on full text-to-3D rollouts (image-text quality of decoded frames "
    "and of renders of the stitched decoder's Gaussians, optionally 3D consistency).\n\n"
    "Examples:\n\n"
    "  vist3a align --preset nano --prompts prompts.txt --max-steps 200 --out runs/align\n\n"
    "  vist3a align --preset tiny-random --prompts prompts.txt --max-steps 2 --out /tmp/run "
    "--min-steps 2 --max-rollout-steps 3\n\n"
    "  vist3a align --preset nano --prompts prompts.txt --max-steps 400 --out runs/align "
    "--resume runs/align/checkpoint-200\n\n"
    "Writes RUN/checkpoint-<step>/ (lora/, lora_ema/, training_state.pt, meta.json) every --checkpoint-every "
    "steps and at the end, RUN/logs/metrics.csv and decoded-vs-rendered PNGs in RUN/logs/images/. Use the EMA "
    "weights for generation: vist3a generate --lora RUN/checkpoint-<step>/lora_ema. The prompts file has one "
    "prompt per line ('#' comments and blank lines are skipped). --reward-mix: 'release' (PickScore + DFN-CLIP), "
    "'paper' (DFN-CLIP + HPSv2.1 + consistency), 'nano' (the nano image-text model + consistency), or a JSON "
    "list of terms / a JSON file; the real scorers need "
    "the 'rewards' extra of vist3a (open_clip_torch, lpips), the nano and tiny-random presets use their own "
    "image-text model. Several GPUs: accelerate launch -m vist3a.cli.main align ... "
    "(FSDP for 14B via `accelerate config`)."
)


def _resolve_device(device: str):
    import torch

    if device == "auto":
        return None
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserInputError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {device}: no CUDA device is available; use --device cpu")
        if dev.index is not None:
            torch.cuda.set_device(dev.index)
    elif dev.type != "cpu":
        raise UserInputError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return dev


def register(app: typer.Typer) -> None:
    @app.command("align", help=HELP, no_args_is_help=True)
    def align_cmd(
        prompts: Path = typer.Option(..., "--prompts", help="Text file of training prompts, one per line.",
                                     show_default=False),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints and logs).", show_default=False),
        preset: str = typer.Option("nano", help="Models to align: nano, tiny-random, vist3a-1.3b, ... or a .json."),
        max_steps: int = typer.Option(1000, help="Training steps (a resumed run continues up to this step)."),
        resume: Path | None = typer.Option(None, help="Continue from RUN/checkpoint-<step>.", show_default=False),
        checkpoint_every: int = typer.Option(500, help="Write a checkpoint every N steps (and always at the end)."),
        reward_mix: str = typer.Option(
            "auto",
            help="release, paper, nano, a JSON list of reward terms / JSON file, or auto: nano for the nano "
            "preset, else release on CUDA and paper on CPU (the release mix back-propagates through 13 renders, "
            "more memory than a small CPU box has).",
        ),
        device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
        seed: int = typer.Option(0, help="Seed of every random choice (prompts, clips, rollouts, noise)."),
        min_steps: int = typer.Option(10, "--min-steps", help="T1: fewest solver steps of a reward rollout."),
        max_rollout_steps: int = typer.Option(50, help="T2: most solver steps of a reward rollout."),
        full_rollout_every: int = typer.Option(10, help="Use T2 steps every N iterations (0: never)."),
        grad_steps: int = typer.Option(2, help="Random rollout steps with gradients (plus the last one)."),
        lr: float = typer.Option(1e-4, help="AdamW learning rate of the LoRA."),
        grad_clip: float = typer.Option(1.0, help="Max gradient norm (0: no clipping)."),
        fm_weight: float = typer.Option(1.0, help="Weight of the flow-matching loss (0: no clips)."),
        reward_weight: float = typer.Option(1.0, help="Weight of the reward loss (0: no rollouts)."),
        clips: str = typer.Option("synthetic", help="Flow-matching clips: synthetic, or a folder of videos "
                                                    "(captions from its captions.json)."),
        render_size: int | None = typer.Option(None, help="Side of renders and compared frames (default: the 3D "
                                                          "model's input size).", show_default=False),
        log_images_every: int = typer.Option(50, help="Write a decoded-vs-rendered PNG every N steps (0: never)."),
        mixed_precision: str = typer.Option("auto", help="auto (bf16 on CUDA, no on CPU), no, bf16 or fp16."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        import torch

        from vist3a.alignment import (
            AlignConfig,
            AlignTrainer,
            check_output_dir,
            load_components,
            make_accelerator,
            parse_reward_mix,
            read_prompts,
        )
        from vist3a.alignment.checkpoint import read_meta
        from vist3a.alignment.rewards import REWARD_MIXES, default_reward_mix

        dev = _resolve_device(device)
        on_cuda = dev.type == "cuda" if dev is not None else torch.cuda.is_available()
        precision = ("bf16" if on_cuda else "no") if mixed_precision == "auto" else mixed_precision
        if reward_mix.strip() == "auto":
            reward_mix = default_reward_mix(preset, on_cuda)
        mix = reward_mix.strip() if reward_mix.strip() in REWARD_MIXES else parse_reward_mix(reward_mix)
        try:
            config = AlignConfig(
                max_steps=max_steps, seed=seed, checkpoint_every=checkpoint_every, log_images_every=log_images_every,
                progress=progress, learning_rate=lr, grad_clip=grad_clip, fm_weight=fm_weight,
                reward_weight=reward_weight, min_rollout_steps=min_steps, max_rollout_steps=max_rollout_steps,
                full_rollout_every=full_rollout_every, num_grad_steps=grad_steps, render_size=render_size,
                reward_mix=mix, mixed_precision=precision,
            )
        except ValueError as exc:
            raise UserInputError(f"invalid option: {exc}") from None
        prompt_list = read_prompts(prompts)
        if resume is not None:
            read_meta(resume)
        check_output_dir(out, resume)
        accelerator = make_accelerator(precision, dev)
        components = load_components(
            preset, device=accelerator.device, seed=seed, clips=clips if fm_weight > 0 else None,
            render_size=render_size, checkpoint_vae=config.vae_checkpointing,
            gradient_checkpointing=config.gradient_checkpointing,
        )
        try:
            trainer = AlignTrainer(config, components, prompt_list, out, accelerator=accelerator, resume_from=resume)
        except ValueError as exc:
            if isinstance(exc, UserInputError):
                raise
            raise UserInputError(f"cannot start the alignment run: {exc}") from None
        last = trainer.train()
        if accelerator.is_main_process:
            typer.echo(
                f"aligned to step {config.max_steps} ({trainer.skipped_steps} skipped): checkpoint {last}, "
                f"EMA LoRA {last / 'lora_ema'}, logs {out / 'logs'}"
            )
