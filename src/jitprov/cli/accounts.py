"""``jitprov users ...`` and ``jitprov lifecycle sweep``: accounts, their status, and dormant
accounts."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, JsonOutput, Reason, context_for
from jitprov.services import accounts, admin, lifecycle

users_app = typer.Typer(no_args_is_help=True, help="Accounts.")
lifecycle_app = typer.Typer(no_args_is_help=True, help="Dormant accounts.")


@users_app.command("list")
def users_list(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
               as_json: JsonOutput = False,
               database_url: DatabaseUrl = None) -> None:
    """Accounts of a tenant with their roles and provenance."""
    views = admin.list_accounts(context_for(database_url), tenant)
    if as_json:
        typer.echo(json.dumps([{
            "id": v.account.id, "status": v.account.status, "email": v.account.email,
            "name": v.account.profile.get("name"), "roles": sorted(v.account.roles),
            "grants": [{"role": g.role, "source": g.source} for g in sorted(v.account.grants)],
            "groups": sorted(v.account.groups), "provisioned_by": v.account.provisioned_by,
            "identities": [{"connection": i.connection, "subject": i.subject}
                           for i in v.identities],
            "created_at": v.created_at.isoformat(),
            "last_login_at": v.last_login_at.isoformat() if v.last_login_at else None,
        } for v in views], indent=2))
        return
    if not views:
        typer.echo(f"tenant {tenant} has no accounts yet")
    for v in views:
        roles = ",".join(sorted(v.account.roles)) or "-"
        last = v.last_login_at.isoformat(timespec="seconds") if v.last_login_at else "never"
        typer.echo(f"{v.account.id}\t{v.account.status}\t{v.account.email or '-'}\t{roles}\t"
                   f"{v.account.provisioned_by}\tlast login {last}")


@users_app.command("deactivate")
def users_deactivate(account_id: str, reason: Reason,
                     database_url: DatabaseUrl = None) -> None:
    """Deactivate an account: its sessions end now, and logins are refused until reactivated."""
    change = accounts.set_account_status(context_for(database_url), account_id,
                                      "deactivated", reason=reason)
    typer.echo(f"account {account_id} deactivated; {change.sessions_revoked} session(s) "
               "revoked")


@users_app.command("reactivate")
def users_reactivate(account_id: str, reason: Reason,
                     database_url: DatabaseUrl = None) -> None:
    """Reactivate a deactivated or suspended account (explicit and audited)."""
    accounts.set_account_status(context_for(database_url), account_id, "active",
                             reason=reason)
    typer.echo(f"account {account_id} reactivated")


@lifecycle_app.command("sweep")
def lifecycle_sweep(tenant: Annotated[str | None, typer.Option(
                        help="one tenant (default: all)")] = None,
                    dry_run: Annotated[bool, typer.Option(
                        "--dry-run", help="only print what would change")] = False,
                    database_url: DatabaseUrl = None) -> None:
    """Warn and deactivate dormant accounts per tenant policy (--dry-run: only print)."""
    verb = "would" if dry_run else "did"
    for r in lifecycle.sweep(context_for(database_url), tenant, dry_run=dry_run):
        if not r.policy.enabled:
            typer.echo(f"tenant {r.tenant}: no dormant-account policy")
            continue
        if r.skipped:
            typer.echo(f"tenant {r.tenant}: another node is sweeping it")
            continue
        typer.echo(f"tenant {r.tenant}: {verb} deactivate {len(r.deactivated)}, warn "
                   f"{len(r.warned)}, delete {len(r.deleted)}; {len(r.never_signed_in)} never "
                   "signed in (not touched)")
        for label, items in (("deactivate", r.deactivated), ("warn", r.warned),
                             ("delete", r.deleted),
                             ("never signed in", r.never_signed_in)):
            for item in items:
                typer.echo(f"  {label}: {item}")
