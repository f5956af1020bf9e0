"""``vist3a render``: a turntable fly-through video of a splat file (thin wrapper over :mod:`vist3a.splats`)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError

UP_AXES = {"-y": (0.0, -1.0, 0.0), "+y": (0.0, 1.0, 0.0), "-z": (0.0, 0.0, -1.0), "+z": (0.0, 0.0, 1.0)}
NAMED_BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0), "gray": (0.5, 0.5, 0.5)}

HELP = (
    "Render a turntable fly-through video of a Gaussian-splat scene (.ply or .splat) or of a coloured point "
    "cloud (.ply, e.g. the points.ply of --preset nano-vggt; each point drawn as a small round splat).\n\n"
    "The camera circles the scene's centre (robust to stray splats) at the given elevation, looking at it. "
    "With --radius auto the distance is chosen so that the whole scene fits into the view.\n\n"
    "Examples:\n\n\b\n"
    "  vist3a render scene/scene.ply --out flythrough.mp4\n"
    "  vist3a render pointmaps/points.ply --out orbit.gif\n"
    "  vist3a render scene.ply --out orbit.mp4 --frames 120 --size 768 --depth-out depth.mp4\n"
    "  vist3a render model.ply --out spin.gif --up +z --background white --cameras-out cameras.json\n\n"
    "Scenes made by vist3a (and VGGT/AnySplat) use OpenCV world axes, where up is -y (the default --up); "
    "scenes from COLMAP-based 3DGS training often need --up -z or --up +z. "
    "Without ffmpeg, an .mp4 request writes a .gif instead. "
    "Rendering uses gsplat on a CUDA GPU when it is installed (pip install 'gsplat>=1.5'), "
    "otherwise the slower pure-PyTorch rasteriser."
)


def _parse_background(text: str) -> tuple[float, float, float]:
    if text.lower() in NAMED_BACKGROUNDS:
        return NAMED_BACKGROUNDS[text.lower()]
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise UserInputError(
            f"--background must be one of {', '.join(NAMED_BACKGROUNDS)} or 'R,G,B' with values in [0, 1], got {text!r}"
        )
    return values


def _check_video_path(option: str, path: Path) -> None:
    from vist3a.media import VIDEO_SUFFIXES

    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserInputError(f"{option} must end in {' or '.join(VIDEO_SUFFIXES)}, got {str(path)!r}")


def _resolve_device(device: str):
    return options.parse_device(device)


def register(app: typer.Typer) -> None:
    @app.command("render", help=HELP, no_args_is_help=True)
    def render_cmd(
        scene: Path = typer.Argument(
            ..., help="Splat file to render (.ply in the 3DGS layout, or .splat), or a point-cloud .ply.",
            show_default=False
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output video (.mp4 or .gif).", show_default=False),
        frames: int = typer.Option(60, help="Number of frames (one full turn)."),
        size: int = typer.Option(512, help="Width and height of the square video in pixels."),
        fps: float = typer.Option(24.0, help="Frames per second of the video."),
        elevation: float = typer.Option(20.0, help="Camera height above the scene's horizontal plane, in degrees."),
        radius: str = typer.Option("auto", help="Camera distance from the scene centre, or 'auto' to fit the scene."),
        fov: float = typer.Option(50.0, help="Horizontal field of view in degrees."),
        up: str = typer.Option("-y", help=f"World up axis, one of {', '.join(UP_AXES)}."),
        background: str = typer.Option("black", help="Background: black, white, gray or R,G,B in [0, 1]."),
        depth_out: Path | None = typer.Option(None, help="Also write a colourised depth video here (.mp4 or .gif)."),
        cameras_out: Path | None = typer.Option(None, help="Also write the cameras as JSON (OpenCV w2c, intrinsics)."),
        sh_degree: int | None = typer.Option(None, help="Use SH bands up to this degree (default: all in the file)."),
        backend: str = typer.Option("auto", help="Rasteriser: auto, gsplat (CUDA) or torch."),
        device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    ) -> None:
        import logging

        import torch

        from vist3a.cameras import save_cameras_json
        from vist3a.media import depth_to_colormap, write_video
        from vist3a.splats import BACKENDS, load_gaussians
        from vist3a.splats.flythrough import orbit_cameras, render_frames
        from vist3a.splats.ply import is_point_cloud_ply

        _check_video_path("--out", out)
        if depth_out is not None:
            _check_video_path("--depth-out", depth_out)
        for name, value, low in (("--frames", frames, 1), ("--size", size, 2)):
            if value < low:
                raise UserInputError(f"{name} must be >= {low}, got {value}")
        if not fps > 0:
            raise UserInputError(f"--fps must be > 0, got {fps}")
        if not -90.0 < elevation < 90.0:
            raise UserInputError(f"--elevation must be strictly between -90 and 90 degrees, got {elevation}")
        if not 0.0 < fov < 180.0:
            raise UserInputError(f"--fov must be strictly between 0 and 180 degrees, got {fov}")
        if up not in UP_AXES:
            raise UserInputError(f"--up must be one of {', '.join(UP_AXES)}, got {up!r}")
        if backend not in BACKENDS:
            raise UserInputError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        distance = None
        if radius != "auto":
            try:
                distance = float(radius)
            except ValueError:
                distance = -1.0
            if not distance > 0:
                raise UserInputError(f"--radius must be 'auto' or a positive number, got {radius!r}")
        bg = _parse_background(background)
        dev = _resolve_device(device)

        # show gsplat's one-time JIT notice (about 90 s of silence otherwise) even at the CLI's WARNING level
        logging.getLogger("vist3a.splats.raster_gsplat").setLevel(logging.INFO)
        what = "points" if is_point_cloud_ply(scene) else "splats"
        gaussians = load_gaussians(scene, device=dev, point_clouds=True)
        if sh_degree is not None and not 0 <= sh_degree <= gaussians.sh_degree:
            raise UserInputError(f"--sh-degree must be in [0, {gaussians.sh_degree}] for {scene}, got {sh_degree}")
        w2c, K = orbit_cameras(
            gaussians,
            frames,
            size,
            size,
            fov_deg=fov,
            elevation_deg=elevation,
            radius=distance,
            up=torch.tensor(UP_AXES[up], dtype=torch.float64),
        )
        result = render_frames(
            gaussians,
            w2c,
            K,
            size,
            size,
            backend=backend,
            background=torch.tensor(bg),
            sh_degree=sh_degree,
        )
        written = [write_video(out, result.colors, fps=fps)]
        if depth_out is not None:
            depth_rgb = depth_to_colormap(result.depths, valid=result.alphas > 0.5)
            written.append(write_video(depth_out, depth_rgb, fps=fps))
        if cameras_out is not None:
            written.append(save_cameras_json(cameras_out, w2c, K, size, size))
        typer.echo(
            f"rendered {frames} frames of {len(gaussians)} {what} at "
            f"{size}x{size}: " + ", ".join(map(str, written))
        )
