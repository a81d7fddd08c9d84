"""Role grants given one at a time (an approval, a break-glass credential) and the approval
requests for roles a rule holds back (pending grants): list, read, decide. ``uow.grants``.

The grants and pending grants a login's rules compute are written with the account itself
(``accounts.py``: ``AccountRepository.create`` and ``apply``).

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` or
``Conflict`` for what is missing or taken, never a SQLAlchemy exception.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitprov.core.errors import Conflict, NotFound
from jitprov.core.identity import RoleGrant
from jitprov.store import tables as t
from jitprov.store._common import utc
from jitprov.store.records import PendingGrantRecord


class GrantRepository:
    """Single grants, roles waiting for approval, and the approvers' decisions."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def grant(self, account_id: str, grant: RoleGrant, now: datetime, granted_by: str) -> None:
        """Add one grant (replacing the same role and source, e.g. a renewed approval)."""
        self._c.execute(t.role_grant.delete().where(
            t.role_grant.c.account_id == account_id, t.role_grant.c.role == grant.role,
            t.role_grant.c.source == grant.source))
        self._c.execute(t.role_grant.insert(), {
            "account_id": account_id, "role": grant.role, "source": grant.source,
            "granted_at": now, "granted_by": granted_by, "expires_at": grant.expires_at})

    def requests(self, tenant_id: int, *, status: str = "pending") -> list[PendingGrantRecord]:
        """Requests of a tenant in that status, oldest first."""
        rows = self._c.execute(
            sa.select(t.pending_grant, t.account.c.email)
            .join(t.account, t.account.c.id == t.pending_grant.c.account_id)
            .where(t.account.c.tenant_id == tenant_id, t.pending_grant.c.status == status)
            .order_by(t.pending_grant.c.requested_at, t.pending_grant.c.id))
        return [self._record(r) for r in rows]

    def get_request(self, pending_id: int) -> tuple[PendingGrantRecord, int]:
        """The request and its account's tenant id. Raises NotFound."""
        row = self._c.execute(
            sa.select(t.pending_grant, t.account.c.email, t.account.c.tenant_id)
            .join(t.account, t.account.c.id == t.pending_grant.c.account_id)
            .where(t.pending_grant.c.id == pending_id)).first()
        if row is None:
            raise NotFound(f"no approval request {pending_id}")
        return self._record(row), row.tenant_id

    def decide(self, pending_id: int, *, approved: bool, decided_by: str, reason: str,
               now: datetime) -> None:
        """Close an open request. Raises Conflict if it is no longer pending (decided,
        withdrawn): two approvers cannot both act on one request."""
        result = self._c.execute(
            t.pending_grant.update().where(t.pending_grant.c.id == pending_id,
                                           t.pending_grant.c.status == "pending")
            .values(status="approved" if approved else "denied", decided_at=now,
                    decided_by=decided_by, reason=reason))
        if not result.rowcount:
            raise Conflict(f"approval request {pending_id} is no longer pending")

    @staticmethod
    def _record(row: sa.Row[Any]) -> PendingGrantRecord:
        return PendingGrantRecord(id=row.id, account_id=row.account_id, email=row.email,
                                  role=row.role, source=row.source, status=row.status,
                                  requested_at=utc(row.requested_at))
