"""``vist3a reconstruct``: images or a video -> AnySplat Gaussians or a VGGT point cloud (+ cameras, depth)."""

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
            "VGGT (point cloud, points.ply); also writes cameras.json and depth PNGs.\n\n"
            "Example:  vist3a reconstruct frames/ --model anysplat --out scene/"
        ),
    )
    def _cmd(
        source: Path = typer.Argument(..., help="Folder of images (sorted by name) or a video file."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (replaced atomically)."),
        model: str = typer.Option("anysplat", "--model", "-m", help="anysplat or vggt."),
        weights: str = typer.Option(
            None,
            "--weights",
            help="Hub repo id or local folder (default: the official release); "
            "'random-tiny' for a tiny random model (tests, demos).",
        ),
        size: int = typer.Option(
            None, "--size", help="Input width in pixels, a multiple of 14 (default: 448 for anysplat, 518 for vggt)."
        ),
        max_views: int = typer.Option(32, "--max-views", help="Use at most this many evenly spaced frames."),
        device: str = typer.Option(None, "--device", help="cuda, cpu, cuda:1 ... (default: cuda if available)."),
        dtype: str = typer.Option("float32", "--dtype", help="float32, or bfloat16 / float16 autocast."),
        keep_fraction: float = typer.Option(0.5, "--keep", help="VGGT: fraction of most confident pixels kept."),
        sh_degree: int = typer.Option(
            3, "--sh-degree", help="AnySplat: highest SH degree in scene.ply, 0-4 (3 opens in every viewer)."
        ),
    ) -> None:
        import torch

        from vist3a.recon.reconstruct import DEFAULT_SIZE, load_model, preprocess_frames, read_frames, reconstruct

        if model not in DEFAULT_SIZE:
            raise UserInputError(f"--model must be one of {sorted(DEFAULT_SIZE)}, got {model!r}")
        if dtype not in DTYPES:
            raise UserInputError(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
        if not 0.0 < keep_fraction <= 1.0:
            raise UserInputError(f"--keep must be in (0, 1], got {keep_fraction}")
        if not 0 <= sh_degree <= 4:
            raise UserInputError(f"--sh-degree must be 0, 1, 2, 3 or 4, got {sh_degree}")
        try:
            dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        except RuntimeError as exc:
            raise UserInputError(f"--device {device!r} is not a valid torch device ({exc})") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserInputError(f"--device {device!r} asks for CUDA, but no CUDA device is available")
        views = preprocess_frames(read_frames(source, max_views), size or DEFAULT_SIZE[model])
        net = load_model(model, weights, dev)
        autocast = None if dtype == "float32" else getattr(torch, dtype)
        summary = reconstruct(
            net,
            views,
            out,
            autocast,
            keep_fraction,
            extra_meta={"source": str(source), "weights": weights or "official"},
            sh_degree=sh_degree,
        )
        typer.echo(
            f"{summary.num_views} views {summary.image_hw[1]}x{summary.image_hw[0]} -> "
            f"{summary.num_primitives} {'Gaussians' if model == 'anysplat' else 'points'} in {summary.out_dir}"
        )
