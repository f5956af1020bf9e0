"""``vist3a align``: placeholder until its issue lands."""

from __future__ import annotations

import typer

from vist3a.errors import UserInputError


def register(app: typer.Typer) -> None:
    @app.command("align", help="(not available yet in this version)")
    def _cmd() -> None:
        raise UserInputError("'vist3a align' is not available yet in this version of vist3a")
