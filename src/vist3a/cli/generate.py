"""``vist3a generate``: prompt(s) in, 3D scene folders out (a thin wrapper over :mod:`vist3a.pipeline`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import typer

from vist3a.cli import options, startup
from vist3a.cli.options import read_prompts_file  # noqa: F401  (re-exported: earlier home of the function)
from vist3a.errors import UserInputError
from vist3a.io_utils import output_lock

logger = logging.getLogger(__name__)

HELP = """Generate 3D Gaussian-splat scenes from text.

Writes into OUT: scene.ply (3DGS layout, opens in SuperSplat/Spark), scene.splat, flythrough.mp4 (a smooth path
through the predicted cameras), frames.mp4 (the generated video), cameras.json and meta.json (prompt, preset, seed,
settings, per-stage timings, versions). Pointmap presets (nano-vggt) write points.ply (the most confident half of
the pointmap pixels, coloured from the frames) and depth/NNN.png instead of the splat files, and their fly-through
renders the point cloud; MV-DUSt3R presets (nano-mvdust3r) write both. Output folders appear complete or not at
all; an existing OUT is replaced only if vist3a wrote it (or with --overwrite), and Ctrl-C / SIGTERM keep the old
one.

Examples:

\b
  vist3a generate "a red cube left of a blue sphere" --out scene/     (embedded nano models, CPU, offline)
  vist3a generate "a cozy cabin in a snowy forest" --preset vist3a-1.3b --out cabin/ --device cuda
  vist3a generate --prompts-file prompts.txt --out runs/batch/ --preset vist3a-1.3b
  accelerate launch --num_processes 2 $(which vist3a) generate --prompts-file prompts.txt --out runs/batch/

The nano preset (default) makes 64x64 px, 13-frame scenes in 20 steps (guidance 5.0), the sizes its models were
trained at. It knows only the words of its procedural world (colours, shapes such as cube and sphere, sizes,
materials, relations such as "left of"; `vist3a nano vocab` lists them); other words are ignored, with a
warning. Without --out a prompt writes to outputs/<slug>-<hash>/ (the hash keeps prompts
apart whose slugs agree). With --prompts-file each prompt gets OUT/<index>_<slug>/ and the seed SEED + index, so
sharding the prompts over several GPUs (one process per GPU via accelerate launch / torchrun) gives the same
scenes as one process.
"""

#: Files whose presence marks a folder as a scene vist3a wrote (it may then be replaced without --overwrite).
SCENE_MARKERS = ("meta.json",)


def slugify(text: str, max_len: int = 48) -> str:
    """Filesystem-safe short name of a prompt (``"prompt"`` when nothing Latin is left)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "prompt"


def default_out(prompt: str) -> Path:
    """``outputs/<slug>-<hash>``: the hash of the exact prompt keeps apart prompts whose slugs agree (emoji or
    non-Latin prompts, or a shared first 48 characters), while the same prompt finds its folder again."""
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]
    return Path("outputs") / f"{slugify(prompt)}-{digest}"


def _rank_and_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) as set by accelerate launch / torchrun; (0, 1, 0) otherwise."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def check_lora(path: Path | None) -> None:
    """``--lora``: a PEFT adapter folder with a readable config and weights (checked before any model loads)."""
    if path is None:
        return
    if path.is_file():
        raise UserInputError(f"--lora '{path}' is a file; pass the folder that holds adapter_config.json and "
                             f"adapter_model.safetensors (here probably '{path.parent}')")
    if not path.is_dir():
        raise UserInputError(f"--lora '{path}': folder does not exist")
    config = path / "adapter_config.json"
    try:
        json.loads(config.read_text())
    except FileNotFoundError:
        raise UserInputError(f"--lora '{path}' is not a PEFT LoRA folder (no adapter_config.json)") from None
    except (ValueError, OSError) as exc:
        raise UserInputError(f"--lora '{config}' is not valid JSON ({exc})") from None
    weights = path / "adapter_model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own error types for a corrupt header
            raise UserInputError(f"--lora '{weights}' is not a readable safetensors file ({exc})") from None


def check_settings(*, frames, steps, cfg, seed, height, width, flow_shift, scheduler, template, dtype, offload,
                   flythrough_frames, round_frames, num_prompts, vae_dtype=None) -> None:
    """Every generation option, before any model loads (the preset fills in what is ``None``)."""
    options.check_frames(frames, "--num-frames", round_up=round_frames, round_hint=True)
    options.check_int_range(steps, "--steps", 1)
    options.check_finite(cfg, "--cfg", 0.0)
    options.check_seed(seed, num_prompts)
    options.check_size(height, "--height")
    options.check_size(width, "--width")
    if flow_shift is not None and not (math.isfinite(flow_shift) and flow_shift > 0):
        raise UserInputError(f"--flow-shift must be a finite number > 0, got {flow_shift}")
    options.check_int_range(flythrough_frames, "--flythrough-frames", 0)
    if scheduler is not None:
        from vist3a.video.sampler import make_scheduler

        try:
            make_scheduler(scheduler)
        except ValueError as exc:
            raise UserInputError(f"--scheduler {scheduler!r}: {exc}") from None
    if template is not None:
        from vist3a.video.templates import resolve_template

        try:
            resolve_template(template)
        except ValueError as exc:
            raise UserInputError(f"--template: {exc}") from None
    if dtype is not None or vae_dtype is not None:
        from vist3a.pipeline import parse_dtype, parse_vae_dtype

        parse_dtype(dtype)
        parse_vae_dtype(vae_dtype)
    if offload is not None:
        from vist3a.video.generator import OFFLOAD_MODES

        options.check_choice(offload, OFFLOAD_MODES, "--offload")


def check_step_cache(kind: str | None, threshold: float | None, compile: bool) -> dict | None:
    """``--step-cache`` / ``--step-cache-threshold`` -> ``enable_step_cache`` arguments (``None``: no cache)."""
    from vist3a.video.step_cache import COMPILE_CONFLICT, STEP_CACHES, make_step_cache

    options.check_choice(kind, STEP_CACHES, "--step-cache")
    if kind in (None, "none"):
        if threshold is not None:
            raise UserInputError("--step-cache-threshold goes with --step-cache first-block or mag")
        return None
    if compile:
        raise UserInputError(COMPILE_CONFLICT)
    try:
        make_step_cache(kind, threshold)
    except ValueError as exc:
        raise UserInputError(f"--step-cache-threshold: {exc}") from None
    return {"kind": kind, "threshold": threshold}


def register(app: typer.Typer) -> None:
    @app.command("generate", help=HELP, no_args_is_help=False)
    def generate(
        prompt: str = typer.Argument(None, help="The text prompt (omit when using --prompts-file).",
                                     show_default=False),
        out: Path = options.out_option("Output folder (default: outputs/<prompt slug>-<hash>).", required=False),
        preset: str = options.preset_option(),
        prompts_file: Path = options.prompts_file_option(),
        frames: int = typer.Option(None, "--num-frames", "--frames",
                                   help="Video frames, 4k+1 (9, 13, 17, ...); default: the preset's."),
        steps: int = typer.Option(None, "--steps", "--num-inference-steps",
                                  help="Denoising steps (default: the preset's; 50 for the release)."),
        cfg: float = typer.Option(None, "--cfg", "--guidance-scale",
                                  help="Classifier-free guidance scale (release: 7.5)."),
        seed: int = typer.Option(0, "--seed", help="Random seed, 0 to 2^63-1 (prompt i of a file uses SEED + i)."),
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
        round_frames: bool = typer.Option(False, "--round-frames", help="Round --num-frames up to 4k+1 (warns)."),
        direction: str = typer.Option(
            None, "--direction", help="For decoders trained on one turning direction, like the nano ones (default: "
            "the preset's). as-is | motion: decode the video's mirror image instead when its image motion says it "
            "turns clockwise | mirror-select: decode both and keep the pass whose splats render held-out frames "
            "better (slower, picks the wrong way more often)."
        ),
        device: str = options.device_option(),
        dtype: str = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: the preset's)."),
        vae_dtype: str = typer.Option(
            None, "--vae-dtype", help="float32 (default) | bfloat16: the video VAE's precision on CUDA; bfloat16 "
            "decodes a release-size video ~0.1 s faster (docs/benchmarks.md), close to but not equal to float32."
        ),
        flythrough_frames: int = typer.Option(
            None, "--flythrough-frames", help="Frames of flythrough.mp4 (0: skip; default 48 on GPU, 16 on CPU)."
        ),
        offline: bool = typer.Option(False, "--offline", help="Never download; use the local Hugging Face cache."),
        offload: str = typer.Option(
            None, "--offload", help="GPU memory: auto (real presets' default: none if every weight fits on the GPU "
            "with 12 GiB to spare, else text) | none | text (text encoder streamed from CPU) | model (each part on "
            "the GPU only while used) | sequential (least memory, slowest)."
        ),
        compile: bool = typer.Option(
            False, "--compile", help="torch.compile the transformer: faster steps after a compilation that the "
            "compile cache keeps for later processes at the same sizes."
        ),
        compile_scope: str = typer.Option(
            None, "--compile-scope", help="With --compile: blocks (default: compile the repeated transformer block "
            "once, which all blocks share: less compilation) | model (the whole transformer graph)."
        ),
        compile_cache: bool = typer.Option(
            None, "--compile-cache/--no-compile-cache", help="With --compile: keep compiled graphs in "
            "$VIST3A_CACHE (default ~/.cache/vist3a, or $XDG_CACHE_HOME/vist3a; TORCHINDUCTOR_CACHE_DIR wins when "
            "set) and reuse them in later runs (default: on unless VIST3A_COMPILE_CACHE=0).", show_default=False
        ),
        fp8: bool = typer.Option(
            False, "--fp8", help="fp8 matmuls in the transformer blocks (torchao; Ada/Hopper GPUs): faster, close "
            "to but not equal to bf16. Use with --compile."
        ),
        step_cache: str = typer.Option(
            None, "--step-cache", help="none (default) | first-block | mag: reuse transformer work on denoising "
            "steps that would change little (diffusers' cache hooks): faster denoising, a scene close to but not "
            "equal to the uncached one. first-block runs the first block at every step and skips the others while "
            "its output moves less than the threshold; mag skips whole steps, and its first scene in a process "
            "measures the model's magnitude ratios (running every step). Not with --compile. Fidelity and speed: "
            "docs/benchmarks.md.", show_default=False
        ),
        step_cache_threshold: float = typer.Option(
            None, "--step-cache-threshold", help="With --step-cache: higher skips more and strays further from the "
            "uncached scene (default: first-block 0.05, mag 0.06; first-block 0 never skips).", show_default=False
        ),
        overwrite: bool = options.overwrite_option(
            "Replace OUT even if it is a file or a folder that vist3a did not write."
        ),
        sh_degree: int = typer.Option(
            3, "--sh-degree", help="Highest SH degree in scene.ply, 0-4 (3 opens in every viewer; 4 only in some)."
        ),
        formats: list[str] = typer.Option(
            None, "--formats", help="Extra exports into OUT: spz, compressed-ply, glb, nerfstudio, colmap, all "
            "(comma-separated or repeated; see `vist3a export`)."
        ),
    ) -> None:
        started = time.perf_counter()
        # 1. every input, before any model loads; then the model libraries, with the garbage collector paused
        with startup.collector_paused():
            from vist3a.exports import parse_formats

            formats = parse_formats(formats or [])
            if not 0 <= sh_degree <= 4:
                raise UserInputError(f"--sh-degree must be 0, 1, 2, 3 or 4, got {sh_degree}")
            if (prompt is None) == (prompts_file is None):
                raise UserInputError("give exactly one of a PROMPT argument or --prompts-file")
            prompts = options.read_prompts_file(prompts_file) if prompts_file else [prompt]
            if prompts_file is None and not prompt.strip():
                raise UserInputError("the prompt is empty")
            check_settings(frames=frames, steps=steps, cfg=cfg, seed=seed, height=height, width=width,
                           flow_shift=flow_shift, scheduler=scheduler, template=template, dtype=dtype, offload=offload,
                           flythrough_frames=flythrough_frames, round_frames=round_frames, num_prompts=len(prompts),
                           vae_dtype=vae_dtype)
            if not compile and (compile_scope is not None or compile_cache is not None):
                raise UserInputError("--compile-scope and --compile-cache / --no-compile-cache go with --compile")
            options.check_choice(compile_scope, ("blocks", "model"), "--compile-scope")
            step_cache = check_step_cache(step_cache, step_cache_threshold, compile)
            if direction is not None:
                from vist3a.recon.direction import DIRECTIONS

                options.check_choice(direction, DIRECTIONS, "--direction")
            rank, world, local_rank = _rank_and_world()
            dev = options.parse_device(device)
            if device in (None, "auto") and world > 1 and dev.type == "cuda":
                dev = options.parse_device(f"cuda:{local_rank}")
            check_lora(lora)
            if out is None:
                out = default_out(prompts[0]) if prompts_file is None else Path("outputs") / "batch"
            jobs = list(enumerate(prompts))[rank::world]
            targets = {index: out if prompts_file is None else out / f"{index:04d}_{slugify(text)}"
                       for index, text in jobs}
            if prompts_file is not None and out.exists() and not out.is_dir():
                raise UserInputError(f"--out '{out}' is a file; --prompts-file writes one folder per prompt into it")
            for target in targets.values():
                options.check_output_target(target, overwrite, SCENE_MARKERS)
            if preset in ("nano", "nano-vggt", "nano-mvdust3r"):
                from vist3a.cli.nano import warn_outside_training

                warn_outside_training(prompts, height=height, width=width, num_frames=frames)
            startup.import_model_libraries()
        logger.info("startup: model libraries imported (%.1f s into the command)", time.perf_counter() - started)

        # 2. models, then one scene after another; two processes never write one OUT
        if compile:  # the compile cache's one-line reports (loaded / saved / what the first call compiled)
            logging.getLogger("vist3a.video.compile_cache").setLevel(logging.INFO)
            compile = {"regional": compile_scope != "model", "cache": compile_cache}
        load = dict(device=dev, dtype=dtype, lora=lora, local_files_only=True if offline else None,
                    offload=offload, compile=compile, fp8=fp8, step_cache=step_cache, vae_dtype=vae_dtype)
        settings = dict(num_frames=frames, num_inference_steps=steps, guidance_scale=cfg, height=height, width=width,
                        flow_shift=flow_shift, scheduler=scheduler, template=template,
                        negative_prompt=negative_prompt, round_frames=round_frames or None, direction=direction)
        save = dict(flythrough_frames=flythrough_frames, sh_degree=sh_degree, formats=formats)  # save_scene arguments
        with contextlib.ExitStack() as stack:
            if world == 1:
                stack.enter_context(output_lock(out))
            _run(stack, preset, load, settings, save, jobs, targets, seed, lock_each=prompts_file is not None,
                 started=started)


def _run(stack: contextlib.ExitStack, preset: str, load: dict, settings: dict, save: dict,
         jobs: list[tuple[int, str]], targets: dict[int, Path], seed: int, lock_each: bool, started: float) -> None:
    """Load the pipeline (``load``: ``from_pretrained`` arguments) and generate ``jobs`` ``(index, prompt)`` with
    ``settings`` and seed ``seed + index`` into ``targets[index]`` (``save``: ``save_scene`` arguments)."""
    import torch

    from vist3a.pipeline import Text2ScenePipeline

    begin = time.perf_counter()
    pipe = Text2ScenePipeline.from_pretrained(preset, **load)
    # with VIST3A_VERBOSITY=info: where a fresh process's time to its first scene goes (benchmarks/first_scene.py)
    logger.info("startup: pipeline loaded in %.1f s (%.1f s into the command)", time.perf_counter() - begin,
                time.perf_counter() - started)
    # Files of scene i (fly-through render, video encoding, PLY) are written in a background thread while
    # scene i+1 generates; at most one scene waits, and every folder still appears complete or not at all.
    writer, pending = ThreadPoolExecutor(max_workers=1), None
    stack.callback(writer.shutdown, wait=True)
    for index, text in jobs:
        scene = pipe(text, generator=torch.Generator("cpu").manual_seed(seed + index), **settings)[0]
        if pending is not None:
            _report(pending.result())
        pending = writer.submit(_save, scene, targets[index], save, lock_each)
    if pending is not None:
        _report(pending.result())


def _save(scene, target: Path, save: dict, lock: bool):
    from vist3a.scene import save_scene

    with output_lock(target) if lock else contextlib.nullcontext():
        save_scene(scene, target, **save)
    return scene, target


def _report(done) -> None:
    scene, target = done
    total = sum(scene.timings.values())
    what = f"{len(scene.gaussians)} Gaussians" if scene.gaussians is not None else (
        f"pointmaps of {scene.points.shape[0]} views" if scene.points is not None else "no 3D output")
    typer.echo(f"wrote {target}/ ({what}, {total:.1f} s)")
