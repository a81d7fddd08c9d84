"""``jitprov keys rotate``: the keys that sign identity tokens for apps."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, context_for
from jitprov.services.identity_tokens import rotate_keys

keys_app = typer.Typer(no_args_is_help=True, help="Keys that sign identity tokens for apps.")


@keys_app.command("rotate")
def keys_rotate(overlap_hours: Annotated[int, typer.Option(
                    min=0, max=24 * 366,
                    help="how long the previous key stays published (at most a year)")] = 24,
                database_url: DatabaseUrl = None) -> None:
    """Make a new signing key; tokens signed by the previous one verify during the overlap."""
    kid = rotate_keys(context_for(database_url),
                      overlap=timedelta(hours=overlap_hours))
    typer.echo(f"signing key {kid} active; the next key is published ahead of its use; "
               f"previous keys stay published for {overlap_hours} h")
