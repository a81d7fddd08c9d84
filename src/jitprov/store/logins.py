"""Login state shared by every node: the logins already spent (a login request itself travels
sealed in the browser's binding cookie; only its spending is written, so it is single use on
every node), the SAML LogoutRequests in flight, and the replay caches of SAML assertions and
single-use tokens. ``uow.logins`` groups them.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (records of ``records.py``), never a SQLAlchemy exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from jitprov.store import tables as t
from jitprov.store._common import utc
from jitprov.store.fast import Claim, Prepared, WithNextRead
from jitprov.store.records import LoginRequestRecord

_B = sa.bindparam


def _insert_ignoring_duplicates(dialect: str) -> sa.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the dialect, built once per dialect."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(t.saml_replay)
            .values(connection_id=_B("connection_id"), assertion_id=_B("assertion_id"),
                    expires_at=_B("expires_at"))
            .on_conflict_do_nothing(index_elements=["connection_id", "assertion_id"])
            .returning(t.saml_replay.c.assertion_id))


_REMEMBER = {name: Prepared(_insert_ignoring_duplicates(name))
             for name in ("postgresql", "sqlite")}


def _insert_token_ignoring_duplicates(dialect: str) -> sa.Insert:
    """The same ``INSERT ... ON CONFLICT DO NOTHING`` into ``token_replay``."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(t.token_replay)
            .values(connection_id=_B("connection_id"), token_id=_B("token_id"),
                    expires_at=_B("expires_at"))
            .on_conflict_do_nothing(index_elements=["connection_id", "token_id"])
            .returning(t.token_replay.c.token_id))


_REMEMBER_TOKEN = {name: _insert_token_ignoring_duplicates(name)
                   for name in ("postgresql", "sqlite")}


def _insert_spent_login(dialect: str) -> sa.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` of a spent login into ``login_request``."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(t.login_request)
            .values(id=_B("state_id"), connection_id=_B("connection_id"),
                    return_to=_B("return_to"), data=_B("data"), created_at=_B("now"),
                    expires_at=_B("expires_at"), consumed_at=_B("now"))
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(t.login_request.c.id))


_SPEND_LOGIN = {name: Prepared(_insert_spent_login(name)) for name in ("postgresql", "sqlite")}
_IS_SPENT = sa.select(t.login_request.c.consumed_at).where(t.login_request.c.id == _B("state_id"))
_CONSUME_LOGIN = Prepared(
    t.login_request.update()
    .where(t.login_request.c.id == _B("b_id"), t.login_request.c.consumed_at.is_(None),
           t.login_request.c.expires_at > _B("b_now"))
    .values(consumed_at=_B("b_now"))
    .returning(t.login_request.c.connection_id, t.login_request.c.return_to,
               t.login_request.c.data, t.login_request.c.expires_at))


class LoginRequestRepository:
    """Rows by the SHA-256 of a ``state``: the logins already spent (until their request
    expires), and the SAML LogoutRequests in flight (single use, expiring)."""

    def __init__(self, conn: sa.Connection, next_read: WithNextRead) -> None:
        self._c = conn
        self._next = next_read

    def create(self, *, state_id: str, connection_id: int, return_to: str,
               data: Mapping[str, object], now: datetime, expires_at: datetime) -> None:
        self._c.execute(t.login_request.insert().values(
            id=state_id, connection_id=connection_id, return_to=return_to, data=dict(data),
            created_at=now, expires_at=expires_at, consumed_at=None))

    def spend(self, *, state_id: str, connection_id: int, return_to: str, now: datetime,
              expires_at: datetime) -> Claim:
        """Record the login ``state_id`` as spent. ``taken`` the first time; not when it was
        already spent, by this or any concurrent transaction on any node (the primary key
        decides; no exception escapes, the transaction stays usable). On PostgreSQL it goes
        with the unit's next read (``WithNextRead``)."""
        statement = _SPEND_LOGIN["postgresql" if self._c.dialect.name == "postgresql"
                                 else "sqlite"]
        return self._next.claim(statement, {
            "state_id": state_id, "connection_id": connection_id, "return_to": return_to,
            "data": {}, "now": now, "expires_at": expires_at})

    def is_spent(self, state_id: str) -> bool:
        """Whether a login ``state_id`` was spent here (and not yet purged)."""
        row = self._c.execute(_IS_SPENT, {"state_id": state_id}).first()
        return row is not None and row.consumed_at is not None

    def consume(self, state_id: str, now: datetime) -> LoginRequestRecord | None:
        """Mark the request used and return it; None if unknown, expired or already used.

        Exactly one of any number of concurrent callers gets the record."""
        row = _CONSUME_LOGIN.first(self._c, {"b_id": state_id, "b_now": now})
        if row is None:
            return None
        return LoginRequestRecord(connection_id=row.connection_id, return_to=row.return_to,
                                  data=row.data, expires_at=utc(row.expires_at))

    def purge_expired(self, before: datetime) -> int:
        result = self._c.execute(t.login_request.delete()
                                 .where(t.login_request.c.expires_at < before))
        return int(result.rowcount)


class SamlReplayRepository:
    """Assertion IDs a connection's ACS has accepted, kept until the assertion expires."""

    def __init__(self, conn: sa.Connection, next_read: WithNextRead) -> None:
        self._c = conn
        self._next = next_read

    def remember(self, connection_id: int, assertion_id: str, expires_at: datetime) -> Claim:
        """Record that ``assertion_id`` was accepted through this connection. ``taken`` the
        first time; not when it was already recorded (a replay), by this or any concurrent
        transaction (the primary key decides; no exception escapes, the transaction stays
        usable). An ID already past its ``expires_at`` but not yet purged still counts as
        seen. On PostgreSQL it goes with the unit's next read (``WithNextRead``)."""
        statement = _REMEMBER["postgresql" if self._c.dialect.name == "postgresql"
                              else "sqlite"]
        return self._next.claim(statement, {"connection_id": connection_id,
                                            "assertion_id": assertion_id,
                                            "expires_at": expires_at})

    def purge_expired(self, before: datetime) -> int:
        """Delete entries whose assertion expired before ``before``; returns how many."""
        result = self._c.execute(t.saml_replay.delete()
                                 .where(t.saml_replay.c.expires_at < before))
        return int(result.rowcount)


class LoginStore:
    """``uow.logins``: ``requests`` (spent logins, LogoutRequests in flight), ``saml_replay``
    (assertion IDs already accepted) and ``token_replay``
    (single-use token ids, such as logout tokens' ``jti``)."""

    def __init__(self, conn: sa.Connection, next_read: WithNextRead) -> None:
        self.requests = LoginRequestRepository(conn, next_read)
        self.saml_replay = SamlReplayRepository(conn, next_read)
        self.token_replay = TokenReplayRepository(conn)


class TokenReplayRepository:
    """Identifiers of single-use tokens a connection's IdP sent (an OIDC logout token's
    ``jti``), kept until the token expires: the same contract as ``SamlReplayRepository``."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def remember(self, connection_id: int, token_id: str, expires_at: datetime) -> bool:
        """True the first time ``token_id`` is seen at this connection; False for a replay,
        whichever transaction recorded it first (the primary key decides, no exception)."""
        statement = _REMEMBER_TOKEN["postgresql" if self._c.dialect.name == "postgresql"
                                    else "sqlite"]
        result = self._c.execute(statement, {"connection_id": connection_id,
                                             "token_id": token_id, "expires_at": expires_at})
        return result.first() is not None

    def purge_expired(self, before: datetime) -> int:
        """Delete entries whose token expired before ``before``; returns how many."""
        result = self._c.execute(t.token_replay.delete()
                                 .where(t.token_replay.c.expires_at < before))
        return int(result.rowcount)
