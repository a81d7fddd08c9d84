"""Role grants given one at a time (an approval, an admin's manual grant, a break-glass
credential), the approval requests for roles a rule holds back (pending grants), the blocks
(admin overrides keeping a role off an account) and the expired grants the sweep removes.
``uow.grants``.

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
from jitprov.store._common import opt_utc, utc
from jitprov.store.records import GrantRecord, PendingGrantRecord, RoleBlockRecord


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

    def withdraw_requests(self, account_id: str, role: str, *, decided_by: str, reason: str,
                          now: datetime) -> list[int]:
        """Close the account's open requests for ``role`` as ``withdrawn`` (the role was
        blocked: nobody may approve it). The ids closed, oldest first."""
        p = t.pending_grant.c
        ids = list(self._c.execute(sa.select(p.id).where(
            p.account_id == account_id, p.role == role, p.status == "pending")
            .order_by(p.id)).scalars())
        if ids:
            self._c.execute(t.pending_grant.update().where(
                p.id.in_(ids), p.status == "pending").values(
                status="withdrawn", decided_at=now, decided_by=decided_by, reason=reason[:500]))
        return ids

    def revoke(self, account_id: str, role: str, source: str) -> bool:
        """Delete one grant. True if it existed."""
        result = self._c.execute(t.role_grant.delete().where(
            t.role_grant.c.account_id == account_id, t.role_grant.c.role == role,
            t.role_grant.c.source == source))
        return bool(result.rowcount)

    def grants(self, tenant_id: int, *, account_id: str | None = None) -> list[GrantRecord]:
        """The grants of a tenant (or of one account of it), expired ones included, by
        account email, role and source."""
        g = t.role_grant.c
        stmt = (sa.select(t.role_grant, t.account.c.email)
                .join(t.account, t.account.c.id == g.account_id)
                .where(t.account.c.tenant_id == tenant_id))
        if account_id is not None:
            stmt = stmt.where(g.account_id == account_id)
        rows = self._c.execute(stmt.order_by(t.account.c.email, g.account_id, g.role, g.source))
        return [GrantRecord(account_id=r.account_id, email=r.email, role=r.role, source=r.source,
                            granted_at=utc(r.granted_at), granted_by=r.granted_by,
                            expires_at=opt_utc(r.expires_at)) for r in rows]

    def block(self, account_id: str, role: str, *, blocked_by: str, reason: str,
              now: datetime) -> None:
        """Record an override keeping ``role`` off the account. Raises Conflict if it is
        already blocked."""
        exists = self._c.execute(sa.select(t.role_block.c.id).where(
            t.role_block.c.account_id == account_id, t.role_block.c.role == role)).first()
        if exists is not None:
            raise Conflict(f"role {role} is already blocked for account {account_id}")
        self._c.execute(t.role_block.insert(), {
            "account_id": account_id, "role": role, "blocked_at": now,
            "blocked_by": blocked_by, "reason": reason})

    def unblock(self, account_id: str, role: str) -> RoleBlockRecord | None:
        """Lift the override; the block as it was, or None if there was none."""
        row = self._c.execute(
            sa.select(t.role_block, t.account.c.email)
            .join(t.account, t.account.c.id == t.role_block.c.account_id)
            .where(t.role_block.c.account_id == account_id,
                   t.role_block.c.role == role)).first()
        if row is None:
            return None
        self._c.execute(t.role_block.delete().where(t.role_block.c.id == row.id))
        return self._block(row)

    def blocks(self, tenant_id: int, *, account_id: str | None = None
               ) -> list[RoleBlockRecord]:
        """The overrides of a tenant (or of one account of it), by account email and role."""
        b = t.role_block.c
        stmt = (sa.select(t.role_block, t.account.c.email)
                .join(t.account, t.account.c.id == b.account_id)
                .where(t.account.c.tenant_id == tenant_id))
        if account_id is not None:
            stmt = stmt.where(b.account_id == account_id)
        return [self._block(r) for r in self._c.execute(
            stmt.order_by(t.account.c.email, b.account_id, b.role))]

    def expired(self, now: datetime, *, limit: int = 500
                ) -> list[tuple[int, str, GrantRecord]]:
        """Grants expired at ``now`` (any tenant), oldest expiry first, at most ``limit``:
        (tenant id, tenant slug, grant). A range scan of ``ix_role_grant_expires_at``."""
        g = t.role_grant.c
        rows = self._c.execute(
            sa.select(t.role_grant, t.account.c.email, t.account.c.tenant_id,
                      t.tenant.c.slug.label("tenant_slug"))
            .join(t.account, t.account.c.id == g.account_id)
            .join(t.tenant, t.tenant.c.id == t.account.c.tenant_id)
            .where(g.expires_at <= now).order_by(g.expires_at, g.id).limit(limit))
        return [(r.tenant_id, r.tenant_slug, GrantRecord(
            account_id=r.account_id, email=r.email, role=r.role, source=r.source,
            granted_at=utc(r.granted_at), granted_by=r.granted_by,
            expires_at=opt_utc(r.expires_at))) for r in rows]

    def delete_if_expired(self, account_id: str, role: str, source: str,
                          now: datetime) -> bool:
        """Delete the grant only if it is still expired at ``now`` (a renewal meanwhile
        wins; two sweepers delete it once). True if it did."""
        result = self._c.execute(t.role_grant.delete().where(
            t.role_grant.c.account_id == account_id, t.role_grant.c.role == role,
            t.role_grant.c.source == source, t.role_grant.c.expires_at <= now))
        return bool(result.rowcount)

    @staticmethod
    def _block(row: sa.Row[Any]) -> RoleBlockRecord:
        return RoleBlockRecord(account_id=row.account_id, email=row.email, role=row.role,
                               blocked_at=utc(row.blocked_at), blocked_by=row.blocked_by,
                               reason=row.reason)

    @staticmethod
    def _record(row: sa.Row[Any]) -> PendingGrantRecord:
        return PendingGrantRecord(id=row.id, account_id=row.account_id, email=row.email,
                                  role=row.role, source=row.source, status=row.status,
                                  requested_at=utc(row.requested_at))
