"""Approvals: roles a rule marks ``approval: required`` wait here for an approver.

An approved request becomes a grant with source ``approval`` (rules never revoke it), optionally
time-bound; a denied one is closed. Each decision is audited with its approver and reason and
announced through the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput
from jitprov.core.identity import RoleGrant
from jitprov.services.context import ServiceContext
from jitprov.store.records import PendingGrantRecord
from jitprov.store.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    request: PendingGrantRecord
    approved: bool
    expires_at: datetime | None


def list_requests(ctx: ServiceContext, tenant: str, *,
                  status: str = "pending") -> list[PendingGrantRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.pending_grants.list(uow.tenants.get(tenant).id, status=status)


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
        request, tenant_id = uow.pending_grants.get(pending_id)
        uow.pending_grants.decide(pending_id, approved=approve, decided_by=approver,
                                  reason=reason, now=now)
        if approve:
            uow.accounts.grant(request.account_id,
                               RoleGrant(request.role, "approval", expires_at), now, approver)
        tenant = uow.tenants.get_by_id(tenant_id)
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
