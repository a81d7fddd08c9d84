"""Admin API of the shared-device (frontline) features: passkeys, shared devices, the tenant's
frontline policy and declared IdP outages. Same bearer token as the rest of ``/api``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from jitprov.protocols.webauthn import RelyingParty
from jitprov.services import devices, passkeys
from jitprov.services.records import DeviceRecord, PasskeyRecord
from jitprov.web.routes.admin_api import Admin
from jitprov.web.routes.common import ctx_of, settings_of

router = APIRouter(prefix="/api", tags=["frontline"])
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def passkey_json(p: PasskeyRecord) -> dict[str, object]:
    return {"id": p.id, "account_id": p.account_id, "name": p.name, "aaguid": p.aaguid,
            "backup_eligible": p.backup_eligible, "backup_state": p.backup_state,
            "sign_count": p.sign_count, "created_at": p.created_at.isoformat(),
            "last_used_at": p.last_used_at.isoformat() if p.last_used_at else None,
            "revoked_at": p.revoked_at.isoformat() if p.revoked_at else None}


def device_json(d: DeviceRecord) -> dict[str, object]:
    return {"id": d.id, "tenant": d.tenant_slug, "name": d.name, "location": d.location,
            "enrolled": d.enrolled, "created_at": d.created_at.isoformat(),
            "last_seen_at": d.last_seen_at.isoformat() if d.last_seen_at else None,
            "revoked_at": d.revoked_at.isoformat() if d.revoked_at else None}


@router.get("/accounts/{account_id}/passkeys")
def list_passkeys(request: Request, account_id: str, _: Admin,
                  include_revoked: bool = False) -> list[dict[str, object]]:
    return [passkey_json(p) for p in passkeys.list_passkeys(
        ctx_of(request), account_id, include_revoked=include_revoked)]


@router.post("/passkeys/{passkey_id}/revoke")
def revoke_passkey(request: Request, passkey_id: Id, who: Admin) -> dict[str, object]:
    revoked = passkeys.revoke_passkey(ctx_of(request), passkey_id, actor=who.actor)
    return {"id": revoked.id, "account_id": revoked.account_id, "revoked": True}


class DeviceIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Ward 3 nurses' station"])
    location: str = Field(min_length=1, max_length=200, examples=["St Mary's, ward 3"])


@router.post("/tenants/{tenant}/devices", status_code=201)
def register_device(request: Request, tenant: str, body: DeviceIn,
                    who: Admin) -> dict[str, object]:
    """The one-time enrolment code and URL are in this answer only."""
    registered = devices.register_device(ctx_of(request), tenant, name=body.name,
                                         location=body.location, actor=who.actor)
    return {"id": registered.id, "code": registered.code,
            "enrolment_url": registered.enrolment_url(
                passkeys_origin(settings_of(request).base_url)),
            "expires_at": registered.expires_at.isoformat()}


@router.get("/tenants/{tenant}/devices")
def list_devices(request: Request, tenant: str, _: Admin) -> list[dict[str, object]]:
    return [device_json(d) for d in devices.list_devices(ctx_of(request), tenant)]


@router.post("/devices/{device_id}/revoke")
def revoke_device(request: Request, device_id: Id, who: Admin) -> dict[str, object]:
    ended = devices.revoke_device(ctx_of(request), device_id, actor=who.actor)
    return {"id": device_id, "revoked": True, "sessions_ended": ended}


class PolicyIn(BaseModel):
    idle_seconds: int = Field(300, ge=1, le=86400)
    shifts: list[str] = Field(default_factory=list, examples=[["07:00", "15:00", "23:00"]])
    timezone: str = Field("UTC", examples=["Europe/Lisbon"])
    roles_max_age_seconds: int = Field(7 * 86400, ge=60)
    offline_seconds: int = Field(1800, ge=60, le=43200)
    locale: str = Field("", max_length=35, examples=["pt"], description=(
        "the language of the tenant's kiosk and account pages, one of "
        f"{', '.join(devices.SHIPPED_LOCALES)}; empty: each reader's browser language"))


@router.get("/tenants/{tenant}/frontline-policy")
def get_policy(request: Request, tenant: str, _: Admin) -> dict[str, object]:
    return devices.get_policy(ctx_of(request), tenant).as_dict()


@router.put("/tenants/{tenant}/frontline-policy")
def set_policy(request: Request, tenant: str, body: PolicyIn, who: Admin) -> dict[str, object]:
    policy = devices.FrontlinePolicy(
        idle_seconds=body.idle_seconds, shifts=tuple(body.shifts), timezone=body.timezone,
        roles_max_age_seconds=body.roles_max_age_seconds, offline_seconds=body.offline_seconds,
        locale=body.locale)
    return devices.set_policy(ctx_of(request), tenant, policy, actor=who.actor).as_dict()


class HealthIn(BaseModel):
    reachable: bool
    error: str | None = Field(None, max_length=300)


@router.post("/connections/{connection}/health")
def declare_health(request: Request, connection: str, body: HealthIn,
                   who: Admin) -> dict[str, object]:
    """Declare the IdP down (passkey sign-ins become offline sessions) or back up."""
    passkeys.record_idp_health(ctx_of(request), connection, ok=body.reachable,
                               error=body.error or "declared down by an administrator",
                               actor=who.actor)
    return {"connection": connection, "reachable": body.reachable}


def passkeys_origin(base_url: str) -> str:
    """Where passkeys work (a loopback base URL means localhost): enrolment links point there,
    so the device cookie lands on the origin the device page runs on."""
    return RelyingParty.from_base_url(base_url).origin
