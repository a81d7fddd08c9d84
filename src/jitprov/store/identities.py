"""Identities: the (connection, subject) pairs bound to an account, their per-login touch
(which also records the login's redacted claims), the links queued for an admin's approval,
and the advisory locks that serialize concurrent logins of one identity or email.
``uow.identities``; the recorded claims are read through ``uow.identities.claims``, the
pending links through ``uow.identities.links``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``); a lost unique-key race surfaces as :class:`RaceLost` for the service to
retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from jitprov.core.errors import RaceLost
from jitprov.store import tables as t
from jitprov.store._common import lock_key, prepared_insert
from jitprov.store.fast import Prepared, WithCommit
from jitprov.store.pending_links import PendingLinkRepository
from jitprov.store.recorded_claims import RecordedClaimsRepository

# Statements of the login hot path, built once (see ``fast.py``).
_B = sa.bindparam
_TOUCH_ACCOUNT = Prepared(t.account.update().where(t.account.c.id == _B("b_account_id"))
                  .values(last_login_at=_B("b_now"), dormant_warned_at=None))
_TOUCH_IDENTITY = Prepared(t.identity.update()
                   .where(t.identity.c.connection_id == _B("b_connection_id"),
                          t.identity.c.subject == _B("b_subject"))
                   .values(last_login_at=_B("b_now"), claims=_B("b_claims", type_=sa.JSON),
                           claims_at=_B("b_claims_at", type_=t.TS)))
_INSERT_IDENTITY = prepared_insert(t.identity)
_ADVISORY_LOCKS = Prepared(sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) "
    "WITH ORDINALITY AS u(k, n) ORDER BY n"))
# PostgreSQL: both touches in one statement (a data-modifying CTE)
_TOUCH_BOTH = Prepared(cast(sa.Update, _TOUCH_IDENTITY.stmt).add_cte(
    cast(sa.Update, _TOUCH_ACCOUNT.stmt).cte("touched_account")))


class IdentityRepository:
    """Identities of accounts, pending links, and the login locks; ``claims`` reads the
    recorded claims of identities."""

    def __init__(self, conn: sa.Connection, later: WithCommit) -> None:
        self._c = conn
        self._later = later
        self.claims = RecordedClaimsRepository(conn)
        self.links = PendingLinkRepository(conn)

    def lock_identity(self, connection_id: int, subject: str, *,
                      email: tuple[int, str] | None = None) -> None:
        """Serialize, until commit, the logins of one (connection, subject) across all nodes,
        so the reads that follow see what a concurrent first login committed. Take it before
        :meth:`lock_email` (a fixed order cannot deadlock); ``email`` (tenant id, email)
        takes that one too, right after, in the same statement. PostgreSQL: transaction-scoped
        advisory locks; SQLite: a no-op, as write transactions run one at a time."""
        for statement, params in self.identity_locks(connection_id, subject, email=email):
            statement.rowcount(self._c, params)

    def identity_locks(self, connection_id: int, subject: str, *,
                       email: tuple[int, str] | None = None
                       ) -> list[tuple[Prepared, Mapping[str, object]]]:
        """The statement :meth:`lock_identity` runs, not run: to send it with the read that
        follows it (``AccountRepository.find_by_identity(after=...)``). Empty on SQLite."""
        keys = [f"identity\0{connection_id}\0{subject}"]
        if email is not None:
            keys.append(_email_key(*email))
        return self._locks(keys)

    def lock_identities(self, identities: list[tuple[int, str]]) -> None:
        """:meth:`lock_identity` for several (connection, subject), in the order given, in one
        statement (a batch re-evaluation sorts them, so two batches cannot deadlock)."""
        self._advisory_locks([f"identity\0{c}\0{s}" for c, s in identities])

    def _advisory_locks(self, texts: list[str]) -> None:
        """PostgreSQL: the advisory lock of each text, in the order given, in one statement
        (the lock calls are volatile, so they run after the ORDER BY)."""
        for statement, params in self._locks(texts):
            statement.rowcount(self._c, params)

    def _locks(self, texts: list[str]) -> list[tuple[Prepared, Mapping[str, object]]]:
        """The statement that takes the advisory locks of ``texts`` (none on SQLite)."""
        if self._c.dialect.name != "postgresql" or not texts:
            return []
        return [(_ADVISORY_LOCKS, {"keys": [lock_key(text) for text in texts]})]

    def lock_email(self, tenant_id: int, email: str) -> None:
        """Serialize, until commit, the logins that would create or take ``email`` in a tenant."""
        self._advisory_locks([_email_key(tenant_id, email)])

    def add_identity(self, *, account_id: str, connection_id: int, subject: str, issuer: str,
                     now: datetime, claims: Mapping[str, object] | None = None,
                     claims_at: datetime | None = None, with_commit: bool = False) -> None:
        """Bind (connection, subject) to the account, recording ``claims`` (already redacted)
        as its latest login's, received at ``claims_at`` (default ``now``; the claims'
        retention runs from then). Raises RaceLost if it is already bound (``with_commit``:
        written with the commit, which raises it); the transaction is then unusable and the
        unit of work must be run again."""
        row = {"connection_id": connection_id, "subject": subject, "issuer": issuer,
               "account_id": account_id, "created_at": now, "last_login_at": now,
               "claims": claims, "claims_at": None if claims is None else (claims_at or now)}
        try:
            self._later.write(_INSERT_IDENTITY, row, with_commit=with_commit)
        except sa.exc.IntegrityError as exc:
            raise RaceLost("identity already bound") from exc

    def record_login(self, *, account_id: str, connection_id: int, subject: str,
                     now: datetime, claims: Mapping[str, object] | None = None,
                     with_commit: bool = False) -> None:
        """Move last_login_at of the account and the identity; the identity's recorded claims
        become ``claims`` (already redacted; None clears them), in the same UPDATE (one
        statement for both rows on PostgreSQL; ``with_commit``: written with the commit)."""
        identity = {"b_connection_id": connection_id, "b_subject": subject, "b_now": now,
                    "b_claims": claims, "b_claims_at": None if claims is None else now}
        if self._c.dialect.name == "postgresql":
            self._later.write(_TOUCH_BOTH, {**identity, "b_account_id": account_id},
                              with_commit=with_commit)
            return
        _TOUCH_ACCOUNT.rowcount(self._c, {"b_account_id": account_id, "b_now": now})
        _TOUCH_IDENTITY.rowcount(self._c, identity)

    def take_over(self, *, tenant_id: int, connection_id: int, subject: str,
                  account_id: str) -> str | None:
        """Bind (connection, subject) to ``account_id`` if it is bound to an account of the
        tenant that SCIM deleted (kept deactivated under ``scim_delete: deactivate``); the id
        of that account, or None (unbound, or bound to any other account: left alone)."""
        old = self._c.execute(
            sa.select(t.identity.c.account_id)
            .join(t.account, t.account.c.id == t.identity.c.account_id)
            .where(t.identity.c.connection_id == connection_id,
                   t.identity.c.subject == subject, t.account.c.tenant_id == tenant_id,
                   t.account.c.scim_deleted_at.is_not(None))).scalar()
        if old is None:
            return None
        self._c.execute(t.identity.update()
                        .where(t.identity.c.connection_id == connection_id,
                               t.identity.c.subject == subject)
                        .values(account_id=account_id))
        return str(old)

    def queue_link(self, *, tenant_id: int, connection_id: int, subject: str, issuer: str,
                   account_id: str, email: str | None, claims: Mapping[str, object],
                   now: datetime) -> int | None:
        """Queue a pending link; its id, or None when one is already open (or refused) for
        this identity (see :class:`PendingLinkRepository`)."""
        return self.links.queue(tenant_id=tenant_id, connection_id=connection_id,
                                subject=subject, issuer=issuer, account_id=account_id,
                                email=email, claims=claims, now=now)


def _email_key(tenant_id: int, email: str) -> str:
    return f"email\0{tenant_id}\0{email.lower()}"
