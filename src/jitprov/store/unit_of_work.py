"""One transaction, with every repository bound to it.

``with UnitOfWork(db) as uow: ...; uow.commit()``: leaving the block without ``commit()``
rolls back. Read-only units (``readonly=True``) take no write lock on SQLite; on PostgreSQL
they run as ``READ ONLY`` transactions (a write fails) and end with a COMMIT when the block
ends normally: psycopg forgets every server-side prepared statement of a connection at a
ROLLBACK (and sends ``DEALLOCATE ALL``), so a read that rolled back made the next
transactions on that connection parse and plan each statement again.
"""

from __future__ import annotations

import threading
from types import TracebackType

import sqlalchemy as sa

from jitprov.core.errors import DatabaseNotReady, DatabaseTimeout, InvalidInput, RaceLost
from jitprov.store.accounts import AccountRepository
from jitprov.store.audit import AuditLog
from jitprov.store.break_glass import BreakGlassRepository
from jitprov.store.configuration import ConfigStore
from jitprov.store.console import ConsoleStore
from jitprov.store.database import Database, inline_committed, is_busy, unavailable
from jitprov.store.devices import DeviceStore
from jitprov.store.entitlements import EntitlementStore
from jitprov.store.fast import WithCommit, WithNextRead
from jitprov.store.grants import GrantRepository
from jitprov.store.identities import IdentityRepository
from jitprov.store.logins import LoginStore
from jitprov.store.outbox import Outbox
from jitprov.store.scim import ScimStore
from jitprov.store.sessions import SessionRepository


class UnitOfWork:
    """A transaction and the repositories bound to it, in a few groups by aggregate."""

    #: tenants, connections, saml (metadata refresh), signing_keys, admin_tokens, jobs,
    #: domains (verified email domains)
    config: ConfigStore
    accounts: AccountRepository
    #: identities, pending links, the login locks; ``.claims``: recorded claims
    identities: IdentityRepository
    #: single grants and approval requests
    grants: GrantRepository
    #: requests (spent logins, LogoutRequests in flight), saml_replay, token_replay
    logins: LoginStore
    sessions: SessionRepository
    audit: AuditLog
    #: writes sent with the COMMIT (the ``with_commit=True`` of some repository methods)
    with_commit: WithCommit
    #: claims sent with the next read (``uow.logins``' spend and replay records)
    with_next_read: WithNextRead
    #: outbox events; ``.webhooks``: endpoints and deliveries
    outbox: Outbox
    #: passkeys, devices, challenges, accounts (passkey sign-in), health (IdPs')
    devices: DeviceStore
    #: users, groups, tokens
    scim: ScimStore
    #: links, sessions (admin), reads (read models, access review)
    console: ConsoleStore
    break_glass: BreakGlassRepository
    #: SCIM group names for logins, recorded identities, the re-evaluation queue
    entitlements: EntitlementStore

    def __init__(self, db: Database, *, readonly: bool = False) -> None:
        self._db = db
        self._readonly = readonly
        self._conn: sa.Connection | None = None
        self._tx: sa.RootTransaction | None = None
        self._lock: threading.RLock | None = None

    def __enter__(self) -> UnitOfWork:
        lock = None if self._readonly else self._db.write_lock
        if lock is not None:
            if not lock.acquire(timeout=self._db.limits.busy_timeout):
                raise DatabaseTimeout("the database is busy: no write turn within "
                                      f"{self._db.limits.busy_timeout:g} s")
            self._lock = lock
        try:
            return self._begin()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _begin(self) -> UnitOfWork:
        try:
            conn = self._db.engine.connect()
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            raise unavailable(exc) from exc
        if self._readonly:
            conn = conn.execution_options(readonly=True)
        self._conn = conn
        try:
            self._tx = conn.begin()
        except sa.exc.OperationalError as exc:
            conn.close()
            raise _translate(exc) from exc
        except self._db.engine.dialect.loaded_dbapi.OperationalError as exc:
            # SQLite's BEGIN, sent by the engine's begin hook: the driver's own error
            conn.close()
            if is_busy(exc):
                raise DatabaseTimeout("the database is busy: another process kept the write "
                                      f"turn past {self._db.limits.busy_timeout:g} s") from exc
            raise unavailable(exc) from exc
        except BaseException:  # WouldWait (see Database.run_inline), an interrupt
            conn.close()
            raise
        self.with_commit = WithCommit(conn)
        self.with_next_read = WithNextRead(conn, readonly=self._readonly)
        self.config = ConfigStore(conn)
        self.accounts = AccountRepository(conn, self.with_commit)
        self.identities = IdentityRepository(conn, self.with_commit)
        self.grants = GrantRepository(conn)
        self.logins = LoginStore(conn, self.with_next_read)
        self.sessions = SessionRepository(conn, self.with_commit)
        self.audit = AuditLog(conn, readonly=self._readonly)
        self.outbox = Outbox(conn, self.with_commit)
        self.devices = DeviceStore(conn)
        self.scim = ScimStore(conn)
        self.console = ConsoleStore(conn)
        self.break_glass = BreakGlassRepository(conn)
        self.entitlements = EntitlementStore(conn)
        return self

    def commit(self) -> None:
        assert self._tx is not None  # noqa: S101
        self.with_next_read.require_checked()  # a single-use claim is never left unread
        try:
            # the audit events last: each tenant's chain head is held from here to the end of
            # the commit. On PostgreSQL a unit that ends its own transaction sends them with
            # its COMMIT in one round trip (then ``_tx.commit()`` has nothing left to send)
            self.audit.flush(commit=isinstance(self._tx, sa.RootTransaction),
                             before=self.with_commit.take())
            self._tx.commit()
            self.audit.close()
        except sa.exc.IntegrityError as exc:
            raise RaceLost("commit lost a unique-key race") from exc
        if not self._readonly:
            inline_committed()
            self._db.writes.committed()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._conn is not None  # noqa: S101
        try:
            if self._tx is not None and self._tx.is_active:
                if exc is None and self._readonly and self._db.dialect == "postgresql":
                    try:  # READ ONLY: nothing to keep; see the module docstring
                        self._tx.commit()
                    except sa.exc.OperationalError as failed:
                        raise _translate(failed) from failed
                else:
                    try:
                        self._tx.rollback()
                    except sa.exc.OperationalError as failed:
                        # the connection died under the unit without a statement of it
                        # noticing (SQLAlchemy has now discarded it): the unit's own error,
                        # if any, stays the cause
                        raise _translate(failed) from (exc or failed)
        finally:
            self._conn.close()
            self._release()
        if isinstance(exc, sa.exc.IntegrityError):
            raise RaceLost("a unique key was written concurrently") from exc
        if isinstance(exc, sa.exc.DataError):
            raise InvalidInput(f"a value does not fit the database: {_first_line(exc)}") from exc
        if isinstance(exc, sa.exc.OperationalError | sa.exc.ProgrammingError):
            raise _translate(exc) from exc
        # statements of store/fast.py run on the DBAPI cursor: the driver's own error
        driver_error = self._db.engine.dialect.loaded_dbapi.OperationalError
        if exc is not None and isinstance(exc, driver_error):
            raise unavailable(exc) from exc


def _first_line(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)


def _translate(exc: sa.exc.DBAPIError) -> Exception:
    message = _first_line(exc)
    if "no such table" in message or "does not exist" in message:
        return DatabaseNotReady(f"the database is not migrated ({message}); "
                                "run `jitprov db upgrade`")
    if "database is locked" in message or "deadlock" in message or \
            "could not serialize" in message:
        return RaceLost(message)
    return unavailable(exc)
