"""What every ``jitprov`` command shares: the ``--database-url`` option, the one-line error,
settings loading and the service context.

Every command finds the database through ``--database-url`` or ``JITPROV_DATABASE_URL``
(default: the embedded SQLite file ``var/jitprov.db``). The databases a command opens are
disposed when it ends (:func:`close_databases`, called by ``main``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jitprov.core.errors import JitprovError
from jitprov.services.context import ServiceContext, build_context, database_limits
from jitprov.settings import Settings, load_settings
from jitprov.store.database import Database

DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", envvar="JITPROV_DATABASE_URL",
    help="sqlite:///path or postgresql://user@host/db (default: sqlite:///var/jitprov.db)")]


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
                          limits=database_limits(settings))
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


def context_for(database_url: str | None) -> ServiceContext:
    """The context most commands need: from the environment and ``--database-url``."""
    return service_context(cli_settings(database_url))


def read_text(path: Path) -> str:
    """A UTF-8 file the user named; an unreadable one is a :class:`CliError`."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
