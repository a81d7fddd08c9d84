"""``jitprov``: the typer app assembled from the command modules, and the console script.

Every command finds the database through ``--database-url`` or ``JITPROV_DATABASE_URL``
(default: the embedded SQLite file ``var/jitprov.db``). Errors are one line on stderr and exit
code 2; ``audit verify`` exits 1 when a chain is broken.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from jitprov import __version__
from jitprov.cli import (
    accounts,
    admin_tokens,
    approvals,
    audit,
    break_glass,
    config_file,
    connections,
    console,
    db,
    devices,
    grants,
    keys,
    links,
    mapping,
    scim,
    secret_keys,
    serve,
    tenants,
    webhooks,
)
from jitprov.cli.common import close_databases
from jitprov.core.errors import JitprovError
from jitprov.core.text import check_text
from jitprov.settings import SettingsError

try:  # typer vendors click since 0.2x; its own exceptions are raised then
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - an older typer on the real click
    from click import exceptions as click_errors  # type: ignore[no-redef]

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="jitprov: Just-in-Time user provisioning.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"jitprov {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="print the version and exit")] = False) -> None:
    """jitprov: Just-in-Time user provisioning."""
app.command("access-review")(audit.access_review_cmd)
app.command("serve")(serve.serve)
app.command("dev")(serve.dev)
app.command("export")(config_file.export_cmd)
app.command("apply")(config_file.apply_cmd)
for sub, name in ((admin_tokens.token_app, "admin-token"), (approvals.approvals_app, "approvals"),
                  (db.db_app, "db"), (tenants.tenant_app, "tenant"),
                  (connections.connection_app, "connection"), (mapping.mapping_app, "mapping"),
                  (accounts.users_app, "users"), (audit.audit_app, "audit"),
                  (keys.keys_app, "keys"), (webhooks.webhooks_app, "webhooks"),
                  (accounts.lifecycle_app, "lifecycle"),
                  (break_glass.break_glass_app, "break-glass"),
                  (scim.scim_app, "scim-token"), (devices.device_app, "device"),
                  (devices.passkey_app, "passkey"), (console.console_app, "admin"),
                  (grants.grants_app, "grants")):
    app.add_typer(sub, name=name)
app.add_typer(links.links_app, name="links")
app.add_typer(secret_keys.secrets_app, name="secrets")


def main(argv: list[str] | None = None) -> None:
    """The console script. Exits 0, 1 (``audit verify`` found a broken chain) or 2 (error)."""
    try:
        for index, arg in enumerate(sys.argv[1:] if argv is None else argv, start=1):
            check_text(arg, f"argument {index}")  # core.text's rule: one line, exit 2
        result = app(args=argv, prog_name="jitprov", standalone_mode=False)
    except (JitprovError, SettingsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click_errors.NoArgsIsHelpError as exc:  # `jitprov users`: its help
        typer.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(2)
    except click_errors.UsageError as exc:  # one line, naming where the help is
        where = exc.ctx.command_path if exc.ctx else "jitprov"
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {message} (see `{where} --help`)", err=True)
        sys.exit(2)
    except click_errors.ClickException as exc:
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    finally:
        close_databases()
    sys.exit(result if isinstance(result, int) else 0)
