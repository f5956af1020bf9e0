"""``vist3a reconstruct``: images or a video -> AnySplat / MV-DUSt3R Gaussians or a VGGT point cloud (+ cameras,
depth)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError

DTYPES = ("float32", "bfloat16", "float16")
#: Files that mark a folder as a reconstruction vist3a wrote (it may then be replaced without --overwrite).
OUTPUT_MARKERS = ("meta.json",)


def unreadable_input(source: Path, exc: BaseException) -> str:
    """The one-line reason ``source`` could not be read: the first image of a folder that does not decode."""
    from PIL import Image, UnidentifiedImageError

    from vist3a.data.media import list_images

    if source.is_dir():
        for path in list_images(source):
            try:
                with Image.open(path) as image:
                    image.load()
            except UnidentifiedImageError:
                return f"{path}: not an image file (its content is not {path.suffix.lstrip('.').upper()} data)"
            except (OSError, SyntaxError, ValueError) as bad:  # truncated or corrupt image data
                return f"{path}: the image is corrupt or truncated ({bad})"
    return f"{source}: cannot read the input ({type(exc).__name__}: {exc})"


def register(app: typer.Typer) -> None:
    @app.command(
        "reconstruct",
        help=(
            "Reconstruct a scene from a folder of images or a video with AnySplat (3D Gaussians, scene.ply) or "
            "VGGT (point cloud, points.ply), or MV-DUSt3R / MV-DUSt3R+ (both; cameras recovered from the pointmaps; "
            "release weights CC BY-NC 4.0); also writes cameras.json and depth PNGs.\n\n"
            "Example:\n\n\b\n  vist3a reconstruct frames/ --model anysplat --out scene/"
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
            None, "--size", help="Input width in pixels, a multiple of 14 (default: 448 for anysplat, 518 for vggt; "
            "the one size a nano model takes, 112); MV-DUSt3R: square side, a multiple of 16 (default 224)."
        ),
        direction: str = typer.Option(
            None, "--direction", help="as-is | motion: for models trained on views that turn one way (the nano "
            "ones), run views that turn clockwise by their image motion as their mirror image and mirror the "
            "scene back. Default: the weights preset's (motion for nano), else as-is."
        ),
        max_views: int = typer.Option(32, "--max-views", help="Use at most this many evenly spaced frames."),
        device: str = options.device_option(),
        dtype: str = typer.Option("float32", "--dtype", help="float32, or bfloat16 / float16 autocast."),
        keep_fraction: float = typer.Option(
            0.5, "--keep", help="VGGT, MV-DUSt3R: fraction of most confident pixels kept in points.ply."
        ),
        overwrite: bool = options.overwrite_option(
            "Replace OUT even if it is a file or a folder that vist3a did not write."
        ),
        sh_degree: int = typer.Option(
            3, "--sh-degree", help="AnySplat, MV-DUSt3R: highest SH degree in scene.ply, 0-4 (3 opens in any viewer)."
        ),
        formats: list[str] = typer.Option(
            None, "--formats", help="Extra exports into OUT: spz, compressed-ply, glb, nerfstudio, colmap, all "
            "(comma-separated or repeated; splat formats need Gaussians; see `vist3a export`)."
        ),
    ) -> None:
        import torch

        from vist3a.components import load_components, recon_preset, resolve_preset
        from vist3a.recon.reconstruct import (
            DEFAULT_SIZE,
            MVDUST3R_KINDS,
            direction_for,
            read_frames,
            reconstruct,
            views_for,
        )

        if model not in DEFAULT_SIZE:
            raise UserInputError(f"--model must be one of {sorted(DEFAULT_SIZE)}, got {model!r}")
        if dtype not in DTYPES:
            raise UserInputError(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
        if not 0.0 < keep_fraction <= 1.0:
            raise UserInputError(f"--keep must be in (0, 1], got {keep_fraction}")
        patch = 16 if model in MVDUST3R_KINDS else 14
        if size is not None and (size < patch or size % patch):
            raise UserInputError(f"--size must be a positive multiple of {patch} for {model}, got {size}")
        options.check_int_range(max_views, "--max-views", 1)
        dev = options.parse_device(device)
        options.check_output_target(out, overwrite, OUTPUT_MARKERS)
        if not 0 <= sh_degree <= 4:
            raise UserInputError(f"--sh-degree must be 0, 1, 2, 3 or 4, got {sh_degree}")
        preset = recon_preset(model, weights)
        direction = direction_for(resolve_preset(preset)) if direction is None else direction
        options.check_choice(direction, ("as-is", "motion"), "--direction")
        from vist3a.exports import parse_formats

        formats = parse_formats(formats or [])
        try:
            frames = read_frames(source, max_views)
        except UserInputError:
            raise
        except Exception as exc:  # image decoders raise many types; name the file instead of a traceback
            raise UserInputError(unreadable_input(source, exc)) from None
        parts = load_components(preset, {"recon"}, device=dev, recon_model=model)
        if parts.sources.get("weights") == "random-init":
            typer.echo(f"warning: a *random* {model} model ({weights}): the output is meaningless", err=True)
        net = parts.recon.to(dev)
        views = views_for(net, model, frames, size)
        autocast = None if dtype == "float32" else getattr(torch, dtype)
        summary = reconstruct(
            net,
            views,
            out,
            autocast,
            keep_fraction,
            extra_meta={"source": str(source), "weights": weights or "official"},
            sh_degree=sh_degree,
            formats=formats,
            direction=direction,
        )
        typer.echo(
            f"{summary.num_views} views {summary.image_hw[1]}x{summary.image_hw[0]} -> "
            f"{summary.num_primitives} {'points' if model == 'vggt' else 'Gaussians'} in {summary.out_dir}"
        )
