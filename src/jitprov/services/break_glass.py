"""Break-glass: emergency access for when the IdP is down or misconfigured.

Dual control: one admin requests (roles, reason, validity), a *different* admin approves, which
issues a single-use code shown once (stored as SHA-256). Redeeming the code at ``/break-glass``
creates a fresh break-glass account (kind ``break_glass``: never linked, never touched by JIT or
role sync) holding exactly the requested roles, and a short session (at most an hour, never past
the credential's validity). Every step is audited and announced to webhooks as an alert
(``break_glass.requested``, ``.issued``, ``.used``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput
from jitprov.core.identity import RoleGrant
from jitprov.core.provisioning import Changes
from jitprov.services.common import LoginRefused, hash_token
from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork

MAX_VALID_MINUTES = 240
MAX_SESSION = timedelta(hours=1)
REQUEST_LIFETIME = timedelta(hours=1)  # a request not approved by then is void
SOURCE = "break_glass"


def person(actor: str) -> str:
    """Who is behind an actor string: ``admin-token:<id>:<name>`` and ``cli:<name>`` both
    name the admin, so one person with two tokens is still one person."""
    return actor.rsplit(":", 1)[-1].strip().lower()


@dataclass(frozen=True, slots=True)
class IssuedCode:
    request_id: int
    code: str  # shown once
    expires_at: datetime

    def __repr__(self) -> str:
        return f"IssuedCode(request_id={self.request_id}, code=<hidden>)"


@dataclass(frozen=True, slots=True)
class BreakGlassSession:
    account_id: str
    session_token: str
    expires_at: datetime


def request_access(ctx: ServiceContext, tenant: str, *, roles: Sequence[str], reason: str,
                   requested_by: str, valid_minutes: int = 60) -> int:
    """The first admin's half. Raises InvalidInput, NotFound."""
    roles = [r.strip() for r in roles if r.strip()]
    if not roles:
        raise InvalidInput("name the roles the emergency access needs")
    if not reason.strip():
        raise InvalidInput("a reason is required")
    if not 1 <= valid_minutes <= MAX_VALID_MINUTES:
        raise InvalidInput(f"validity must be 1 to {MAX_VALID_MINUTES} minutes")
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        request_id = uow.break_glass.request(tenant_id=ten.id, roles=roles, reason=reason,
                                             valid_minutes=valid_minutes,
                                             requested_by=requested_by, now=now)
        data = {"request": request_id, "roles": roles, "reason": reason,
                "valid_minutes": valid_minutes}
        uow.audit.append(ten.id, ten.slug, AuditEvent("break_glass.requested", requested_by,
                                                      data), now)
        uow.outbox.add(ten.id, "break_glass.requested", {"tenant": ten.slug, **data}, now)
        uow.commit()
    return request_id


def approve_access(ctx: ServiceContext, request_id: int, *, approved_by: str) -> IssuedCode:
    """The second admin's half: issues the single-use code. The approver must not be the
    requester (dual control). Raises InvalidInput, NotFound, Conflict."""
    now = ctx.clock()
    code = "bg-" + secrets.token_urlsafe(24)
    with UnitOfWork(ctx.db) as uow:
        request = uow.break_glass.get(request_id)
        if person(approved_by) == person(request.requested_by):
            raise InvalidInput("dual control: the admin who requested emergency access cannot "
                               "approve it")
        if now - request.requested_at > REQUEST_LIFETIME:
            raise InvalidInput(f"break-glass request {request_id} expired unapproved; "
                               "request again")
        expires_at = now + timedelta(minutes=request.valid_minutes)
        uow.break_glass.issue(request_id, approved_by=approved_by, code_hash=hash_token(code),
                              now=now, expires_at=expires_at)
        ten = uow.config.tenants.get_by_id(request.tenant_id)
        data = {"request": request_id, "roles": list(request.roles),
                "requested_by": request.requested_by, "expires_at": expires_at.isoformat()}
        uow.audit.append(ten.id, ten.slug, AuditEvent("break_glass.issued", approved_by, data),
                         now)
        uow.outbox.add(ten.id, "break_glass.issued", {"tenant": ten.slug, **data}, now)
        uow.commit()
    return IssuedCode(request_id, code, expires_at)


def redeem(ctx: ServiceContext, code: str, *, request_id: str | None = None,
           user_agent: str | None = None) -> BreakGlassSession:
    """Spend the code: a break-glass account with the requested roles and a short session.
    Raises LoginRefused for an unknown, used or expired code."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        grant = uow.break_glass.redeem(hash_token(code.strip()), now)
        if grant is None:
            raise LoginRefused("break_glass_refused", "this emergency code is not valid: it "
                               "is unknown, already used or expired", request_id)
        assert grant.expires_at is not None  # noqa: S101 - issued codes expire
        ten = uow.config.tenants.get_by_id(grant.tenant_id)
        changes = Changes(
            profile={"name": (None, f"Break-glass #{grant.id}")},
            grants_added=frozenset(RoleGrant(role, SOURCE, grant.expires_at)
                                   for role in grant.roles))
        account_id = uow.accounts.create(tenant_id=ten.id, changes=changes,
                                         provisioned_by="manual", kind="break_glass", now=now,
                                         granted_by=f"break-glass:{grant.id}")
        uow.break_glass.attach_account(grant.id, account_id)
        token = secrets.token_urlsafe(32)
        expires_at = min(now + MAX_SESSION, grant.expires_at)
        uow.sessions.create(session_id=hash_token(token), account_id=account_id,
                            connection_id=None, subject=None, now=now, expires_at=expires_at,
                            user_agent=user_agent)
        data = {"request": grant.id, "roles": list(grant.roles), "reason": grant.reason,
                "requested_by": grant.requested_by, "approved_by": grant.approved_by,
                "session_expires_at": expires_at.isoformat()}
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "break_glass.used", f"break-glass:{grant.id}", data, account_id=account_id,
            request_id=request_id), now)
        uow.outbox.add(ten.id, "break_glass.used", {"tenant": ten.slug,
                                                    "account_id": account_id, **data}, now)
        uow.commit()
    return BreakGlassSession(account_id, token, expires_at)
