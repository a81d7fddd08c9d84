"""Emergency access: break-glass credentials requested by one admin, issued by another, used
once. ``uow.break_glass``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` or
``Conflict`` for what is missing or taken, never a SQLAlchemy exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitprov.core.errors import Conflict, NotFound
from jitprov.store import tables as t
from jitprov.store._common import opt_utc, utc
from jitprov.store.records import BreakGlassRecord


class BreakGlassRepository:
    """Emergency access credentials: requested by one admin, issued by another, used once."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def request(self, *, tenant_id: int, roles: Sequence[str], reason: str, valid_minutes: int,
                requested_by: str, now: datetime) -> int:
        new_id = self._c.execute(t.break_glass.insert().values(
            tenant_id=tenant_id, roles=list(roles), reason=reason, valid_minutes=valid_minutes,
            requested_by=requested_by, requested_at=now, status="requested")
        ).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return int(new_id[0])

    def get(self, request_id: int) -> BreakGlassRecord:
        """Raises NotFound."""
        row = self._c.execute(sa.select(t.break_glass)
                              .where(t.break_glass.c.id == request_id)).first()
        if row is None:
            raise NotFound(f"no break-glass request {request_id}")
        return self._record(row)

    def issue(self, request_id: int, *, approved_by: str, code_hash: str, now: datetime,
              expires_at: datetime) -> None:
        """Raises Conflict unless the request is still waiting."""
        result = self._c.execute(
            t.break_glass.update().where(t.break_glass.c.id == request_id,
                                         t.break_glass.c.status == "requested")
            .values(status="issued", approved_by=approved_by, approved_at=now,
                    code_hash=code_hash, expires_at=expires_at))
        if not result.rowcount:
            raise Conflict(f"break-glass request {request_id} is not waiting for approval")

    def redeem(self, code_hash: str, now: datetime) -> BreakGlassRecord | None:
        """Spend an issued, unexpired credential (single use: one caller wins)."""
        result = self._c.execute(
            t.break_glass.update().where(t.break_glass.c.code_hash == code_hash,
                                         t.break_glass.c.status == "issued",
                                         t.break_glass.c.expires_at > now)
            .values(status="used", used_at=now).returning(*t.break_glass.c))
        row = result.first()
        return None if row is None else self._record(row)

    def attach_account(self, request_id: int, account_id: str) -> None:
        self._c.execute(t.break_glass.update().where(t.break_glass.c.id == request_id)
                        .values(account_id=account_id))

    @staticmethod
    def _record(row: sa.Row[Any]) -> BreakGlassRecord:
        return BreakGlassRecord(
            id=row.id, tenant_id=row.tenant_id, roles=tuple(row.roles), reason=row.reason,
            valid_minutes=row.valid_minutes, requested_by=row.requested_by,
            requested_at=utc(row.requested_at), approved_by=row.approved_by,
            expires_at=opt_utc(row.expires_at), used_at=opt_utc(row.used_at),
            account_id=row.account_id, status=row.status)
