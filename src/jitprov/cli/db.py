"""``jitprov db upgrade``: create or migrate the database schema."""

from __future__ import annotations

import typer

from jitprov.cli.common import DatabaseUrl, cli_settings, open_database

db_app = typer.Typer(no_args_is_help=True, help="Database schema.")


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Create or migrate the schema to the newest version."""
    db = open_database(cli_settings(database_url))
    before, after = db.upgrade()
    typer.echo(f"database {db.safe_url}: schema {before or 'empty'} -> {after}")
