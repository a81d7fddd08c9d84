"""Recorded claims: the redacted claims of each identity's most recent login.

They are written by the login's own identity touch (``IdentityRepository.add_identity`` and
``record_login``: no statement of their own); this repository reads them for the mapping
editor and clears them after the tenant's retention. ``uow.identities.claims``. Same contract
as every repository here: narrow methods over one open transaction, copies out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jitprov.core.mapping.impact import RecordedLogin
from jitprov.store import tables as t
from jitprov.store._common import utc

_i = t.identity.c
_a = t.account.c

#: newest first, through ix_identity_connection_claims_at (connection_id, claims_at)
_SELECT = (sa.select(_i.subject, _i.account_id, _i.claims, _i.claims_at, _a.email)
           .join(t.account, _a.id == _i.account_id))


@dataclass(frozen=True, slots=True)
class ConnectionActivity:
    """When a connection was created, and how many of its identities have recorded claims."""

    connection_id: int
    created_at: datetime
    recorded_logins: int
    last_recorded_at: datetime | None


class RecordedClaimsRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def latest(self, connection_id: int, *, limit: int) -> list[RecordedLogin]:
        """The recorded logins of a connection, most recent first, at most ``limit``: one
        indexed query. Identities whose claims were purged (or never recorded) are left out."""
        rows = self._c.execute(
            _SELECT.where(_i.connection_id == connection_id, _i.claims_at.is_not(None))
            .order_by(_i.claims_at.desc(), _i.id.desc()).limit(limit)).all()
        return [_login(r) for r in rows if isinstance(r.claims, Mapping)]

    def get(self, connection_id: int, subject: str) -> RecordedLogin | None:
        """The recorded login of one identity, or None (unknown, or nothing recorded)."""
        row = self._c.execute(_SELECT.where(
            _i.connection_id == connection_id, _i.subject == subject,
            _i.claims_at.is_not(None))).first()
        return _login(row) if row is not None and isinstance(row.claims, Mapping) else None

    def activity(self, tenant_id: int) -> dict[int, ConnectionActivity]:
        """Per connection of the tenant (by id): its creation time and recorded logins (an
        index-only count over ix_identity_connection_claims_at)."""
        c = t.connection.c
        rows = self._c.execute(
            sa.select(c.id, c.created_at, sa.func.count(_i.claims_at).label("recorded"),
                      sa.func.max(_i.claims_at).label("last"))
            .select_from(t.connection.outerjoin(t.identity, _i.connection_id == c.id))
            .where(c.tenant_id == tenant_id).group_by(c.id, c.created_at)).all()
        return {r.id: ConnectionActivity(r.id, utc(r.created_at), int(r.recorded),
                                         None if r.last is None else utc(r.last))
                for r in rows}

    def purge(self, tenant_id: int, before: datetime) -> int:
        """Clear the recorded claims of the tenant's identities recorded before ``before``;
        returns how many were cleared. The identities themselves stay."""
        connections = sa.select(t.connection.c.id).where(t.connection.c.tenant_id == tenant_id)
        result = self._c.execute(
            t.identity.update()
            .where(_i.connection_id.in_(connections), _i.claims_at < before)
            .values(claims=sa.null(), claims_at=None))
        return int(result.rowcount or 0)


def _login(row: Any) -> RecordedLogin:  # a Row of _SELECT
    return RecordedLogin(subject=row.subject, account_id=row.account_id,
                         claims=dict(row.claims), recorded_at=utc(row.claims_at),
                         label=row.email or row.subject)
