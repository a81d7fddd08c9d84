"""One transaction under many units of work.

Services open a :class:`~jitprov.store.unit_of_work.UnitOfWork` each. A use case that calls
several of them and must commit all or nothing (``jitprov apply``) runs them on the
:class:`Database` that :class:`OneTransaction` yields: every unit of work opened on it runs on
one connection, inside one outer transaction, as a savepoint (``begin`` is
``begin_nested``; ``commit`` releases the savepoint, leaving without it rolls the savepoint
back). Nothing is durable until :meth:`OneTransaction.commit`; leaving the block without it
rolls every unit of work back.

The pattern is SQLAlchemy's "Joining a Session into an External Transaction", for Core
connections. One thread only: the outer transaction holds this process's SQLite write lock
(re-entrant, so the inner units take it again) for its whole length.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, cast

import sqlalchemy as sa

from jitprov.core.errors import DatabaseTimeout, RaceLost
from jitprov.store.database import Database, unavailable


class _PinnedConnection:
    """The outer transaction's connection as a unit of work sees it."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def execution_options(self, **_options: Any) -> _PinnedConnection:
        return self  # read-only units run in the outer (writing) transaction

    def begin(self) -> sa.NestedTransaction:
        return self._conn.begin_nested()

    def close(self) -> None:
        """The outer transaction closes the connection."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _PinnedEngine:
    """An engine whose every connection is the outer transaction's."""

    def __init__(self, engine: sa.Engine, conn: sa.Connection) -> None:
        self._engine = engine
        self._conn = conn

    def connect(self) -> _PinnedConnection:
        return _PinnedConnection(self._conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


class OneTransaction:
    """``with OneTransaction(db) as pinned: ...services on pinned...; tx.commit()``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: sa.Connection | None = None
        self._tx: sa.RootTransaction | None = None
        self._locked = False

    def __enter__(self) -> Database:
        lock = self._db.write_lock
        if lock is not None:
            if not lock.acquire(timeout=self._db.limits.busy_timeout):
                raise DatabaseTimeout("the database is busy: no write turn within "
                                      f"{self._db.limits.busy_timeout:g} s")
            self._locked = True
        try:
            self._conn = self._db.engine.connect()
            self._tx = self._conn.begin()
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            self._close()
            raise unavailable(exc) from exc
        return Database(url=self._db.url,
                        engine=cast(sa.Engine, _PinnedEngine(self._db.engine, self._conn)),
                        write_lock=self._db.write_lock, limits=self._db.limits,
                        pooling=self._db.pooling, writes=self._db.writes)

    def commit(self) -> None:
        """Make every unit of work run inside the block durable, at once."""
        assert self._tx is not None  # noqa: S101
        try:
            self._tx.commit()
        except sa.exc.IntegrityError as exc:
            raise RaceLost("commit lost a unique-key race") from exc
        self._db.writes.committed()  # (the session cache waits for its notifications)

    def _close(self) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                self._tx.rollback()
            if self._conn is not None:
                self._conn.close()
        finally:
            self._conn = self._tx = None
            if self._locked and self._db.write_lock is not None:
                self._db.write_lock.release()
                self._locked = False

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()
