"""SCIM client bearer tokens (only their SHA-256 is stored): created, found by hash on every
SCIM request, listed, revoked, and their last use recorded. ``uow.scim.tokens``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from jitprov.core.errors import Conflict, NotFound
from jitprov.store import tables as t
from jitprov.store._common import opt_utc, utc
from jitprov.store.scim.records import ActiveScimToken, ScimTokenRecord

T = t.scim_token
#: last_used_at is written at most this often per token (a write per request is not worth it)
TOUCH_INTERVAL = timedelta(minutes=1)


class ScimTokenRepository:
    """SCIM client bearer tokens: only their SHA-256 is stored."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create_token(self, tenant_id: int, name: str, token_hash: str, *,
                     connection_id: int | None, expires_at: datetime | None,
                     now: datetime) -> int:
        """Insert a token; its id. Raises Conflict if the hash exists (a reused token)."""
        if self._c.execute(sa.select(T.c.id).where(T.c.token_hash == token_hash)).first():
            raise Conflict("a token with this hash already exists")
        new_id = self._c.execute(T.insert().values(
            tenant_id=tenant_id, name=name, token_hash=token_hash, connection_id=connection_id,
            created_at=now, expires_at=expires_at)).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return int(new_id[0])

    def find_active(self, token_hash: str, now: datetime) -> ActiveScimToken | None:
        """The unrevoked, unexpired token with this hash, or None."""
        row = self._c.execute(
            sa.select(T.c.id, T.c.tenant_id, T.c.connection_id, T.c.token_hash)
            .where(T.c.token_hash == token_hash, T.c.revoked_at.is_(None),
                   sa.or_(T.c.expires_at.is_(None), T.c.expires_at > now))).first()
        if row is None:
            return None
        return ActiveScimToken(row.id, row.tenant_id, row.connection_id, row.token_hash)

    def list_tokens(self, tenant_id: int) -> list[ScimTokenRecord]:
        """The tenant's tokens, newest first, revoked ones included."""
        rows = self._c.execute(sa.select(T).where(T.c.tenant_id == tenant_id)
                               .order_by(T.c.created_at.desc(), T.c.id.desc()))
        return [ScimTokenRecord(
            id=r.id, tenant_id=r.tenant_id, name=r.name, connection_id=r.connection_id,
            created_at=utc(r.created_at), expires_at=opt_utc(r.expires_at),
            revoked_at=opt_utc(r.revoked_at), last_used_at=opt_utc(r.last_used_at))
            for r in rows]

    def revoke(self, token_id: int, now: datetime) -> None:
        """Revoke (idempotent: a revoked token keeps its first revoked_at). Raises NotFound."""
        if not self._c.execute(sa.select(T.c.id).where(T.c.id == token_id)).first():
            raise NotFound(f"no SCIM token {token_id}")
        self._c.execute(T.update().where(T.c.id == token_id, T.c.revoked_at.is_(None))
                        .values(revoked_at=now))

    def touch(self, token_id: int, now: datetime) -> None:
        """Record use: writes ``last_used_at`` at most once a minute per token."""
        self._c.execute(T.update().where(
            T.c.id == token_id,
            sa.or_(T.c.last_used_at.is_(None), T.c.last_used_at <= now - TOUCH_INTERVAL))
            .values(last_used_at=now))
