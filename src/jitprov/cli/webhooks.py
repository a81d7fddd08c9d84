"""``jitprov webhooks ...``: webhook endpoints, the delivery log, replays and a worker pass."""

from __future__ import annotations

from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, context_for
from jitprov.services import webhooks

webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook endpoints and deliveries.")


@webhooks_app.command("add")
def webhooks_add(tenant: Annotated[str, typer.Option("--tenant")],
                 url: Annotated[str, typer.Option("--url")],
                 events: Annotated[str, typer.Option(
                     "--events", help="comma-separated event types, or *")] = "*",
                 database_url: DatabaseUrl = None) -> None:
    """Subscribe an endpoint; prints its signing secret once (Standard Webhooks)."""
    created = webhooks.add_endpoint(context_for(database_url), tenant, url,
                                    events.split(","))
    typer.echo(f"webhook endpoint {created.id} added; signing secret (shown once):")
    typer.echo(created.secret)


@webhooks_app.command("list")
def webhooks_list(tenant: Annotated[str, typer.Option("--tenant")],
                  database_url: DatabaseUrl = None) -> None:
    for e in webhooks.list_endpoints(context_for(database_url), tenant):
        state = "enabled" if e.enabled else "disabled"
        typer.echo(f"{e.id}\t{e.url}\t{','.join(e.event_types)}\t{state}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(tenant: Annotated[str, typer.Option("--tenant")],
                        status: Annotated[str | None, typer.Option(
                            help="pending | delivered | dead")] = None,
                        database_url: DatabaseUrl = None) -> None:
    """The delivery log, newest first."""
    for d in webhooks.list_deliveries(context_for(database_url), tenant,
                                      status=status):
        detail = d.last_error or (f"HTTP {d.last_status}" if d.last_status else "")
        typer.echo(f"{d.id}\t{d.event_type}\t{d.status}\tattempts {d.attempts}\t{detail}")


@webhooks_app.command("replay")
def webhooks_replay(delivery_id: int, database_url: DatabaseUrl = None) -> None:
    """Send a (dead-lettered) delivery again."""
    webhooks.replay(context_for(database_url), delivery_id)
    typer.echo(f"delivery {delivery_id} queued again")


@webhooks_app.command("deliver")
def webhooks_deliver(database_url: DatabaseUrl = None) -> None:
    """Run one worker pass now (serve does this every second)."""
    report = webhooks.deliver_due(context_for(database_url))
    typer.echo(f"{report.dispatched} event(s) dispatched, {report.delivered} delivered, "
               f"{report.failed} failed")
