"""Signed-in sessions: created at login, read on every request (one indexed read, with what the
device checks need), touched, revoked, purged. ``uow.sessions``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` or
``Conflict`` for what is missing or taken, never a SQLAlchemy exception.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from jitprov.store import tables as t
from jitprov.store._common import opt_utc, prepared_insert, utc
from jitprov.store.records import SessionRecord, SessionState

# Statements of the request hot path, built once (see ``fast.py``).
_B = sa.bindparam
_INSERT_SESSION = prepared_insert(t.session)
_ACTIVE_SESSION = (
    sa.select(t.session, t.connection.c.slug.label("connection_slug"),
              t.connection_health.c.last_success_at.label("idp_ok_at"))
    .join(t.account, t.account.c.id == t.session.c.account_id)
    .outerjoin(t.connection, t.connection.c.id == t.session.c.connection_id)
    .outerjoin(t.connection_health,
               t.connection_health.c.connection_id == t.session.c.connection_id)
    .where(t.session.c.id == _B("session_id"), t.session.c.revoked_at.is_(None),
           t.session.c.expires_at > _B("now"), t.account.c.status == "active"))
_TOUCH_SESSION = (t.session.update().where(t.session.c.id == _B("b_id"))
                  .values(last_seen_at=_B("b_now")))
_REVOKE_SESSION = (t.session.update()
                   .where(t.session.c.id == _B("b_id"), t.session.c.revoked_at.is_(None))
                   .values(revoked_at=_B("b_now")))


class SessionRepository:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, *, session_id: str, account_id: str, connection_id: int | None,
               subject: str | None, now: datetime, expires_at: datetime,
               user_agent: str | None, device_id: int | None = None, method: str | None = None,
               offline: bool = False, idle_seconds: int | None = None,
               passkey_id: int | None = None) -> None:
        """``session_id`` is the SHA-256 of the cookie value, never the value itself.
        ``method`` defaults to ``sso`` with a connection, ``break_glass`` without one;
        ``idle_seconds`` (device sessions) makes ``get_active`` callers apply an idle lock."""
        _INSERT_SESSION.rowcount(self._c, {
            "id": session_id, "account_id": account_id, "connection_id": connection_id,
            "subject": subject, "created_at": now, "expires_at": expires_at, "revoked_at": None,
            "user_agent": (user_agent or "")[:300] or None, "device_id": device_id,
            "method": method or ("sso" if connection_id is not None else "break_glass"),
            "offline": offline, "last_seen_at": now, "idle_seconds": idle_seconds,
            "passkey_id": passkey_id})

    def get_active(self, session_id: str, now: datetime) -> SessionRecord | None:
        """The session if it exists, is not revoked, not expired and its account is active."""
        state = self.get_active_state(session_id, now)
        if state is None:
            return None
        return SessionRecord(id=state.id, account_id=state.account_id,
                             connection_slug=state.connection_slug, subject=state.subject,
                             created_at=state.created_at, expires_at=state.expires_at)

    def get_active_state(self, session_id: str, now: datetime) -> SessionState | None:
        """``get_active`` with what the device checks need (one indexed read): the idle
        lock and the offline re-check are the caller's, from ``last_seen_at``,
        ``idle_seconds`` and ``idp_back``."""
        row = self._c.execute(_ACTIVE_SESSION, {"session_id": session_id, "now": now}).first()
        if row is None:
            return None
        created_at = utc(row.created_at)
        return SessionState(id=row.id, account_id=row.account_id,
                            connection_slug=row.connection_slug, subject=row.subject,
                            created_at=created_at, expires_at=utc(row.expires_at),
                            device_id=row.device_id, method=row.method,
                            offline=bool(row.offline), last_seen_at=opt_utc(row.last_seen_at),
                            idle_seconds=row.idle_seconds,
                            idp_back=bool(row.offline) and row.idp_ok_at is not None
                            and utc(row.idp_ok_at) > created_at)

    def touch(self, session_id: str, now: datetime) -> None:
        """Record activity on the session (the idle lock's clock)."""
        self._c.execute(_TOUCH_SESSION, {"b_id": session_id, "b_now": now})

    def revoke(self, session_id: str, now: datetime) -> bool:
        """Revoke one session; True if it was active."""
        result = self._c.execute(_REVOKE_SESSION, {"b_id": session_id, "b_now": now})
        return bool(result.rowcount)

    def revoke_all(self, account_id: str, now: datetime) -> int:
        """Revoke every unrevoked session of an account (expired ones too); returns how many."""
        result = self._c.execute(t.session.update().where(
            t.session.c.account_id == account_id, t.session.c.revoked_at.is_(None))
            .values(revoked_at=now))
        return int(result.rowcount)

    def purge_expired(self, before: datetime) -> int:
        result = self._c.execute(t.session.delete().where(t.session.c.expires_at < before))
        return int(result.rowcount)
