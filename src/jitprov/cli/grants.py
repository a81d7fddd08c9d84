"""``jitprov grants add|revoke|unblock|list``: one role granted or revoked by hand, and the
overrides (blocks) that keep a role off an account whatever the rules say."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, JsonOutput, context_for
from jitprov.services import accounts

grants_app = typer.Typer(no_args_is_help=True, help="Manual grants and role blocks.")

Tenant = Annotated[str, typer.Option("--tenant", help="tenant slug")]
AccountId = Annotated[str, typer.Option("--account", help="the account id")]
Role = Annotated[str, typer.Option("--role", help="letters, digits and . _ : - (1 to 64)")]
Reason = Annotated[str, typer.Option("--reason", help="recorded in the audit log")]
ACTOR = "cli"


@grants_app.command("add")
def grants_add(tenant: Tenant, account: AccountId, role: Role, reason: Reason,
               expires_in_days: Annotated[int | None, typer.Option(
                   "--expires-in-days", min=1, max=accounts.MAX_GRANT_DAYS,
                   help="time-bound: the grant stops counting after")] = None,
               database_url: DatabaseUrl = None) -> None:
    """Grant one role by hand (source manual; rules never revoke it)."""
    change = accounts.grant_role(context_for(database_url), tenant, account, role,
                                 reason=reason, actor=ACTOR, expires_in_days=expires_in_days)
    until = f" until {change.expires_at.isoformat(timespec='seconds')}" \
        if change.expires_at else ""
    typer.echo(f"account {account}: {change.role} granted (manual){until}")


@grants_app.command("revoke")
def grants_revoke(tenant: Tenant, account: AccountId, role: Role, reason: Reason,
                  block: Annotated[bool, typer.Option(
                      "--block", help="keep the role off this account, rules included, "
                      "until `grants unblock`")] = False,
                  database_url: DatabaseUrl = None) -> None:
    """Revoke a role granted by hand, by approval, SCIM or break-glass. A role a rule grants
    is refused (it would come back at the next login) unless --block."""
    change = accounts.revoke_role(context_for(database_url), tenant, account, role,
                                  reason=reason, actor=ACTOR, block=block)
    what = f"revoked ({change.source})" if change.source else "not held"
    typer.echo(f"account {account}: {role} {what}"
               + ("; blocked until `grants unblock`" if change.blocked else ""))


@grants_app.command("unblock")
def grants_unblock(tenant: Tenant, account: AccountId, role: Role, reason: Reason,
                   database_url: DatabaseUrl = None) -> None:
    """Lift a block: rules may grant the role again from the next login."""
    accounts.unblock_role(context_for(database_url), tenant, account, role, reason=reason,
                          actor=ACTOR)
    typer.echo(f"account {account}: {role} unblocked")


@grants_app.command("list")
def grants_list(tenant: Tenant,
                account: Annotated[str | None, typer.Option(
                    "--account", help="one account id")] = None,
                as_json: JsonOutput = False,
                database_url: DatabaseUrl = None) -> None:
    """Grants in force (expired ones are not held) with provenance and expiry, and blocks."""
    listing = accounts.list_grants(context_for(database_url), tenant, account_id=account)
    if as_json:
        typer.echo(json.dumps({
            "grants": [{"account_id": g.account_id, "email": g.email, "role": g.role,
                        "source": g.source, "granted_by": g.granted_by,
                        "granted_at": g.granted_at.isoformat(),
                        "expires_at": g.expires_at.isoformat() if g.expires_at else None}
                       for g in listing.grants],
            "overrides": [{"account_id": b.account_id, "email": b.email, "role": b.role,
                           "effect": "blocked", "blocked_by": b.blocked_by,
                           "blocked_at": b.blocked_at.isoformat(), "reason": b.reason}
                          for b in listing.blocks]}, indent=2))
        return
    if not listing.grants and not listing.blocks:
        typer.echo(f"tenant {tenant}: no grant")
    for g in listing.grants:
        until = g.expires_at.isoformat(timespec="seconds") if g.expires_at else "never"
        typer.echo(f"{g.account_id}\t{g.email or '-'}\t{g.role}\t{g.source}\t"
                   f"by {g.granted_by}\t{g.granted_at.isoformat(timespec='seconds')}\t"
                   f"expires {until}")
    for b in listing.blocks:
        typer.echo(f"{b.account_id}\t{b.email or '-'}\t{b.role}\tBLOCKED\tby {b.blocked_by}\t"
                   f"{b.blocked_at.isoformat(timespec='seconds')}\t{b.reason}")
