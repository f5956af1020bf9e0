"""``vist3a generate``: prompt(s) in, 3D scene folders out (a thin wrapper over :mod:`vist3a.pipeline`)."""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import typer

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

HELP = """Generate 3D Gaussian-splat scenes from text.

Writes into OUT: scene.ply (3DGS layout, opens in SuperSplat/Spark), scene.splat, flythrough.mp4 (a smooth
path through the predicted cameras), frames.mp4 (the generated video), cameras.json and meta.json (prompt,
preset, seed, settings, per-stage timings, versions). Output folders appear complete or not at all.

Examples:

  vist3a generate "a red cube left of a blue sphere" --out scene/          (embedded nano models, CPU, offline)

  vist3a generate "a cozy cabin in a snowy forest" --preset vist3a-1.3b --out cabin/ --device cuda

  vist3a generate --prompts-file prompts.txt --out runs/batch/ --preset vist3a-1.3b

  accelerate launch --num_processes 2 $(which vist3a) generate --prompts-file prompts.txt --out runs/batch/

With --prompts-file each prompt gets OUT/<index>_<slug>/ and the seed SEED + index, so sharding the prompts
over several GPUs (one process per GPU via accelerate launch / torchrun) gives the same scenes as one process.
"""


def slugify(text: str, max_len: int = 48) -> str:
    """Filesystem-safe short name of a prompt."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "prompt"


def read_prompts_file(path: Path) -> list[str]:
    """Prompts one per line; blank lines and lines starting with '#' are skipped."""
    if not path.is_file():
        raise UserInputError(f"--prompts-file '{path}' does not exist")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise UserInputError(f"--prompts-file '{path}' contains no prompts (one per line; '#' starts a comment)")
    return prompts


def _rank_and_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as set by accelerate launch / torchrun; (0, 1, 0) otherwise."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def register(app: typer.Typer) -> None:
    @app.command("generate", help=HELP, no_args_is_help=False)
    def generate(
        prompt: str = typer.Argument(None, help="The text prompt (omit when using --prompts-file)."),
        out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: outputs/<prompt slug>)."),
        preset: str = typer.Option(
            "nano", help="nano (embedded, CPU) | vist3a-1.3b | vist3a-14b | tiny-random | a preset .json | a folder"
        ),
        prompts_file: Path = typer.Option(None, "--prompts-file", help="Text file with one prompt per line."),
        frames: int = typer.Option(None, "--frames", help="Video frames, 4k+1 (9, 13, 17, ...); preset default."),
        steps: int = typer.Option(None, "--steps", help="Denoising steps (preset default: 50 for the release)."),
        cfg: float = typer.Option(None, "--cfg", help="Classifier-free guidance scale (release: 7.5)."),
        seed: int = typer.Option(0, "--seed", help="Random seed (prompt i of a file uses SEED + i)."),
        height: int = typer.Option(None, "--height", help="Video height in pixels (multiple of 16)."),
        width: int = typer.Option(None, "--width", help="Video width in pixels (multiple of 16)."),
        flow_shift: float = typer.Option(None, "--flow-shift", help="Flow-matching shift of the scheduler."),
        scheduler: str = typer.Option(None, "--scheduler", help="unipc (default) or euler."),
        template: str = typer.Option(
            None, "--template", help="Camera-motion prompt template name or a '{prompt}' string; 'none' disables."
        ),
        negative_prompt: str = typer.Option(
            None, "--negative-prompt", help="Negative prompt ('release' = the VIST3A one, '' = none)."
        ),
        lora: Path = typer.Option(None, "--lora", help="Extra PEFT LoRA folder, e.g. RUN/checkpoint-100/lora_ema."),
        round_frames: bool = typer.Option(False, "--round-frames", help="Round --frames up to 4k+1 with a warning."),
        device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
        dtype: str = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: the preset's)."),
        flythrough_frames: int = typer.Option(
            None, "--flythrough-frames", help="Frames of flythrough.mp4 (0: skip; default 48 on GPU, 16 on CPU)."
        ),
        offline: bool = typer.Option(False, "--offline", help="Never download; use the local Hugging Face cache."),
        offload: str = typer.Option(
            None, "--offload", help="GPU memory: none | text (text encoder streamed from CPU; real presets' "
            "default) | model (each part on the GPU only while used) | sequential (least memory, slowest)."
        ),
        compile: bool = typer.Option(
            False, "--compile", help="torch.compile the transformer: faster steps after a one-off compilation."
        ),
        fp8: bool = typer.Option(
            False, "--fp8", help="fp8 matmuls in the transformer blocks (torchao; Ada/Hopper GPUs): faster, close "
            "to but not equal to bf16. Use with --compile."
        ),
        sh_degree: int = typer.Option(
            3, "--sh-degree", help="Highest SH degree in scene.ply, 0-4 (3 opens in every viewer; 4 only in some)."
        ),
        formats: list[str] = typer.Option(
            None, "--formats", help="Extra exports into OUT: spz, compressed-ply, glb, nerfstudio, colmap, all "
            "(comma-separated or repeated; see `vist3a export`)."
        ),
    ) -> None:
        import torch

        from vist3a.exports import parse_formats
        from vist3a.pipeline import Text2ScenePipeline

        formats = parse_formats(formats or [])

        if not 0 <= sh_degree <= 4:
            raise UserInputError(f"--sh-degree must be 0, 1, 2, 3 or 4, got {sh_degree}")

        if (prompt is None) == (prompts_file is None):
            raise UserInputError("give exactly one of a PROMPT argument or --prompts-file")
        prompts = read_prompts_file(prompts_file) if prompts_file else [prompt]
        if prompts_file is None and not prompt.strip():
            raise UserInputError("the prompt is empty")
        if out is None:
            out = Path("outputs") / (slugify(prompts[0]) if prompts_file is None else "batch")
        rank, world, local_rank = _rank_and_world()
        if device is None and world > 1 and torch.cuda.is_available():
            device = f"cuda:{local_rank}"

        pipe = Text2ScenePipeline.from_pretrained(
            preset, device=device, dtype=dtype, lora=lora, local_files_only=True if offline else None,
            offload=offload, compile=compile, fp8=fp8,
        )
        jobs = list(enumerate(prompts))[rank::world]
        # Files of scene i (fly-through render, video encoding, PLY) are written in a background thread while
        # scene i+1 generates; at most one scene waits, and every folder still appears complete or not at all.
        writer, pending = ThreadPoolExecutor(max_workers=1), None
        for index, text in jobs:
            target = out if prompts_file is None else out / f"{index:04d}_{slugify(text)}"
            scene = pipe(
                text,
                num_frames=frames,
                num_steps=steps,
                guidance_scale=cfg,
                seed=seed + index,
                height=height,
                width=width,
                flow_shift=flow_shift,
                scheduler=scheduler,
                template=template,
                negative_prompt=negative_prompt,
                round_frames=round_frames or None,
            )[0]
            if pending is not None:
                _report(pending.result())
            pending = writer.submit(_save, scene, target, flythrough_frames, sh_degree, formats)
        try:
            if pending is not None:
                _report(pending.result())
        finally:
            writer.shutdown(wait=True)


def _save(scene, target: Path, flythrough_frames: int | None, sh_degree: int = 3, formats: list[str] | None = None):
    from vist3a.scene import save_scene

    save_scene(scene, target, flythrough_frames=flythrough_frames, sh_degree=sh_degree, formats=formats or ())
    return scene, target


def _report(done) -> None:
    scene, target = done
    total = sum(scene.timings.values())
    typer.echo(f"wrote {target}/ ({len(scene.gaussians or [])} Gaussians, {total:.1f} s)")
