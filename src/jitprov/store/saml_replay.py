"""The SAML store: the assertion replay cache shared by every node, the ACS's read-only look
at a login in flight, and the writes the IdP metadata refresh needs.

Each class is a narrow repository over one open transaction (see ``unit_of_work.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from jitprov.core.errors import NotFound
from jitprov.store import tables as t
from jitprov.store.records import LoginRequestRecord
from jitprov.store.repositories import utc

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
_PEEK_LOGIN = (
    sa.select(t.login_request.c.connection_id, t.login_request.c.return_to,
              t.login_request.c.data, t.login_request.c.expires_at)
    .where(t.login_request.c.id == _B("state_id"), t.login_request.c.consumed_at.is_(None),
           t.login_request.c.expires_at > _B("now")))


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


class SamlConnectionConfigRepository:
    """The writes of the IdP metadata refresh (``jobs/saml_metadata.py``)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def claim_refresh(self, slug: str, *, unchanged_since: datetime, now: datetime) -> bool:
        """Claim this period's metadata refresh of a connection: set its ``updated_at`` to
        ``now`` (the version, hence every node's compiled policy, is untouched) if it is not
        later than ``unchanged_since``. True for exactly one of any number of concurrent
        claimers on any node; False when it changed or was claimed since."""
        result = self._c.execute(
            t.connection.update()
            .where(t.connection.c.slug == slug, t.connection.c.updated_at <= unchanged_since)
            .values(updated_at=now))
        return int(result.rowcount) == 1

    def replace_config(self, slug: str, config: Mapping[str, object], *, expected_version: int,
                       now: datetime) -> int | None:
        """Replace the connection's config and bump its version (running nodes see it within
        their connection cache TTL), only if the version is still ``expected_version``.
        Returns the new version, or None when someone changed the connection meanwhile.
        Raises NotFound for an unknown slug."""
        result = self._c.execute(
            t.connection.update()
            .where(t.connection.c.slug == slug, t.connection.c.version == expected_version)
            .values(config=dict(config), updated_at=now, version=t.connection.c.version + 1)
            .returning(t.connection.c.version)).first()
        if result is not None:
            return int(result[0])
        if self._c.execute(sa.select(t.connection.c.id)
                           .where(t.connection.c.slug == slug)).first() is None:
            raise NotFound(f"no connection {slug!r}")
        return None
