"""``vist3a view``: open a scene folder or a splat / point-cloud file in a local web viewer (viser)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.errors import UserInputError

HELP = """Show a scene in the browser: Gaussians, predicted cameras with their frames, point clouds (with a confidence
slider for pointmaps) and a fly-through along the cameras. Needs viser (pip install -e ".[view]").

Examples:

  vist3a view scene/                 (a folder written by vist3a generate / reconstruct)

  vist3a view scene/scene.spz --port 8081
"""


def register(app: typer.Typer) -> None:
    @app.command("view", help=HELP)
    def view(
        path: Path = typer.Argument(..., help="Scene folder, or a .ply / .splat / .spz file."),
        port: int = typer.Option(8080, "--port", help="Port (the next free one is used if taken)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes the viewer."),
    ) -> None:
        try:
            import viser  # noqa: F401
        except ImportError:
            raise UserInputError('vist3a view needs viser: pip install -e ".[view]"') from None
        from vist3a.viewer import serve

        serve(path, host=host, port=port)
