"""What every ``jitprov`` command shares: the ``--database-url`` option, the one-line error,
settings loading and the service context.

Every command finds the database through ``--database-url`` or ``JITPROV_DATABASE_URL``
(default: the embedded SQLite file ``var/jitprov.db``). The databases a command opens are
disposed when it ends (:func:`close_databases`, called by ``main``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer

from jitprov.core.errors import DatabaseNotReady, JitprovError
from jitprov.services import instance
from jitprov.services.context import ServiceContext, build_context, database_limits
from jitprov.settings import Settings, load_settings
from jitprov.store.database import Database

DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", envvar="JITPROV_DATABASE_URL",
    help="sqlite:///path or postgresql://user@host/db (default: sqlite:///var/jitprov.db)")]


Reason = Annotated[str, typer.Option("--reason", help="why (recorded in the audit log)")]
JsonOutput = Annotated[bool, typer.Option(
    "--json", help="print JSON (for programs) instead of text")]


class CliError(JitprovError):
    """A mistake in the command line or its files: one line on stderr, exit code 2."""

    code = "cli_error"


def cli_settings(database_url: str | None, *, dev_mode: bool = False) -> Settings:
    """The settings from the environment, with ``--database-url`` over them when given (the
    secret key file of an SQLite database is the one beside the database named here)."""
    return load_settings(dev_mode=dev_mode, database_url=database_url)


_OPENED: list[Database] = []  # disposed when the command ends (close_databases)


def open_database(settings: Settings) -> Database:
    """The settings' database (with their time limits), disposed when the command ends."""
    db = Database.connect(settings.database_url, pool_size=2,
                          limits=database_limits(settings),
                          pooling=settings.db_transaction_pooling)
    _OPENED.append(db)
    return db


def close_databases() -> None:
    while _OPENED:
        _OPENED.pop().dispose()


def service_context(settings: Settings, *, migrated: bool = True) -> ServiceContext:
    """A context on the settings' database; refuses a database whose schema is behind, and
    (before touching the database) settings without a secret key."""
    settings.require_key()
    db = open_database(settings)
    if migrated:
        db.require_current()
    return build_context(settings, db)


def public_settings(database_url: str | None) -> Settings:
    """:func:`cli_settings` with the base URL the server on this database last ran under
    (``serve``/``dev`` record it), for commands that print links or redirect URIs;
    ``JITPROV_BASE_URL``, when set, wins."""
    settings = cli_settings(database_url)
    if os.environ.get("JITPROV_BASE_URL"):
        return settings
    try:
        recorded = instance.recorded_base_url(service_context(settings))
    except DatabaseNotReady:  # not migrated yet: the command itself will say so
        return settings
    return settings.with_overrides(base_url=recorded) if recorded else settings


def context_for(database_url: str | None) -> ServiceContext:
    """The context most commands need: from the environment and ``--database-url``."""
    return service_context(cli_settings(database_url))


def read_text(path: Path) -> str:
    """A UTF-8 file the user named; an unreadable one is a :class:`CliError`."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc


def print_rows(rows: Sequence[Mapping[str, object]], columns: Sequence[str], *,
               as_json: bool = False) -> None:
    """A list for people (aligned columns under a header, ``none`` when empty) or, with
    ``--json``, for programs (a JSON array of objects, ``[]`` when empty)."""
    if as_json:
        typer.echo(json.dumps([dict(row) for row in rows], default=str, ensure_ascii=False))
        return
    if not rows:
        typer.echo("none")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells))
              for i, column in enumerate(columns)]
    for line in ([c.upper() for c in columns], *cells):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
                   .rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
