"""``jitprov device`` and ``jitprov passkey``: shared devices, the frontline policy, declared
IdP outages, and passkeys (list, revoke). Same services as the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from jitprov.cli.common import (
    DatabaseUrl,
    JsonOutput,
    context_for,
    print_rows,
    public_settings,
    service_context,
)
from jitprov.protocols.webauthn import RelyingParty
from jitprov.services import devices, passkeys

device_app = typer.Typer(no_args_is_help=True, help="Shared devices (kiosks) and their policy.")
passkey_app = typer.Typer(no_args_is_help=True, help="Passkeys (WebAuthn) of accounts.")

ACTOR = "cli"
BROWSER = "browser"  # --locale's word for "no tenant language: each reader's browser's"


def enrolment_url(base_url: str, registered: devices.RegisteredDevice) -> str:
    """On the origin passkeys work on (a loopback base URL means localhost)."""
    return registered.enrolment_url(RelyingParty.from_base_url(base_url).origin)


@device_app.command("register")
def device_register(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
                    name: Annotated[str, typer.Option("--name", help="what staff call it")],
                    location: Annotated[str, typer.Option("--location", help="ward or site")],
                    database_url: DatabaseUrl = None) -> None:
    """Register a shared device; prints a one-time enrolment link (24 h) to open on it."""
    settings = public_settings(database_url)
    ctx, base_url = service_context(settings), settings.base_url
    registered = devices.register_device(ctx, tenant, name=name, location=location,
                                         actor=ACTOR)
    typer.echo(f"device {registered.id} registered; open this once on the device "
               f"(valid until {registered.expires_at.isoformat(timespec='minutes')}):")
    typer.echo(enrolment_url(base_url, registered))


@device_app.command("list")
def device_list(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
                as_json: JsonOutput = False, database_url: DatabaseUrl = None) -> None:
    """The tenant's shared devices and their state."""
    found = devices.list_devices(context_for(database_url), tenant)
    print_rows([{"id": d.id, "name": d.name, "location": d.location,
                 "state": "revoked" if d.revoked_at else (
                     "enrolled" if d.enrolled else "waiting"),
                 "last_seen": _when(d.last_seen_at)} for d in found],
               ["id", "name", "location", "state", "last_seen"], as_json=as_json)


@device_app.command("revoke")
def device_revoke(device_id: int, database_url: DatabaseUrl = None) -> None:
    """Revoke a device: its credential stops working and its sessions end now."""
    ctx = context_for(database_url)
    ended = devices.revoke_device(ctx, device_id, actor=ACTOR)
    typer.echo(f"device {device_id} revoked; {ended} session(s) ended")


@device_app.command("set-policy")
def device_set_policy(
        tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
        idle_seconds: Annotated[int | None, typer.Option(
            help="lock a device session after this long without activity (default 300)")
        ] = None,
        shifts: Annotated[str | None, typer.Option(
            help='shift boundaries, e.g. "07:00,15:00,23:00" ("" for none)')] = None,
        timezone: Annotated[str | None, typer.Option(help="the shifts' time zone")] = None,
        roles_max_age_hours: Annotated[float | None, typer.Option(
            help="trust IdP-confirmed roles this long for passkey sign-in (default 168)")
        ] = None,
        offline_minutes: Annotated[int | None, typer.Option(
            help="lifetime of an offline session while the IdP is down (default 30)")] = None,
        locale: Annotated[str | None, typer.Option(
            help=f"the language of the tenant's kiosk and account pages: "
                 f"{', '.join(devices.SHIPPED_LOCALES)}, or {BROWSER} for each reader's "
                 f"browser language (the default)")] = None,
        database_url: DatabaseUrl = None) -> None:
    """Set the tenant's frontline policy; what is not given stays as it is."""
    ctx = context_for(database_url)
    current = devices.get_policy(ctx, tenant)
    policy = devices.FrontlinePolicy(
        idle_seconds=current.idle_seconds if idle_seconds is None else idle_seconds,
        shifts=current.shifts if shifts is None else tuple(
            s.strip() for s in shifts.split(",") if s.strip()),
        timezone=current.timezone if timezone is None else timezone,
        roles_max_age_seconds=current.roles_max_age_seconds if roles_max_age_hours is None
        else int(roles_max_age_hours * 3600),
        offline_seconds=current.offline_seconds if offline_minutes is None
        else offline_minutes * 60,
        locale=current.locale if locale is None else "" if locale == BROWSER else locale)
    devices.set_policy(ctx, tenant, policy, actor=ACTOR)
    language_of_browser = "each reader's browser language"
    typer.echo(f"tenant {tenant} frontline policy:\n"
               f"  idle lock after:       {policy.idle_seconds} s\n"
               f"  shift boundaries:      {', '.join(policy.shifts) or 'none'} "
               f"({policy.timezone})\n"
               f"  IdP roles trusted for: {policy.roles_max_age_seconds / 3600:g} h\n"
               f"  offline sessions last: {policy.offline_seconds // 60} min\n"
               f"  page language:         {policy.locale or language_of_browser}")


@device_app.command("idp-status")
def device_idp_status(connection: Annotated[str, typer.Option(
                          "--connection", help="connection slug")],
                      down: Annotated[bool, typer.Option(
                          "--down/--up", help="declare the IdP unreachable, or back")] = True,
                      reason: Annotated[str, typer.Option(help="why (audited)")] = (
                          "declared by an administrator"),
                      database_url: DatabaseUrl = None) -> None:
    """Declare a connection's IdP down (passkey sign-ins become short offline sessions) or
    back up (offline sessions end and go back through the IdP). Audited."""
    ctx = context_for(database_url)
    passkeys.record_idp_health(ctx, connection, ok=not down, error=reason, actor=ACTOR)
    typer.echo(f"connection {connection}: IdP {'down' if down else 'up'}")


@passkey_app.command("list")
def passkey_list(account: Annotated[str, typer.Option("--account", help="account id")],
                 include_revoked: Annotated[bool, typer.Option(
                     help="also the revoked ones")] = False,
                 as_json: JsonOutput = False, database_url: DatabaseUrl = None) -> None:
    """An account's passkeys."""
    found = passkeys.list_passkeys(context_for(database_url), account,
                                   include_revoked=include_revoked)
    print_rows([{"id": p.id, "name": p.name, "state": "revoked" if p.revoked_at else "active",
                 "last_used": _when(p.last_used_at), "aaguid": p.aaguid} for p in found],
               ["id", "name", "state", "last_used", "aaguid"], as_json=as_json)


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


@passkey_app.command("revoke")
def passkey_revoke(passkey_id: int, database_url: DatabaseUrl = None) -> None:
    """Revoke a passkey (audited, announced to webhooks)."""
    ctx = context_for(database_url)
    revoked = passkeys.revoke_passkey(ctx, passkey_id, actor=ACTOR)
    typer.echo(f"passkey {passkey_id} of account {revoked.account_id} revoked")
