"""Login state shared by every node: the requests of logins in flight (single use, expiring),
the SAML ACS's read-only look at one before it verifies the Response, and the SAML assertion
replay cache. ``uow.logins`` groups them.

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
from jitprov.store.fast import Prepared
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


_REMEMBER = {name: _insert_ignoring_duplicates(name) for name in ("postgresql", "sqlite")}


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
_CONSUME_LOGIN = Prepared(
    t.login_request.update()
    .where(t.login_request.c.id == _B("b_id"), t.login_request.c.consumed_at.is_(None),
           t.login_request.c.expires_at > _B("b_now"))
    .values(consumed_at=_B("b_now"))
    .returning(t.login_request.c.connection_id, t.login_request.c.return_to,
               t.login_request.c.data, t.login_request.c.expires_at))
_PEEK_LOGIN = (
    sa.select(t.login_request.c.connection_id, t.login_request.c.return_to,
              t.login_request.c.data, t.login_request.c.expires_at)
    .where(t.login_request.c.id == _B("state_id"), t.login_request.c.consumed_at.is_(None),
           t.login_request.c.expires_at > _B("now")))


class LoginRequestRepository:
    """Server-side state of logins in flight: single use, expiring, shared by all nodes."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, *, state_id: str, connection_id: int, return_to: str,
               data: Mapping[str, object], now: datetime, expires_at: datetime) -> None:
        self._c.execute(t.login_request.insert().values(
            id=state_id, connection_id=connection_id, return_to=return_to, data=dict(data),
            created_at=now, expires_at=expires_at, consumed_at=None))

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

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def remember(self, connection_id: int, assertion_id: str, expires_at: datetime) -> bool:
        """Record that ``assertion_id`` was accepted through this connection. True the first
        time; False when it was already recorded (a replay), by this or any concurrent
        transaction (the primary key decides; no exception escapes, the transaction stays
        usable). An ID already past its ``expires_at`` but not yet purged still counts as
        seen."""
        statement = _REMEMBER["postgresql" if self._c.dialect.name == "postgresql"
                              else "sqlite"]
        result = self._c.execute(statement, {"connection_id": connection_id,
                                             "assertion_id": assertion_id,
                                             "expires_at": expires_at})
        return result.first() is not None

    def purge_expired(self, before: datetime) -> int:
        """Delete entries whose assertion expired before ``before``; returns how many."""
        result = self._c.execute(t.saml_replay.delete()
                                 .where(t.saml_replay.c.expires_at < before))
        return int(result.rowcount)


class SamlLoginRequestReader:
    """The ACS reads the login it answers before verifying the Response (the AuthnRequest ID
    and the browser binding); the login is spent later, in the provisioning transaction
    (``LoginRequestRepository.consume``), so exactly one ACS request can still use it."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def peek(self, state_id: str, now: datetime) -> LoginRequestRecord | None:
        """The unspent, unexpired login request ``state_id`` (a copy), or None. Writes
        nothing."""
        row = self._c.execute(_PEEK_LOGIN, {"state_id": state_id, "now": now}).first()
        if row is None:
            return None
        return LoginRequestRecord(connection_id=row.connection_id, return_to=row.return_to,
                                  data=row.data, expires_at=utc(row.expires_at))



class LoginStore:
    """``uow.logins``: ``requests`` (logins in flight), ``saml_requests`` (the ACS's read-only
    look at one), ``saml_replay`` (assertion IDs already accepted) and ``token_replay``
    (single-use token ids, such as logout tokens' ``jti``)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.requests = LoginRequestRepository(conn)
        self.saml_requests = SamlLoginRequestReader(conn)
        self.saml_replay = SamlReplayRepository(conn)
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
