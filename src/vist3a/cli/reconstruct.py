"""``vist3a reconstruct``: images or a video -> AnySplat / MV-DUSt3R Gaussians or a VGGT point cloud (+ cameras,
depth)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.errors import UserInputError

DTYPES = ("float32", "bfloat16", "float16")


def register(app: typer.Typer) -> None:
    @app.command(
        "reconstruct",
        help=(
            "Reconstruct a scene from a folder of images or a video with AnySplat (3D Gaussians, scene.ply) or "
            "VGGT (point cloud, points.ply), or MV-DUSt3R / MV-DUSt3R+ (both; cameras recovered from the pointmaps; "
            "release weights CC BY-NC 4.0); also writes cameras.json and depth PNGs.\n\n"
            "Example:  vist3a reconstruct frames/ --model anysplat --out scene/"
        ),
    )
    def _cmd(
        source: Path = typer.Argument(..., help="Folder of images (sorted by name) or a video file."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (replaced atomically)."),
        model: str = typer.Option("anysplat", "--model", "-m", help="anysplat, vggt, mvdust3r or mvdust3r-plus."),
        weights: str = typer.Option(
            None,
            "--weights",
            help="Hub repo id, local folder or (MV-DUSt3R) checkpoint file (default: the official release), or a "
            "preset name "
            "('tiny-random' for a tiny random model, tests and demos; 'nano').",
        ),
        size: int = typer.Option(
            None, "--size", help="Input width in pixels, a multiple of 14 (default: 448 for anysplat, 518 for vggt); "
            "MV-DUSt3R: square side, a multiple of 16 (default 224)."
        ),
        max_views: int = typer.Option(32, "--max-views", help="Use at most this many evenly spaced frames."),
        device: str = typer.Option(None, "--device", help="cuda, cpu, cuda:1 ... (default: cuda if available)."),
        dtype: str = typer.Option("float32", "--dtype", help="float32, or bfloat16 / float16 autocast."),
        keep_fraction: float = typer.Option(
            0.5, "--keep", help="VGGT, MV-DUSt3R: fraction of most confident pixels kept in points.ply."
        ),
    ) -> None:
        import torch

        from vist3a.components import load_components, recon_preset
        from vist3a.recon.reconstruct import DEFAULT_SIZE, preprocess_for_model, read_frames, reconstruct

        if model not in DEFAULT_SIZE:
            raise UserInputError(f"--model must be one of {sorted(DEFAULT_SIZE)}, got {model!r}")
        if dtype not in DTYPES:
            raise UserInputError(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
        if not 0.0 < keep_fraction <= 1.0:
            raise UserInputError(f"--keep must be in (0, 1], got {keep_fraction}")
        try:
            dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        except RuntimeError as exc:
            raise UserInputError(f"--device {device!r} is not a valid torch device ({exc})") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserInputError(f"--device {device!r} asks for CUDA, but no CUDA device is available")
        views = preprocess_for_model(model, read_frames(source, max_views), size)
        parts = load_components(recon_preset(model, weights), {"recon"}, device=dev, recon_model=model)
        if parts.sources.get("weights") == "random-init":
            typer.echo(f"warning: a *random* {model} model ({weights}): the output is meaningless", err=True)
        net = parts.recon.to(dev)
        autocast = None if dtype == "float32" else getattr(torch, dtype)
        summary = reconstruct(
            net,
            views,
            out,
            autocast,
            keep_fraction,
            extra_meta={"source": str(source), "weights": weights or "official"},
        )
        typer.echo(
            f"{summary.num_views} views {summary.image_hw[1]}x{summary.image_hw[0]} -> "
            f"{summary.num_primitives} {'points' if model == 'vggt' else 'Gaussians'} in {summary.out_dir}"
        )
