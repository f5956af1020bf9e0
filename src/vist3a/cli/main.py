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

import click
import typer

from vist3a.cli import align, export, generate, info, interrupts, nano, reconstruct, refine, render, stitch, view
from vist3a.cli import app as app_cmd
from vist3a.cli import eval as eval_cli
from vist3a.errors import UserInputError
from vist3a.io_utils import INTERRUPTED

#: ``VIST3A_VERBOSITY`` (as diffusers' ``DIFFUSERS_VERBOSITY``): how much of vist3a's own logging reaches stderr.
VERBOSITY_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

app = typer.Typer(
    name="vist3a",
    help=(
        "Text-to-3D generation with VIST3A: a video diffusion model whose latents are decoded into 3D "
        "Gaussian splats by a stitched 3D reconstruction network.\n\n"
        "Start with:\n\n\b\n  vist3a generate \"a red cube left of a blue sphere\" --out scene/"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without <bool>, example blocks (marked \b) kept as written
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)

for module in (generate, render, info, reconstruct, stitch, align, nano, eval_cli, refine, export, view, app_cmd):
    module.register(app)



def _click_classes(name: str) -> tuple[type, ...]:
    """Class ``name`` of click and of the copy of click that newer typer versions carry (distinct classes)."""
    modules = {click.exceptions, sys.modules[typer.BadParameter.__module__]}
    return tuple({getattr(m, name) for m in modules if hasattr(m, name)})


_CLICK_ERRORS = _click_classes("ClickException")
_HELP_ERRORS = _click_classes("NoArgsIsHelpError")  # a command called without arguments: its help, exit 2
_ABORTS = (KeyboardInterrupt, click.exceptions.Abort, typer.Abort)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become ``error: ...`` on stderr and exit code 2, never a traceback.

    SIGINT and SIGTERM (:mod:`vist3a.cli.interrupts`) print one "interrupted" line and exit 130 / 143; the
    outputs that existed before the command are kept.
    """
    # Idle OpenMP threads sleep instead of spinning (read when torch loads, so before any command imports it).
    # With spinning, a 2-core machine with one core busy elsewhere ran torch's CPU ops up to 15x slower than
    # with one thread; sleeping costs little when the machine is idle. An OMP_WAIT_POLICY already set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Interpreter shutdown ends with a garbage collection over every object that torch, diffusers and
    # transformers made at import: ~1.6 s of the wall time of `vist3a generate` on a 2-core machine. Nothing
    # needs collecting by then, so at exit those objects are frozen out of that last collection.
    atexit.register(gc.freeze)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if (verbosity := os.environ.get("VIST3A_VERBOSITY")) is not None:  # unset: warnings, or what the caller chose
        if verbosity.strip().lower() not in VERBOSITY_LEVELS:
            print(f"error: VIST3A_VERBOSITY must be one of {', '.join(VERBOSITY_LEVELS)}, got {verbosity!r}",
                  file=sys.stderr)
            raise SystemExit(2)
        # vist3a's loggers only: the libraries' own logs stay at warnings
        logging.getLogger("vist3a").setLevel(VERBOSITY_LEVELS[verbosity.strip().lower()])
    INTERRUPTED.clear()
    interrupts.install()
    try:
        code = app(args=argv, prog_name="vist3a", standalone_mode=False)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except _HELP_ERRORS as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except _CLICK_ERRORS as exc:  # usage errors (unknown option, bad type, missing argument): exit 2
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except _ABORTS:
        code = 130
    if INTERRUPTED.is_set() or code == 130:  # typer turns KeyboardInterrupt into a silent exit code 130
        print(interrupts.message(), file=sys.stderr)
        raise SystemExit(interrupts.exit_code())
    raise SystemExit(code if isinstance(code, int) else 0)


def run(argv: list[str | os.PathLike]) -> int:
    """:func:`main` on ``argv`` (paths are made strings), returning its exit code instead of exiting: for tests and
    for Python code that drives the CLI."""
    try:
        main([str(arg) for arg in argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


if __name__ == "__main__":
    main()
