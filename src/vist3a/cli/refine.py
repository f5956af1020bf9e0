"""``vist3a refine``: optimise a scene's feed-forward Gaussians against its decoded frames (thin wrapper over
:mod:`vist3a.evaluation.refine`)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from vist3a.errors import UserInputError


def register(app: typer.Typer) -> None:
    @app.command("refine")
    def refine_cmd(
        scene_dir: Path = typer.Argument(..., help="a scene folder written by vist3a generate"),
        steps: int = typer.Option(100, "--steps", help="optimisation steps (one random frame each)"),
        out: Path | None = typer.Option(None, "--out", help="refined splats (default: SCENE_DIR/scene_refined.ply)"),
        backend: str = typer.Option("auto", "--backend", help="renderer: auto (gsplat on CUDA), torch or gsplat"),
        device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)"),
        seed: int = typer.Option(0, "--seed", help="seeds the order of the frames"),
    ) -> None:
        """Refine the Gaussians of SCENE_DIR against its decoded frames at its predicted cameras; the refined splats
        are written beside the original, and the PSNR of renders against the frames is reported before and after."""
        import json

        import torch

        from vist3a.evaluation.refine import RefineSettings, refine_scene
        from vist3a.evaluation.scene_folder import load_scene_folder
        from vist3a.io_utils import atomic_path
        from vist3a.splats import save_gaussians

        if steps < 1:
            raise UserInputError(f"--steps must be >= 1, got {steps}")
        if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
            raise UserInputError("--device cuda was given but CUDA is not available on this machine")
        logging.getLogger("vist3a.evaluation").setLevel(logging.INFO)
        scene = load_scene_folder(scene_dir)
        if scene.gaussians is None:
            raise UserInputError(f"'{scene_dir}' has no scene.ply: nothing to refine (a pointmap decoder's scene)")
        target = out or scene_dir / "scene_refined.ply"
        if target.resolve() == (scene_dir / "scene.ply").resolve():
            raise UserInputError("--out would overwrite the original scene.ply; choose another file")
        result = refine_scene(scene, steps, backend=backend, device=device, settings=RefineSettings(seed=seed))
        save_gaussians(result.gaussians.to("cpu"), target)
        with atomic_path(target.with_name(target.stem + ".json")) as tmp:
            tmp.write_text(json.dumps(result.summary(), indent=2))
        typer.echo(f"PSNR vs decoded frames: {result.psnr_before:.2f} dB -> {result.psnr_after:.2f} dB "
                   f"({steps} steps, {result.seconds:.1f} s); wrote {target}")
