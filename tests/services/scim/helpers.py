"""Builders of the SCIM service tests: an authenticated SCIM client principal."""

from __future__ import annotations

from typing import Any

from jitprov.services import audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens
from jitprov.services.scim.tokens import ScimPrincipal
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import setup_connection

BASE = "https://jitprov.example/scim/v2/hospital"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def scim_client(ctx: ServiceContext, *, name: str = "entra", connection: str | None = "idp",
                setup: bool = True) -> ScimPrincipal:
    if setup:
        setup_connection(ctx)
    token = scim_tokens.create_token(ctx, "hospital", name, connection=connection)[1]
    principal = scim_tokens.authenticate(ctx, "hospital", token)
    assert principal is not None
    return principal


def user(user_name: str = "ana@hospital.example", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "userName": user_name,
                            "externalId": "u-1", "displayName": "Ana Lima",
                            "emails": [{"value": user_name, "type": "work", "primary": True}],
                            "active": True}
    body.update(extra)
    return body


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def audit_types(ctx: ServiceContext) -> list[tuple[str, str]]:
    return [(e.type, e.actor) for e in audit_export.iter_events(ctx, "hospital")]


def outbox(ctx: ServiceContext) -> list[str]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return [kind for _, kind, _ in uow.outbox.pending()]
