"""``vist3a refine``: optimise a scene's feed-forward Gaussians against its decoded frames (thin wrapper over
:mod:`vist3a.evaluation.refine`)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError


def register(app: typer.Typer) -> None:
    @app.command("refine")
    def refine_cmd(
        scene_dir: Path = typer.Argument(..., help="a scene folder written by vist3a generate"),
        steps: int = typer.Option(100, "--steps", help="optimisation steps (one random frame each)"),
        out: Path | None = options.out_option("refined splats, .ply or .splat (default: SCENE_DIR/scene_refined.ply)",
                                              required=False),
        backend: str = typer.Option("auto", "--backend", help="renderer: auto (gsplat on CUDA), torch or gsplat"),
        device: str = options.device_option(),
        seed: int = typer.Option(0, "--seed", help="seeds the order of the frames"),
        overwrite: bool = options.overwrite_option("Replace an existing --out file (the default target is always "
                                                   "replaced: vist3a wrote it)."),
    ) -> None:
        """Refine the Gaussians of SCENE_DIR against its decoded frames at its predicted cameras; the refined splats
        are written beside the original, and the PSNR of renders against the frames is reported before and after."""
        import json

        from vist3a.evaluation.refine import RefineSettings, refine_scene
        from vist3a.evaluation.scene_folder import load_scene_folder
        from vist3a.io_utils import atomic_path
        from vist3a.splats import save_gaussians
        from vist3a.splats.io import SPLAT_SUFFIXES

        options.check_int_range(steps, "--steps", 1)
        options.check_seed(seed)
        dev = options.parse_device(device)
        target = out or scene_dir / "scene_refined.ply"
        if target.resolve() == (scene_dir / "scene.ply").resolve():
            raise UserInputError("--out would overwrite the original scene.ply; choose another file")
        if target.suffix.lower() not in SPLAT_SUFFIXES:
            raise UserInputError(f"--out '{target}' must end in {' or '.join(SPLAT_SUFFIXES)}")
        if out is not None and out.exists() and (out.is_dir() or not overwrite):
            what = "a folder" if out.is_dir() else "an existing file"
            raise UserInputError(f"--out '{out}' is {what}; choose a new .ply/.splat file"
                                 + ("" if out.is_dir() else " or pass --overwrite"))
        options.check_writable(target)
        logging.getLogger("vist3a.evaluation").setLevel(logging.INFO)
        scene = load_scene_folder(scene_dir)
        if scene.gaussians is None:
            raise UserInputError(f"'{scene_dir}' has no scene.ply: nothing to refine (a pointmap decoder's scene)")
        result = refine_scene(scene, steps, backend=backend, device=dev, settings=RefineSettings(seed=seed))
        save_gaussians(result.gaussians.to("cpu"), target)
        with atomic_path(target.with_name(target.stem + ".json")) as tmp:
            tmp.write_text(json.dumps(result.summary(), indent=2))
        typer.echo(f"PSNR vs decoded frames: {result.psnr_before:.2f} dB -> {result.psnr_after:.2f} dB "
                   f"({steps} steps, {result.seconds:.1f} s); wrote {target}")
