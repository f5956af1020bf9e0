"""``vist3a align``: reward alignment of the video generator (thin wrapper over :mod:`vist3a.alignment`)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError

HELP = (
    "Reward-align the video generator: train a LoRA on the Wan transformer with a flow-matching loss on "
    "captioned multi-view clips plus rewards on full text-to-3D rollouts (image-text quality of decoded frames "
    "and of renders of the stitched decoder's Gaussians, optionally 3D consistency).\n\n"
    "Examples:\n\n\b\n"
    "  vist3a align --preset nano --prompts-file prompts.txt --max-steps 200 --out runs/align\n"
    "  vist3a align --preset tiny-random --prompts-file prompts.txt --max-steps 2 --out /tmp/run "
    "--min-steps 2 --max-rollout-steps 3\n"
    "  vist3a align --preset nano --prompts-file prompts.txt --max-steps 400 --out runs/align "
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


#: Entries that mark a folder as an alignment run (``--overwrite`` may empty it).
RUN_MARKERS = ("checkpoint-*", "logs")


def _resolve_device(device: str):
    """``auto`` -> ``None`` (accelerate picks); else the shared rule, and the CUDA device made current."""
    if device == "auto":
        return None
    dev = options.parse_device(device)
    if dev.type == "cuda" and dev.index is not None:
        import torch

        torch.cuda.set_device(dev.index)
    return dev


def register(app: typer.Typer) -> None:
    @app.command("align", help=HELP, no_args_is_help=True)
    def align_cmd(
        prompts: Path = options.prompts_file_option(True, "Text file of training prompts, one per line."),
        out: Path = options.out_option("Run folder (checkpoints and logs)."),
        preset: str = options.preset_option(help="Models to align: nano, tiny-random, vist3a-1.3b, ... or a .json."),
        max_steps: int = typer.Option(1000, help="Training steps (a resumed run continues up to this step)."),
        resume: Path | None = typer.Option(None, help="Continue from RUN/checkpoint-<step>.", show_default=False),
        checkpoint_every: int = typer.Option(500, help="Write a checkpoint every N steps (and always at the end)."),
        reward_mix: str = typer.Option(
            "auto",
            help="release, paper, nano, a JSON list of reward terms / JSON file, or auto: nano for the nano "
            "preset, else release on CUDA and paper on CPU (the release mix back-propagates through 13 renders, "
            "more memory than a small CPU box has).",
        ),
        device: str = options.device_option(),
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
        overwrite: bool = options.overwrite_option("Start afresh in an --out that holds another run (deletes it)."),
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

        prompt_list = read_prompts(prompts)
        options.check_seed(seed)
        options.check_choice(mixed_precision, ("auto", "no", "bf16", "fp16"), "--mixed-precision")
        if resume is not None:
            read_meta(resume)
        if not overwrite:
            check_output_dir(out, resume)  # its message lists the checkpoints and the one to resume from
        options.check_run_dir(out, resume, overwrite, RUN_MARKERS)
        if clips != "synthetic" and fm_weight > 0 and not Path(clips).is_dir():
            raise UserInputError(f"--clips '{clips}' is neither 'synthetic' nor an existing folder of videos")
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
        accelerator = make_accelerator(precision, dev)
        if overwrite and accelerator.is_main_process:
            options.clear_run_dir(out)
        accelerator.wait_for_everyone()
        check_output_dir(out, resume)
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
