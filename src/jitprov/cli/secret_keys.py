"""``jitprov secrets``: the master key that seals every secret kept at rest.

``init`` generates a key (32 random bytes) and says where it went; ``rotate`` re-seals every
stored secret with the newest key of ``JITPROV_SECRET_KEYS``; ``check`` tells whether the
configured keys open what is stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from jitprov.cli.common import CliError, DatabaseUrl, context_for
from jitprov.services.key_rotation import rotate_secrets
from jitprov.services.readiness import readiness
from jitprov.settings import DEFAULT_DATABASE_URL, generate_key, key_file_for, write_key_file

secrets_app = typer.Typer(no_args_is_help=True,
                          help="The master key that seals stored secrets: init, rotate, check.")


@secrets_app.command("init")
def secrets_init(file: Annotated[Path | None, typer.Option(
                     "--file", help="where to write the key (default: secret.key beside an "
                                    "SQLite database; for PostgreSQL the key is printed)")] = None,
                 database_url: DatabaseUrl = None) -> None:
    """Generate a secret key (32 random bytes) and say where it went. Never overwrites one."""
    url = database_url or DEFAULT_DATABASE_URL
    path = file or key_file_for(url)
    key = generate_key()
    if path is None:
        typer.echo(key)
        typer.echo("set this value as JITPROV_SECRET_KEY on every node (or write it to a file "
                   "named by JITPROV_SECRET_KEY_FILE); keep it with the database backups",
                   err=True)
        return
    try:
        write_key_file(path, key)
    except FileExistsError:
        raise CliError(f"{path} already exists: a key in use is never replaced (the secrets it "
                       "sealed would be lost); to change keys, see `jitprov secrets rotate "
                       "--help`") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    if file is None:
        typer.echo(f"secret key written to {path} (mode 0600): jitprov reads it for the "
                   f"database {url} when no JITPROV_SECRET_KEY is set; back it up with the "
                   "database")
    else:
        typer.echo(f"secret key written to {path} (mode 0600): set "
                   f"JITPROV_SECRET_KEY_FILE={path} (or its content as JITPROV_SECRET_KEY) "
                   "on every node")
    if os.environ.get("JITPROV_SECRET_KEY") or os.environ.get("JITPROV_SECRET_KEYS"):
        typer.echo("note: JITPROV_SECRET_KEY(S) is set in this environment and wins over "
                   "the file", err=True)


@secrets_app.command("rotate")
def secrets_rotate(dry_run: Annotated[bool, typer.Option(
                       "--dry-run", help="count what would be re-sealed, change nothing")] = False,
                   database_url: DatabaseUrl = None) -> None:
    """Re-seal every stored secret with the newest key.

    Rotation: put the new key first in JITPROV_SECRET_KEYS=new,old on every node and restart
    them, run this (idempotent; run it again if it was interrupted), then remove the old key.
    """
    report = rotate_secrets(context_for(database_url), dry_run=dry_run)
    verb = "to re-seal" if dry_run else "re-sealed"
    for kind, count in report.kinds.items():
        typer.echo(f"{kind}: {count.resealed} {verb}, {count.current} already under the "
                   f"newest key"
                   + (f", {count.changed_meanwhile} changed meanwhile"
                      if count.changed_meanwhile else "")
                   + (f", {count.unreadable} UNREADABLE" if count.unreadable else ""))
    if report.unreadable:
        raise CliError(f"{report.unreadable} stored secret(s) open with no configured key "
                       "(left as they are): add the key that sealed them to "
                       "JITPROV_SECRET_KEYS and run this again")


@secrets_app.command("check")
def secrets_check(database_url: DatabaseUrl = None) -> None:
    """Whether the configured keys open the stored secrets (what `serve` checks at start)."""
    state = readiness(context_for(database_url))
    if not state.ready:
        raise CliError(f"{state.failing}: {state.checks[state.failing or '']}")
    typer.echo("ok: the secret key opens the stored secrets")
