"""Signed-in sessions: created at login, read on every request (one indexed read, with what the
device checks need), touched, revoked, purged. ``uow.sessions``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` or
``Conflict`` for what is missing or taken, never a SQLAlchemy exception.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from jitprov.store import auth_changes
from jitprov.store import tables as t
from jitprov.store._common import opt_utc, prepared_insert, utc
from jitprov.store.fast import WithCommit
from jitprov.store.records import EndedSession, IdpLogoutMatch, SessionRecord, SessionState

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
                   .values(revoked_at=_B("b_now"), id_token_sealed=None))  # (no longer needed)


class SessionRepository:
    def __init__(self, conn: sa.Connection, later: WithCommit) -> None:
        self._c = conn
        self._later = later

    def create(self, *, session_id: str, account_id: str, connection_id: int | None,
               subject: str | None, now: datetime, expires_at: datetime,
               user_agent: str | None, device_id: int | None = None, method: str | None = None,
               offline: bool = False, idle_seconds: int | None = None,
               passkey_id: int | None = None, idp_session_id: str | None = None,
               id_token_sealed: str | None = None, with_commit: bool = False) -> None:
        """``session_id`` is the SHA-256 of the cookie value, never the value itself.
        ``method`` defaults to ``sso`` with a connection, ``break_glass`` without one;
        ``idle_seconds`` (device sessions) makes ``get_active`` callers apply an idle lock.
        ``idp_session_id`` (OIDC ``sid``, SAML ``SessionIndex``) and ``subject`` are what an
        IdP's logout names; ``id_token_sealed`` is the ID token, sealed, for RP-initiated
        logout. ``with_commit``: written with the unit's commit (``WithCommit``)."""
        row = {
            "id": session_id, "account_id": account_id, "connection_id": connection_id,
            "subject": subject, "created_at": now, "expires_at": expires_at, "revoked_at": None,
            "user_agent": (user_agent or "")[:300] or None, "device_id": device_id,
            "method": method or ("sso" if connection_id is not None else "break_glass"),
            "offline": offline, "last_seen_at": now, "idle_seconds": idle_seconds,
            "passkey_id": passkey_id, "idp_session_id": _idp_session(idp_session_id),
            "id_token_sealed": id_token_sealed}
        self._later.write(_INSERT_SESSION, row, with_commit=with_commit)

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

    def auth_version(self) -> int:
        """SQLite: the counter the triggers of migration 0019 bump at each change to what a
        signed-in session shows (store/auth_changes.py)."""
        return auth_changes.version(self._c)

    def touch(self, session_id: str, now: datetime) -> None:
        """Record activity on the session (the idle lock's clock)."""
        self._c.execute(_TOUCH_SESSION, {"b_id": session_id, "b_now": now})

    def revoke(self, session_id: str, now: datetime) -> bool:
        """Revoke one session; True if it was active."""
        result = self._c.execute(_REVOKE_SESSION, {"b_id": session_id, "b_now": now})
        return bool(result.rowcount)

    def end(self, session_id: str, now: datetime) -> EndedSession | None:
        """Revoke one session and return what its RP-initiated logout needs; None if it was
        not active (unknown, revoked already, or expired)."""
        row = self._c.execute(
            sa.select(t.session.c.account_id, t.session.c.id_token_sealed,
                      t.session.c.method, t.connection.c.slug, t.connection.c.kind,
                      t.session.c.subject, t.session.c.idp_session_id)
            .outerjoin(t.connection, t.connection.c.id == t.session.c.connection_id)
            .where(t.session.c.id == session_id, t.session.c.revoked_at.is_(None),
                   t.session.c.expires_at > now)).first()
        if row is None or not self.revoke(session_id, now):
            return None
        return EndedSession(account_id=row.account_id, connection_slug=row.slug,
                            connection_kind=row.kind, id_token_sealed=row.id_token_sealed,
                            method=row.method, subject=row.subject,
                            idp_session_id=row.idp_session_id)

    def revoke_for_idp(self, connection_id: int, *, idp_session_id: str | None,
                       subject: str | None, now: datetime) -> IdpLogoutMatch:
        """Revoke the unrevoked, unexpired sessions of the connection that carry
        ``idp_session_id`` and/or ``subject`` (both must match when both are given; at least
        one is required). Every row it revokes is locked by the UPDATE, so a concurrent login
        of the same IdP session either commits first (and is revoked) or after."""
        if idp_session_id is None and subject is None:
            raise ValueError("an IdP logout names a session id or a subject")
        match = [t.session.c.connection_id == connection_id]
        if idp_session_id is not None:
            match.append(t.session.c.idp_session_id == idp_session_id)
        if subject is not None:
            match.append(t.session.c.subject == subject)
        live = [*match, t.session.c.revoked_at.is_(None), t.session.c.expires_at > now]
        rows = self._c.execute(
            t.session.update().where(*live).values(revoked_at=now, id_token_sealed=None)
            .returning(t.session.c.account_id)).all()
        per_account: dict[str, int] = {}
        for row in rows:
            per_account[row.account_id] = per_account.get(row.account_id, 0) + 1
        known = bool(rows) or self._c.execute(
            sa.select(sa.literal(1)).select_from(t.session).where(*match).limit(1)
        ).first() is not None
        return IdpLogoutMatch(known=known, revoked=tuple(sorted(per_account.items())))

    def revoke_all(self, account_id: str, now: datetime) -> int:
        """Revoke every unrevoked session of an account (expired ones too); returns how many."""
        result = self._c.execute(t.session.update().where(
            t.session.c.account_id == account_id, t.session.c.revoked_at.is_(None))
            .values(revoked_at=now, id_token_sealed=None))
        return int(result.rowcount)

    def purge_expired(self, before: datetime) -> int:
        result = self._c.execute(t.session.delete().where(t.session.c.expires_at < before))
        return int(result.rowcount)


def _idp_session(value: str | None) -> str | None:
    """An IdP's session id as stored: one longer than the column is not stored at all (cut
    short, a logout naming a shared prefix would end another session); such a session ends
    through a logout that names its subject."""
    return value if value and len(value) <= 255 else None
