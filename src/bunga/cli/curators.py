"""``bunga curator``: who may use the review page. A curator signs in with a token only they hold;
the service keeps only its sha256 (``BUNGA_CURATORS``)."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Annotated

import typer

from bunga.cli.common import app, console, friendly, settings

curator_app = typer.Typer(help="Make curators' tokens for the review page.", no_args_is_help=True)
app.add_typer(curator_app, name="curator")


@curator_app.command("add")
@friendly
def add(
    name: Annotated[str, typer.Argument(help="The curator's name (1-64 of A-Z a-z 0-9 _ -), e.g. ani")],
) -> None:
    """Make a strong token for a new curator (or a new token for one who lost theirs) and print the
    BUNGA_CURATORS value that admits them, with the curators already set. Give the token to the
    curator (it is shown once and stored nowhere); set the value and restart the service."""
    from bunga.errors import BungaError
    from bunga.schemas import curator_name

    try:
        curator_name(name)
    except ValueError as err:
        raise BungaError(str(err), 2) from None
    token = secrets.token_urlsafe(32)
    curators = {**settings().curators, name: hashlib.sha256(token.encode()).hexdigest()}
    value = json.dumps(curators, sort_keys=True, separators=(",", ":"))
    console.print(f"token for {name} (give it to them; it is shown only now): {token}", highlight=False, soft_wrap=True)
    console.print("set this, then restart the service (the review page is /review):", highlight=False)
    typer.echo(f"BUNGA_CURATORS='{value}'")
