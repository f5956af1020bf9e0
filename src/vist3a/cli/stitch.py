"""``vist3a stitch``: placeholder until the stitching issue lands."""

from __future__ import annotations

import typer

from vist3a.errors import UserInputError


def register(app: typer.Typer) -> None:
    stitch_app = typer.Typer(help="(not available yet in this version)", no_args_is_help=True)

    @stitch_app.command("search", help="(not available yet in this version)")
    def _search() -> None:
        raise UserInputError("'vist3a stitch search' is not available yet in this version of vist3a")

    app.add_typer(stitch_app, name="stitch")
