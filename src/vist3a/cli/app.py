"""``vist3a app``: the gradio demo (prompt -> 3D scene in the browser; a reconstruct tab)."""

from __future__ import annotations

from pathlib import Path

import typer

from vist3a.cli import options
from vist3a.errors import UserInputError

HELP = """Start the web demo: a prompt box, generation settings, an interactive 3D view of the scene, the videos
and every file to download, and a tab that reconstructs uploaded images or a video. Models stay loaded between
requests; with --device auto or cuda every visible GPU serves one request at a time with its own models
(CUDA_VISIBLE_DEVICES picks them). Binds 127.0.0.1; --share asks gradio for a public link. Needs
pip install -e ".[app]".

Example:  vist3a app          (then open http://127.0.0.1:7860)
"""


def register(app: typer.Typer) -> None:
    @app.command("app", help=HELP)
    def run_app(
        port: int = typer.Option(7860, "--port", help="Port to serve on."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes the app."),
        share: bool = typer.Option(False, "--share", help="Also create a public gradio.live link."),
        preset: str = typer.Option("nano", "--preset", help="Preset selected at start."),
        device: str = options.device_option(),
        out: Path = typer.Option(Path("outputs/app"), "--out", help="Folder for the generated scenes."),
    ) -> None:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise UserInputError('vist3a app needs gradio: pip install -e ".[app]"') from None
        from vist3a.app import SceneService, launch

        dev = str(options.parse_device(device))

        typer.echo(f"vist3a app: http://{host}:{port}  (scenes go to {out}/; Ctrl-C to stop)")
        launch(SceneService(out, dev), host=host, port=port, share=share, default_preset=preset)
