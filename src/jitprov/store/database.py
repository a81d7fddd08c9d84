"""Engines for SQLite (embedded, WAL) and PostgreSQL, and the schema-version check.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (durable across process crashes; the last
transactions may be lost only on power loss) and write transactions begin ``IMMEDIATE`` so
concurrent writers queue on the busy timeout instead of failing on a lock upgrade.
PostgreSQL runs with its defaults (``synchronous_commit`` on).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from jitprov.core.errors import DatabaseNotReady

MIGRATIONS = Path(__file__).with_name("migrations")


def normalise_url(url: str) -> str:
    """Accept the URLs people type (``postgresql://``, ``postgres://``) and pick our drivers."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_on_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")  # ms: writers queue at the shift change
    cur.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    # on the DBAPI connection: an SQLAlchemy execution would cost ~50 us per transaction
    readonly = conn.get_execution_options().get("readonly")
    conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
        "BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")


@dataclass
class Database:
    """One engine and what we know about it. Build with :meth:`connect`."""

    url: str
    engine: sa.Engine

    #: SQLite takes one writer at a time; writers of this process queue here, in order,
    #: rather than in SQLite's busy handler (which sleeps and backs off: seconds of p99).
    write_lock: threading.RLock | None = None

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 20) -> Database:
        """Build the engine. Raises DatabaseNotReady for a URL it cannot use."""
        url = normalise_url(url)
        if not url.startswith(("sqlite:", "postgresql+psycopg:")):
            raise DatabaseNotReady("cannot use the database URL: jitprov stores its data in "
                                   "SQLite (sqlite:///path) or PostgreSQL (postgresql://...)")
        try:
            return cls._connect(url, pool_size)
        except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
            raise DatabaseNotReady(f"cannot use the database URL: {exc}") from exc

    @classmethod
    def _connect(cls, url: str, pool_size: int) -> Database:
        if url.startswith("sqlite"):
            path = sa.make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                      hide_parameters=True,  # no claims or emails in logs
                                      connect_args={"check_same_thread": False, "timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_on_connect)
            sa.event.listen(engine, "begin", _sqlite_on_begin)
            return cls(url=url, engine=engine, write_lock=threading.RLock())
        engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                  pool_pre_ping=True, hide_parameters=True)
        return cls(url=url, engine=engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate to the newest schema; returns (version before, version after)."""
        before = self.current_revision()
        command.upgrade(self.alembic_config(), "head")
        return before, self.head_revision()

    def head_revision(self) -> str:
        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        assert head is not None  # noqa: S101 - the package always ships migrations
        return head

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except sa.exc.OperationalError as exc:
            raise DatabaseNotReady(f"cannot reach the database: {_first_line(exc)}") from exc

    def require_current(self) -> None:
        """Raise :class:`DatabaseNotReady` unless the schema is at the head revision."""
        current = self.current_revision()
        if current != self.head_revision():
            state = "is not migrated" if current is None else f"is at schema {current}"
            raise DatabaseNotReady(f"the database {self.safe_url} {state}; "
                                   "run `jitprov db upgrade`")

    @property
    def safe_url(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
