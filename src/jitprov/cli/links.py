"""``jitprov links list|approve|refuse|clear``: links a first login asked for under
``linking.by_email: pending``, decided by an admin (``services/links.py``)."""

from __future__ import annotations

import json
import shlex
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, JsonOutput, context_for
from jitprov.services import links

links_app = typer.Typer(no_args_is_help=True,
                        help="Links of a login identity to an existing account, awaiting an "
                             "admin.")

Tenant = Annotated[str, typer.Option("--tenant", help="tenant slug")]
Reason = Annotated[str, typer.Option("--reason", help="why (recorded in the audit log)")]
Approver = Annotated[str | None, typer.Option(
    "--approver", help="who decides (recorded in the audit log as cli:NAME)")]
LinkId = Annotated[int, typer.Argument(min=1, max=2**31 - 1)]


def _actor(approver: str | None) -> str:
    return f"cli:{approver}" if approver else "cli"


@links_app.command("list")
def links_list(tenant: Tenant,
               refused: Annotated[bool, typer.Option(
                   "--refused", help="list the refusals that hold instead")] = False,
               as_json: JsonOutput = False,
               database_url: DatabaseUrl = None) -> None:
    """Links waiting for a decision (or, with --refused, refusals that hold), oldest first."""
    status = "refused" if refused else "pending"
    found = links.list_links(context_for(database_url), tenant, statuses=(status,))
    if as_json:
        typer.echo(json.dumps([links.as_json(link) for link in found], indent=2))
        return
    if not found:
        typer.echo(f"tenant {tenant}: no {status} links")
    for link in found:
        typer.echo(f"{link.id}\t{link.connection}/{link.subject}\t-> "
                   f"{link.account_email or link.account_id} ({link.account_status})\t"
                   f"requested {link.created_at.isoformat(timespec='seconds')}")


@links_app.command("approve")
def links_approve(link_id: LinkId, tenant: Tenant, reason: Reason, approver: Approver = None,
                  database_url: DatabaseUrl = None) -> None:
    """Bind the identity to the account: the person's next login signs in to it."""
    decision = links.decide_link(context_for(database_url), tenant, link_id, approve=True,
                                 reason=reason, actor=_actor(approver))
    link = decision.link
    typer.echo(f"link {link_id}: {link.connection}/{link.subject} now signs in to "
               f"{link.account_email or link.account_id}")


@links_app.command("refuse")
def links_refuse(link_id: LinkId, tenant: Tenant, reason: Reason, approver: Approver = None,
                 database_url: DatabaseUrl = None) -> None:
    """Refuse the link: the identity's logins are refused until the refusal is cleared."""
    decision = links.decide_link(context_for(database_url), tenant, link_id, approve=False,
                                 reason=reason, actor=_actor(approver))
    link = decision.link
    typer.echo(f"link {link_id}: refused; {link.connection}/{link.subject} cannot sign in "
               f"until `jitprov links clear {link_id} --tenant {shlex.quote(tenant)} "
               f"--reason ...`")


@links_app.command("clear")
def links_clear(link_id: LinkId, tenant: Tenant, reason: Reason, approver: Approver = None,
                database_url: DatabaseUrl = None) -> None:
    """Lift a refusal: the identity's next login is decided afresh (and may ask again)."""
    decision = links.clear_refusal(context_for(database_url), tenant, link_id, reason=reason,
                                   actor=_actor(approver))
    typer.echo(f"link {link_id}: refusal cleared for "
               f"{decision.link.connection}/{decision.link.subject}")
