"""``vist3a render``: placeholder until its issue lands."""

from __future__ import annotations

import typer

from vist3a.errors import UserInputError


def register(app: typer.Typer) -> None:
    @app.command("render", help="(not available yet in this version)")
    def _cmd() -> None:
        raise UserInputError("'vist3a render' is not available yet in this version of vist3a")
