"""Entry point of the ``vist3a`` command.

Each sub-command lives in its own module with a ``register(app)`` function; this file only assembles
them and turns :class:`~vist3a.errors.UserInputError` into a one-line message and exit code 2. Heavy
imports (torch, diffusers) happen inside the commands so that ``vist3a --help`` stays fast.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys

import typer

from vist3a.cli import align, export, generate, info, nano, reconstruct, render, stitch, view
from vist3a.cli import app as app_cmd
from vist3a.errors import UserInputError

app = typer.Typer(
    name="vist3a",
    help=(
        "Text-to-3D generation with VIST3A: a video diffusion model whose latents are decoded into 3D "
        "Gaussian splats by a stitched 3D reconstruction network.\n\n"
        "Start with:  vist3a generate \"a red cube left of a blue sphere\" --out scene/"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for module in (generate, render, info, reconstruct, stitch, align, nano, export, view, app_cmd):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become ``error: ...`` on stderr and exit code 2, never a traceback."""
    # Idle OpenMP threads sleep instead of spinning (read when torch loads, so before any command imports it).
    # With spinning, a 2-core machine with one core busy elsewhere ran torch's CPU ops up to 15x slower than
    # with one thread; sleeping costs little when the machine is idle. An OMP_WAIT_POLICY already set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Interpreter shutdown ends with a garbage collection over every object that torch, diffusers and
    # transformers made at import: ~1.6 s of the wall time of `vist3a generate` on a 2-core machine. Nothing
    # needs collecting by then, so at exit those objects are frozen out of that last collection.
    atexit.register(gc.freeze)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name="vist3a")
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: no partial output was left behind", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
