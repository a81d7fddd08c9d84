"""Shared devices (kiosks): registration, enrolment, the tenant's frontline policy, and the
device page's view of its session.

An admin registers a device for a tenant and a location; that prints a one-time enrolment
code (SHA-256 stored, 24 h). Opening the enrolment link on the device spends the code and sets
a long-lived device credential cookie (only its SHA-256 is stored). Sessions opened on a device
carry its id, an idle limit and end at the tenant's next shift boundary; a new sign-in on the
device ends every earlier session on it (``session.switched``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.sessions import SignedIn, current_session, read_session
from jitprov.store.devices import DeviceRecord
from jitprov.store.records import SessionState
from jitprov.store.unit_of_work import UnitOfWork

ENROLMENT_LIFETIME = timedelta(hours=24)
CREDENTIAL_MAX_AGE = timedelta(days=400)  # the cookie's; the server-side credential has none
_SHIFT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
#: the languages end-user pages are shipped in, each a catalogue ``web/locales/<lang>``
#: (tests/web/test_i18n.py checks the two agree); English is the fallback
SHIPPED_LOCALES = ("en", "pt", "es")


@dataclass(frozen=True, slots=True)
class FrontlinePolicy:
    """A tenant's frontline policy (tenant settings, key ``frontline``)."""

    idle_seconds: int = 300  # device idle lock
    shifts: tuple[str, ...] = ()  # "HH:MM" local boundaries; a device session ends at the next
    timezone: str = "UTC"
    roles_max_age_seconds: int = 7 * 24 * 3600  # how long IdP-confirmed roles are trusted
    offline_seconds: int = 1800  # TTL of an offline (IdP unreachable) session
    locale: str = ""  # the language of the tenant's pages; "" = each reader's browser's

    def as_dict(self) -> dict[str, object]:
        return {"idle_seconds": self.idle_seconds, "shifts": list(self.shifts),
                "timezone": self.timezone, "roles_max_age_seconds": self.roles_max_age_seconds,
                "offline_seconds": self.offline_seconds, "locale": self.locale}


def policy_from_settings(settings: Mapping[str, object]) -> FrontlinePolicy:
    raw = settings.get("frontline")
    if not isinstance(raw, Mapping):
        return FrontlinePolicy()
    base = FrontlinePolicy()
    shifts = raw.get("shifts") or ()
    return FrontlinePolicy(
        idle_seconds=int(raw.get("idle_seconds", base.idle_seconds)),
        shifts=tuple(str(s) for s in shifts) if isinstance(shifts, list | tuple) else (),
        timezone=str(raw.get("timezone", base.timezone)),
        roles_max_age_seconds=int(raw.get("roles_max_age_seconds",
                                          base.roles_max_age_seconds)),
        offline_seconds=int(raw.get("offline_seconds", base.offline_seconds)),
        locale=str(raw.get("locale", base.locale)))


def check_policy(policy: FrontlinePolicy) -> None:
    """Raises InvalidInput naming the bad field."""
    if not 1 <= policy.idle_seconds <= 24 * 3600:
        raise InvalidInput("idle lock must be 1 second to 24 hours")
    for shift in policy.shifts:
        if not _SHIFT.match(shift):
            raise InvalidInput(f"shift boundary {shift!r} is not HH:MM (24-hour)")
    try:
        ZoneInfo(policy.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {policy.timezone!r}") from exc
    if not 60 <= policy.roles_max_age_seconds <= 365 * 24 * 3600:
        raise InvalidInput("roles max age must be 1 minute to 365 days")
    if not 60 <= policy.offline_seconds <= 12 * 3600:
        raise InvalidInput("offline session lifetime must be 1 minute to 12 hours")
    if policy.locale and policy.locale not in SHIPPED_LOCALES:
        raise InvalidInput(f"language {policy.locale!r} is not one of the shipped ones: "
                           f"{', '.join(SHIPPED_LOCALES)}")


def next_shift_boundary(now: datetime, shifts: Sequence[str], timezone: str) -> datetime | None:
    """The first shift boundary strictly after ``now`` (UTC), or None without shifts.
    Boundaries are wall-clock times in ``timezone``: across a DST change a shift is an hour
    longer or shorter, as the rota is."""
    if not shifts:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    times = sorted(time(int(s[:2]), int(s[3:])) for s in shifts)
    for day in range(3):
        date = local.date() + timedelta(days=day)
        for at in times:
            candidate = datetime.combine(date, at, tzinfo=zone).astimezone(UTC)
            if candidate > now:
                return candidate
    return None  # unreachable with at least one boundary a day


def set_policy(ctx: ServiceContext, tenant: str, policy: FrontlinePolicy, *,
               actor: str = "cli") -> FrontlinePolicy:
    """Replace the tenant's frontline policy (new sessions follow it). Audited."""
    check_policy(policy)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        settings = uow.config.tenants.settings(ten.id)
        settings["frontline"] = policy.as_dict()
        uow.config.tenants.set_settings(ten.id, settings)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "tenant.policy_changed", actor, {"frontline": policy.as_dict()}), now)
        uow.commit()
    return policy


def get_policy(ctx: ServiceContext, tenant: str) -> FrontlinePolicy:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return policy_from_settings(uow.config.tenants.settings(uow.config.tenants.get(tenant).id))


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    id: int
    code: str  # one-time enrolment code, shown once
    expires_at: datetime

    def __repr__(self) -> str:
        return f"RegisteredDevice(id={self.id}, code=<hidden>)"

    def enrolment_url(self, base_url: str) -> str:
        return f"{base_url}/device/enrol?code={self.code}"


def register_device(ctx: ServiceContext, tenant: str, *, name: str, location: str,
                    actor: str = "cli") -> RegisteredDevice:
    """Register a kiosk; returns its one-time enrolment code. Audited ``device.registered``
    and announced to webhooks. Raises NotFound, InvalidInput."""
    name, location = name.strip(), location.strip()
    if not name or not location or len(name) > 200 or len(location) > 200:
        raise InvalidInput("a device needs a name and a location (at most 200 characters)")
    now = ctx.clock()
    code = "dev-" + secrets.token_urlsafe(24)
    expires_at = now + ENROLMENT_LIFETIME
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        device_id = uow.devices.devices.add(tenant_id=ten.id, name=name, location=location,
                                            enrolment_hash=hash_token(code),
                                            enrolment_expires_at=expires_at, now=now)
        data = {"device": device_id, "name": name, "location": location,
                "enrolment_expires_at": expires_at.isoformat()}
        uow.audit.append(ten.id, ten.slug, AuditEvent("device.registered", actor, data), now)
        uow.outbox.add(ten.id, "device.registered", {"tenant": ten.slug, **data}, now)
        uow.commit()
    return RegisteredDevice(device_id, code, expires_at)


DEMO_DEVICE = "Demo kiosk"


def demo_device(ctx: ServiceContext, tenant: str) -> RegisteredDevice:
    """``jitprov dev`` only: the demo tenant's kiosk, registered once, with a fresh enrolment
    code at every start (so the printed link always works)."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        existing = [d for d in uow.devices.devices.for_tenant(ten.id)
                    if d.name == DEMO_DEVICE and d.revoked_at is None]
    if not existing:
        return register_device(ctx, tenant, name=DEMO_DEVICE, location="Demo ward", actor="dev")
    code = "dev-" + secrets.token_urlsafe(24)
    with UnitOfWork(ctx.db) as uow:
        uow.devices.devices.reissue_enrolment(existing[0].id, hash_token(code),
                                              now + ENROLMENT_LIFETIME)
        uow.commit()
    return RegisteredDevice(existing[0].id, code, now + ENROLMENT_LIFETIME)


def enrolment_of(ctx: ServiceContext, code: str) -> DeviceRecord | None:
    """The device an enrolment code would enrol (nothing spent), or None."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.devices.devices.pending_enrolment(hash_token(code.strip()), ctx.clock())


def enrol_device(ctx: ServiceContext, code: str, *, request_id: str | None = None,
                 ) -> tuple[DeviceRecord, str]:
    """Spend the enrolment code: (the device, its new credential for the cookie). Raises
    InvalidInput for an unknown, used or expired code."""
    now = ctx.clock()
    credential = "kiosk-" + secrets.token_urlsafe(32)
    with UnitOfWork(ctx.db) as uow:
        device_id = uow.devices.devices.enrol(hash_token(code.strip()), hash_token(credential), now)
        if device_id is None:
            raise InvalidInput("this enrolment link is not valid: it is unknown, already used "
                               "or expired; ask an administrator for a new one")
        device = uow.devices.devices.get(device_id)
        uow.audit.append(device.tenant_id, device.tenant_slug, AuditEvent(
            "device.enrolled", f"device:{device.id}",
            {"device": device.id, "name": device.name, "location": device.location},
            request_id=request_id), now)
        uow.commit()
    return device, credential


def device_of(ctx: ServiceContext, credential: str | None) -> DeviceRecord | None:
    """The enrolled, unrevoked device presenting this credential cookie, or None."""
    if not credential:
        return None
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.devices.devices.by_credential(hash_token(credential))


def list_devices(ctx: ServiceContext, tenant: str) -> list[DeviceRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.devices.devices.for_tenant(uow.config.tenants.get(tenant).id)


def revoke_device(ctx: ServiceContext, device_id: int, *, actor: str = "cli") -> int:
    """Revoke a device: its credential stops working and its sessions end now. Returns how
    many sessions ended. Audited ``device.revoked``, announced. Raises NotFound."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        device = uow.devices.devices.get(device_id)
        if not uow.devices.devices.revoke(device_id, now):
            raise InvalidInput(f"device {device_id} is already revoked")
        ended = uow.devices.devices.end_sessions(device_id, now)
        data = {"device": device_id, "name": device.name, "location": device.location,
                "sessions_ended": len(ended)}
        uow.audit.append(device.tenant_id, device.tenant_slug,
                         AuditEvent("device.revoked", actor, data), now)
        uow.outbox.add(device.tenant_id, "device.revoked", {"tenant": device.tenant_slug, **data},
                       now)
        uow.commit()
    return len(ended)


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the device page may show: a signed-in user, or the lock screen (and why)."""

    signed_in: SignedIn | None
    locked: str | None  # None | "idle" | "idp_back" | "signed_out"
    step_up: str | None = None  # an offline session whose IdP is back: sign in there


def device_view(ctx: ServiceContext, device: DeviceRecord, token: str | None, *,
                request_id: str | None = None) -> DeviceView:
    """The device page's state. A session of another device, or idle past the limit, is ended
    (audited ``session.locked``); an SSO session opened on this device (the step-up at the IdP
    comes back here) is adopted: bound to the device, its idle limit and shift end."""
    record, reason = read_session(ctx, token)
    if record is None:
        return DeviceView(None, "signed_out")
    if reason is not None or (record.device_id is not None and record.device_id != device.id):
        _lock(ctx, device, record, reason or "other_device", request_id=request_id)
        step_up = f"/sso/{record.connection_slug}/login?return_to=/device" \
            if reason == "idp_back" and record.connection_slug else None
        return DeviceView(None, reason or "signed_out", step_up)
    if record.device_id is None:
        _adopt(ctx, device, record, request_id=request_id)
    signed_in = current_session(ctx, token)
    if signed_in is None:
        return DeviceView(None, "signed_out")
    return DeviceView(signed_in, None)


def lock(ctx: ServiceContext, device: DeviceRecord, token: str | None, *,
         request_id: str | None = None) -> None:
    """The "lock" button: end this device's session now."""
    record, _reason = read_session(ctx, token)
    if record is not None and record.device_id in (device.id, None):
        _lock(ctx, device, record, "locked_by_user", request_id=request_id)


def _lock(ctx: ServiceContext, device: DeviceRecord, record: SessionState, reason: str, *,
          request_id: str | None) -> None:
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        if uow.sessions.revoke(record.id, now):
            uow.audit.append(device.tenant_id, device.tenant_slug, AuditEvent(
                "session.locked", f"device:{device.id}",
                {"device": device.id, "reason": reason, "method": record.method},
                account_id=record.account_id, request_id=request_id), now)
        uow.commit()


def _adopt(ctx: ServiceContext, device: DeviceRecord, record: SessionState, *,
           request_id: str | None) -> None:
    """Bind an SSO session to the device it is used on: the earlier sessions of the device
    end (``session.switched``), the idle limit and the shift boundary apply."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        account = uow.accounts.view(record.account_id)
        if account.tenant_slug != device.tenant_slug:
            uow.sessions.revoke(record.id, now)
            uow.commit()
            raise InvalidInput("this account belongs to another tenant than this device")
        policy = policy_from_settings(uow.config.tenants.settings(device.tenant_id))
        ended = uow.devices.devices.end_sessions(device.id, now)
        expires_at = record.expires_at
        boundary = next_shift_boundary(now, policy.shifts, policy.timezone)
        if boundary is not None:
            expires_at = min(expires_at, boundary)
        uow.devices.devices.bind_session(record.id, device.id, idle_seconds=policy.idle_seconds,
                                         expires_at=expires_at, now=now)
        announce_switch(uow, device, ended, record.account_id, method=record.method or "sso",
                        now=now, request_id=request_id)
        uow.commit()


def announce_switch(uow: UnitOfWork, device: DeviceRecord, ended: Sequence[str],
                    account_id: str, *, method: str, now: datetime,
                    request_id: str | None) -> None:
    """``session.switched`` (audit and outbox) when a sign-in on a device ended others'."""
    if not ended:
        return
    data: dict[str, object] = {"device": device.id, "location": device.location,
                               "previous_accounts": sorted(set(ended)),
                               "account_id": account_id, "method": method}
    uow.audit.append(device.tenant_id, device.tenant_slug, AuditEvent(
        "session.switched", f"device:{device.id}", data, account_id=account_id,
        request_id=request_id), now)
    uow.outbox.add(device.tenant_id, "session.switched", {"tenant": device.tenant_slug, **data},
                   now)


def get_device(ctx: ServiceContext, device_id: int) -> DeviceRecord:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.devices.devices.get(device_id)

