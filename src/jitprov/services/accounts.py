"""Accounts: status changes and grants an approver decides.

Status: deactivating or suspending an account revokes every session of it in the same
transaction (the next request with an old cookie is refused), is audited and announced
through the outbox; only an explicit reactivation brings it back (JIT never resurrects it).
Admins, the CLI and the API go through :func:`set_account_status`; SCIM and the dormant
sweep, already in a unit of work, through :func:`change_status` and :func:`announce_status`.

Grants: roles a rule marks ``approval: required`` wait as requests for an approver. An
approved request becomes a grant with source ``approval`` (rules never revoke it), optionally
time-bound; a denied one is closed. Each decision is audited with its approver and reason and
announced through the outbox.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput
from jitprov.core.identity import AccountStatus, RoleGrant
from jitprov.services import metrics
from jitprov.services.context import ServiceContext
from jitprov.store.records import PendingGrantRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

# -- status ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StatusChange:
    account_id: str
    before: str
    after: str
    sessions_revoked: int


def change_status(uow: UnitOfWork, tenant: TenantRecord, account_id: str, before: str,
                  status: AccountStatus, *, reason: str, actor: str, now: datetime,
                  started: float | None = None) -> int:
    """Within ``uow``: set the status, then :func:`announce_status`."""
    uow.accounts.set_status(account_id, status, now)
    return announce_status(uow, tenant, account_id, before, status, reason=reason, actor=actor,
                           now=now, started=started)


def announce_status(uow: UnitOfWork, tenant: TenantRecord, account_id: str, before: str,
                    status: AccountStatus, *, reason: str, actor: str, now: datetime,
                    started: float | None = None) -> int:
    """Within ``uow``, after a status change: revoke every session unless active, audit,
    announce. Returns the number of sessions revoked. Shared by admins and the sweep.
    ``started`` (``time.perf_counter()`` when the trigger arrived) puts the trigger-to-
    revocation time in the audit event."""
    revoked = uow.sessions.revoke_all(account_id, now) if status != "active" else 0
    metrics.SESSIONS_REVOKED.inc(revoked)
    event = {"active": "account.reactivated", "suspended": "account.suspended",
             "deactivated": "account.deactivated"}[status]
    data: dict[str, object] = {"before": before, "after": status, "reason": reason,
                               "sessions_revoked": revoked}
    if started is not None and status != "active":
        data["revocation_ms"] = round((time.perf_counter() - started) * 1000, 3)
    uow.audit.append(tenant.id, tenant.slug, AuditEvent(event, actor, data,
                                                        account_id=account_id), now)
    uow.outbox.add(tenant.id, event, {"account_id": account_id, "tenant": tenant.slug,
                                      "status": status}, now)
    return revoked


def set_account_status(ctx: ServiceContext, account_id: str, status: AccountStatus, *,
                       reason: str, actor: str = "cli") -> StatusChange:
    """Deactivate, suspend or reactivate an account, with a mandatory reason. Anything but
    active revokes every session of the account in the same transaction (the next request
    with an old cookie is 401), and logins are refused until an admin reactivates it: JIT
    never resurrects it. Audited (``account.deactivated`` / ``suspended`` / ``reactivated``)
    and announced to webhooks through the outbox. Raises NotFound, InvalidInput."""
    started = time.perf_counter()
    if not reason.strip():
        raise InvalidInput("a reason is required")
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        view = uow.accounts.view(account_id)
        before = view.account.status
        if before == status:
            raise InvalidInput(f"account {account_id} is already {status}")
        revoked = change_status(uow, uow.config.tenants.get(view.tenant_slug), account_id, before,
                                status, reason=reason, actor=actor, now=now, started=started)
        uow.commit()
    if status != "active":  # committed: the next request with an old cookie is refused
        metrics.REVOCATION_SECONDS.observe(time.perf_counter() - started)
    return StatusChange(account_id, before, status, revoked)


# -- grants ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    request: PendingGrantRecord
    approved: bool
    expires_at: datetime | None


def list_requests(ctx: ServiceContext, tenant: str, *,
                  status: str = "pending") -> list[PendingGrantRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.grants.requests(uow.config.tenants.get(tenant).id, status=status)


def decide_request(ctx: ServiceContext, pending_id: int, *, approve: bool, reason: str,
                   approver: str, valid_for: timedelta | None = None) -> ApprovalDecision:
    """Approve (granting the role, until ``now + valid_for`` if given) or deny a request.
    Raises NotFound, Conflict (already decided or withdrawn), InvalidInput (no reason)."""
    if not reason.strip():
        raise InvalidInput("a reason is required")
    if valid_for is not None and not approve:
        raise InvalidInput("only an approval can be time-bound")
    now = ctx.clock()
    expires_at = now + valid_for if valid_for is not None else None
    with UnitOfWork(ctx.db) as uow:
        request, tenant_id = uow.grants.get_request(pending_id)
        uow.grants.decide(pending_id, approved=approve, decided_by=approver,
                          reason=reason, now=now)
        if approve:
            uow.grants.grant(request.account_id,
                             RoleGrant(request.role, "approval", expires_at), now, approver)
        tenant = uow.config.tenants.get_by_id(tenant_id)
        event = "grant.approved" if approve else "grant.denied"
        data: dict[str, object] = {"request": pending_id, "role": request.role,
                                   "requested_by": request.source, "reason": reason,
                                   "expires_at": expires_at.isoformat() if expires_at else None}
        uow.audit.append(tenant_id, tenant.slug, AuditEvent(
            event, approver, data, account_id=request.account_id), now)
        uow.outbox.add(tenant_id, event, {"account_id": request.account_id,
                                          "tenant": tenant.slug, "role": request.role}, now)
        uow.commit()
    return ApprovalDecision(request, approve, expires_at)
