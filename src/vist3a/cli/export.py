"""``vist3a export``: a scene folder -> files other tools open (.spz, compressed PLY, GLB, nerfstudio, COLMAP)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError

HELP = """Export a scene folder (from `vist3a generate` or `reconstruct`) to other tools' formats.

Formats: spz (Niantic, ~8x smaller than PLY), compressed-ply (PlayCanvas/SuperSplat), splat (antimatter15),
glb (point cloud + camera frustums), nerfstudio (transforms.json + images: ns-train splatfacto), colmap
(sparse/0/*.txt + images: COLMAP, gsplat's trainer), all. Axes and units of each: docs/formats.md.

Examples:

  vist3a export scene/ --format spz --format glb

  vist3a export scene/ --format all --out scene_exports/
"""


def register(app: typer.Typer) -> None:
    @app.command("export", help=HELP)
    def export(
        scene_dir: Path = typer.Argument(..., help="A scene folder (scene.ply or points.ply, cameras.json, ...)."),
        formats: list[str] = typer.Option(
            ..., "--format", "-f", help="spz | compressed-ply | splat | glb | nerfstudio | colmap | all (repeatable)."
        ),
        out: Path = typer.Option(None, "--out", "-o", help="Folder for the exports (default: SCENE_DIR)."),
        sh_degree: int = typer.Option(
            3, "--sh-degree", help="Highest SH degree in .spz (0-4) and compressed PLY (at most 3)."
        ),
        overwrite: bool = options.overwrite_option(
            "Replace existing export files in an --out folder that is not a vist3a scene folder."
        ),
    ) -> None:
        from vist3a.exports import FORMATS, export_scene, parse_formats

        if not 0 <= sh_degree <= 4:
            raise UserInputError(f"--sh-degree must be 0, 1, 2, 3 or 4, got {sh_degree}")
        names = parse_formats(formats)  # unknown names fail before the scene is read
        dest = out or scene_dir
        if not overwrite and not options.is_vist3a_output(dest, ("meta.json",)):
            taken = [FORMATS[n].target for n in names if (dest / FORMATS[n].target).exists()]
            if taken:
                raise UserInputError(f"--out '{dest}' already holds {', '.join(taken)}; choose another --out or "
                                     "pass --overwrite to replace them")
        options.check_writable(dest)
        written = export_scene(scene_dir, formats, out_dir=out, sh_degree=sh_degree)
        for name, path in written.items():
            typer.echo(f"{name:>15}: {path}")
