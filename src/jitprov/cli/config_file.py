"""``jitprov export`` and ``jitprov apply``: configuration as code.

``export`` prints the tenants (or one) as a YAML file: policies, connections with their
settings and mappings, verified domains, webhook endpoints; secrets as ``${ENV_VAR}``
references. ``apply -f FILE`` makes the database say what the file says, in one
transaction; ``--dry-run`` prints the plan (and the impact preview of each changed
mapping) and writes nothing; ``--prune`` also deletes what the file's tenants hold and the
file does not name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, context_for
from jitprov.cli.mapping import describe
from jitprov.services import config_file


def export_cmd(tenant: Annotated[str | None, typer.Option(
                   "--tenant", help="one tenant (default: every tenant)")] = None,
               database_url: DatabaseUrl = None) -> None:
    """Print the configuration (tenants, policies, connections, mappings, domains,
    webhooks) as YAML for `jitprov apply`; secrets appear as ${ENV_VAR} references."""
    typer.echo(config_file.export_config(context_for(database_url), tenant), nl=False)


def apply_cmd(file: Annotated[Path, typer.Option(
                  "--file", "-f", help="the configuration YAML file")],
              dry_run: Annotated[bool, typer.Option(
                  "--dry-run", help="print the plan and the impact of changed mappings; "
                                    "write nothing")] = False,
              prune: Annotated[bool, typer.Option(
                  "--prune", help="also delete the connections, domains and webhooks of "
                                  "the file's tenants that the file does not name")] = False,
              database_url: DatabaseUrl = None) -> None:
    """Make the database say what FILE says, all or nothing: one line per object created,
    updated or deleted; audited as apply:<sha256 of FILE>. A file with a mistake is refused
    whole, naming its line and key. ${NAME} references are read from the environment, never
    a JITPROV_* or PG* variable."""
    data = config_file.read_bounded(file)  # a huge file or a device is refused, not read
    source = config_file.load_source(data, str(file), base_dir=file.parent,
                                     env=os.environ)
    result = config_file.apply_config(context_for(database_url), source, dry_run=dry_run,
                                      prune=prune)
    for change in result.changes:
        typer.echo(str(change))
        slug = change.name.split("/", 1)[-1]
        report = result.previews.get(slug) if change.kind == "connection" else None
        if report is not None:
            for line in describe(report):
                typer.echo(f"    {line}")
    if dry_run:
        typer.echo(f"(dry run: {len(result.changes)} change(s) planned, nothing was "
                   "written)")
    elif result.changes:
        typer.echo(f"{len(result.changes)} change(s) applied as {result.actor}")
    else:
        typer.echo("no changes")
