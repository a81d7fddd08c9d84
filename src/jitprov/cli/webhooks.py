"""``jitprov webhooks ...``: webhook endpoints, the delivery log, replays and a worker pass."""

from __future__ import annotations

from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, JsonOutput, context_for, print_rows
from jitprov.core.events import WEBHOOK_EVENTS
from jitprov.services import webhooks

webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook endpoints and deliveries.")


@webhooks_app.command("add")
def webhooks_add(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
                 url: Annotated[str, typer.Option("--url", help="https:// endpoint URL")],
                 events: Annotated[str, typer.Option(
                     "--events", help="comma-separated event types (see `jitprov webhooks "
                                      "events`), or *")] = "*",
                 database_url: DatabaseUrl = None) -> None:
    """Subscribe an endpoint; prints its signing secret once (Standard Webhooks)."""
    created = webhooks.add_endpoint(context_for(database_url), tenant, url,
                                    events.split(","))
    typer.echo(f"webhook endpoint {created.id} added; signing secret (shown once):")
    typer.echo(created.secret)


@webhooks_app.command("list")
def webhooks_list(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
                  as_json: JsonOutput = False, database_url: DatabaseUrl = None) -> None:
    """The tenant's webhook endpoints."""
    endpoints = webhooks.list_endpoints(context_for(database_url), tenant)
    print_rows([{"id": e.id, "url": e.url, "events": list(e.event_types), "enabled": e.enabled}
                for e in endpoints], ["id", "url", "events", "enabled"], as_json=as_json)


@webhooks_app.command("events")
def webhooks_events(as_json: JsonOutput = False) -> None:
    """The event types an endpoint can subscribe to."""
    print_rows([{"event": name, "when": when} for name, when in WEBHOOK_EVENTS.items()],
               ["event", "when"], as_json=as_json)


@webhooks_app.command("deliveries")
def webhooks_deliveries(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
                        status: Annotated[str | None, typer.Option(
                            help="pending | delivered | dead")] = None,
                        as_json: JsonOutput = False,
                        database_url: DatabaseUrl = None) -> None:
    """The delivery log, newest first."""
    found = webhooks.list_deliveries(context_for(database_url), tenant, status=status)
    print_rows([{"id": d.id, "event": d.event_type, "status": d.status,
                 "attempts": d.attempts,
                 "detail": d.last_error or (f"HTTP {d.last_status}" if d.last_status else "")}
                for d in found], ["id", "event", "status", "attempts", "detail"],
               as_json=as_json)


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
