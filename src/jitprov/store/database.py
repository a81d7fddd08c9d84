"""Engines for SQLite (embedded, WAL) and PostgreSQL, and the schema-version check.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (durable across process crashes; the last
transactions may be lost only on power loss) and write transactions begin ``IMMEDIATE`` so
concurrent writers queue on the busy timeout instead of failing on a lock upgrade: within a
process on its write lock, across processes by trying SQLite's again every 2 ms at most.
PostgreSQL runs with its defaults (``synchronous_commit`` on).

Every engine has time limits (:class:`DatabaseLimits`), so a sick database makes a request
fail fast (``DatabaseTimeout``, a 503) instead of hanging: a connect timeout (PostgreSQL), a
statement timeout (PostgreSQL's ``statement_timeout``, sent as a startup option so it costs no
round trip; on SQLite a progress handler interrupts a transaction's statements past the limit),
a pool checkout timeout, and on SQLite a bounded wait for the single writer. Migrations run
without the statement timeout.

Behind a transaction pooler (PgBouncer ``pool_mode = transaction``), two things of a direct
connection break: startup options (PgBouncer refuses ``options``) and server-side prepared
statements (psycopg prepares a statement run five times on a connection, and the next
transaction may run on another server connection). :class:`Pooling` switches both off: the
statement timeout is then set per transaction (``SET LOCAL``, one more round trip) and
psycopg never prepares. ``auto`` (the default) switches on by itself, with one log line, when
the server refuses the startup option, as PgBouncer does.

A pooled PostgreSQL connection is pinged before use only after it sat idle a while
(:data:`PING_AFTER_IDLE`), not at every checkout: a round trip per transaction otherwise.
"""

from __future__ import annotations

import enum
import itertools
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from jitprov.core.errors import DatabaseNotReady, DatabaseTimeout
from jitprov.core.json_text import compact
from jitprov.core.text import safe_tree

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("jitprov.database")
P = ParamSpec("P")
R = TypeVar("R")


def dump_json(value: Any) -> str:
    """Every JSON column as written: orjson's text where it holds what ``json.dumps``'s would
    (:func:`jitprov.core.json_text.compact`), else ``json.dumps``'s own. orjson writes 5-10
    times faster: 1.4-2.4 % of a SAML first login's instructions in process, 2.3 % of an OIDC
    callback's, 3.4 % of a SCIM create's (``bench.instructions``). Its text is always ASCII,
    as ``json.dumps``'s has always been, which a PostgreSQL database in any server encoding
    stores (orjson's raw UTF-8 would fail in a LATIN1 one)."""
    text = compact(value)
    return json.dumps(value) if text is None else text


def load_json(text: str | bytes) -> Any:
    """Every JSON column as read (text from SQLite, bytes from psycopg): a row written before
    the input rule of ``core.text`` may hold an escaped lone surrogate, which nothing
    downstream can encode as UTF-8 (a response, a page, a CLI line); it reads as U+FFFD
    instead. A substring test keeps the common case at the cost of ``json.loads``."""
    value = json.loads(text)
    marks = (b"\\ud", b"\\uD") if isinstance(text, bytes) else ("\\ud", "\\uD")
    if marks[0] in text or marks[1] in text:  # type: ignore[operator]
        return safe_tree(value)
    return value


def normalise_url(url: str) -> str:
    """Accept the URLs people type (``postgresql://``, ``postgres://``) and pick our drivers."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass(frozen=True)
class DatabaseLimits:
    """Time limits toward the database, in seconds (settings ``JITPROV_DB_*_TIMEOUT``).

    ``connect_timeout``: establishing a PostgreSQL connection (libpq rounds it up to whole
    seconds, at least 2). ``statement_timeout``: one PostgreSQL statement; on SQLite, the
    statements of one transaction (0: none). ``pool_timeout``: waiting for a free connection of
    this process's pool. ``busy_timeout``: on SQLite, waiting for the single writer (this
    process's writers queue on a lock, other processes' in SQLite's busy handler).
    """

    connect_timeout: float = 5.0
    statement_timeout: float = 15.0
    pool_timeout: float = 5.0
    busy_timeout: float = 10.0


#: ``JITPROV_DB_TRANSACTION_POOLING``: how to talk to PostgreSQL through a transaction pooler
POOLING_MODES = ("auto", "on", "off")


@dataclass
class Pooling:
    """Whether the PostgreSQL connections go through a transaction pooler; ``mode`` as set
    (``auto``: decided at the first connection), ``on`` as in force."""

    mode: str = "auto"
    on: bool = False

    def __post_init__(self) -> None:
        self.on = self.mode == "on"


#: what a transaction pooler answers to a startup option it does not pass on
_REFUSED_STARTUP = "unsupported startup parameter"


def _through_pooler(cparams: dict[str, Any]) -> None:
    cparams.pop("options", None)  # PgBouncer refuses startup options
    cparams["prepare_threshold"] = None  # psycopg never prepares server-side


#: execution option of a connection whose transactions run without the statement timeout
UNLIMITED = "jitprov_unlimited"
#: SQLite calls the progress handler every this many virtual-machine instructions (a few
#: milliseconds of work; a short statement never calls it)
_PROGRESS_STEPS = 10_000


class _SqliteConnection(sqlite3.Connection):
    """A connection that knows its transaction's deadline (``time.monotonic()``; 0: none)."""

    deadline = 0.0

    def past_deadline(self) -> bool:
        """The progress handler: a true value interrupts the running statement."""
        return bool(self.deadline) and time.monotonic() > self.deadline


def _sqlite_hooks(limits: DatabaseLimits) -> tuple[Any, Any]:
    busy_ms = int(limits.busy_timeout * 1000)
    statement_timeout = limits.statement_timeout

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")  # writers of other processes queue
        # the WAL is copied back by the Checkpointer's thread, not by the commit that fills it
        # (a checkpoint's fsyncs take milliseconds: a commit on the event loop would stall it)
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()
        if statement_timeout:
            dbapi_conn.set_progress_handler(dbapi_conn.past_deadline, _PROGRESS_STEPS)

    def on_begin(conn: sa.Connection) -> None:
        # on the DBAPI connection: an SQLAlchemy execution would cost ~50 us per transaction
        options = conn.get_execution_options()
        raw: Any = conn.connection.dbapi_connection
        if options.get("readonly"):
            raw.execute("BEGIN DEFERRED")
        else:
            _begin_immediate(raw, busy_ms, wait=not _probing())
        # the clock starts once the transaction holds what it waited for
        raw.deadline = (time.monotonic() + statement_timeout
                        if statement_timeout and not options.get(UNLIMITED) else 0.0)

    return on_connect, on_begin


class WouldWait(BaseException):
    """A write unit of a call run by :meth:`Database.run_inline` would have waited for
    SQLite's write lock, held by another process: nothing of the call was committed, and
    its caller runs the whole call again later (:class:`Declined`). A BaseException, so that no
    ``except Exception`` on its way (an audit of failures, a retry) takes it for a failure."""


class Declined(enum.Enum):
    """Why :meth:`Database.run_inline` did not run a call."""

    #: PostgreSQL, or a call made inside one run there: never
    NEVER = "never"
    #: a thread of this process holds the write turn
    THREAD = "thread"
    #: another process (another ``serve`` worker, a CLI command) holds SQLite's write lock
    PROCESS = "process"
    #: every kept connection of the pool is in use: the checkout could wait
    POOL = "pool"


@dataclass(frozen=True, slots=True)
class Ran(Generic[R]):
    """A call :meth:`Database.run_inline` ran, and what it returned."""

    value: R


@dataclass
class _InlineCall:
    #: no write unit of the call has committed yet: one that cannot begin at once raises
    #: WouldWait (the call can still be run again from the start)
    probing: bool = True


_INLINE: ContextVar[_InlineCall | None] = ContextVar("jitprov_inline_call", default=None)


def _probing() -> bool:
    call = _INLINE.get()
    return call is not None and call.probing


def inline_committed() -> None:
    """A write unit committed: the rest of the running inline call (if any) cannot be run
    again from the start, so its later units wait for their turn like any other."""
    call = _INLINE.get()
    if call is not None:
        call.probing = False


#: SQLite's primary result codes for a lock held by another connection
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def is_busy(exc: BaseException) -> bool:
    """Whether an sqlite3 error says another connection holds the lock it needed."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


#: the pauses between a writer's tries for SQLite's write lock while another process holds
#: it, in seconds; the last one repeats until the busy timeout
_TURN_PAUSES = (0.0002, 0.0005, 0.001, 0.002)


def _begin_immediate(raw: Any, busy_ms: int, *, wait: bool) -> None:
    """``BEGIN IMMEDIATE``: the write lock, which another process (another ``serve`` worker, a
    CLI command) may hold. Without ``wait``, WouldWait at once. With it, tried again every
    :data:`_TURN_PAUSES` until ``busy_ms`` have passed, then SQLite's busy error (the caller's
    DatabaseTimeout). Not SQLite's own busy handler: after its first 50 ms of waiting it
    sleeps 25 to 100 ms between tries, so under steady writes from two workers a writer that
    lost a few times slept through the lock's free moments (logins at 16 concurrent browsers
    had a p99 of 400-500 ms for a p50 of 50 ms, ``bench/e2e.py``)."""
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline = 0.0
        for tried in itertools.count():
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if not wait:
                    raise WouldWait from exc
                now = time.monotonic()
                deadline = deadline or now + busy_ms / 1000
                if now >= deadline:
                    raise
                time.sleep(min(_TURN_PAUSES[min(tried, len(_TURN_PAUSES) - 1)],
                               deadline - now))
    finally:
        raw.execute(f"PRAGMA busy_timeout={busy_ms}")


def _sqlite_target(engine: sa.Engine) -> tuple[str, bool]:
    """The file the engine's connections open, however the URL names it (a path, a URI), and
    whether it is a URI."""
    args, options = engine.dialect.create_connect_args(engine.url)
    return str(args[0]), bool(options.get("uri"))


class TurnProbe:
    """Whether another process holds SQLite's write lock, asked on a connection of its own:
    ``BEGIN IMMEDIATE`` without waiting, then ``ROLLBACK`` (5 µs here, 1.6 when the lock is
    taken). :meth:`Database.run_inline` asks before it runs a call, so that a call that would
    meet another process's writer is declined before doing any work: run up to its first
    write and given up, a login cost 0.2-0.4 ms for nothing. Only under the process's write
    lock, so one caller at a time."""

    def __init__(self, engine: sa.Engine) -> None:
        self._target, self._uri = _sqlite_target(engine)
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def taken(self) -> bool:
        """True when another connection holds the write lock; False when it is free or the
        probe cannot tell (the call itself then meets whatever is wrong, and says so), and
        after :meth:`close`."""
        if self._closed:
            return False
        try:
            conn = self._conn
            if conn is None:
                conn = sqlite3.connect(self._target, uri=self._uri, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA busy_timeout=0")
                self._conn = conn
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return is_busy(exc)
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._conn = None
            conn.close()
        return False

    def close(self) -> None:
        """Close its connection, for good (the database is disposed of)."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class Checkpointer:
    """Copies SQLite's write-ahead log back into the database file, in a thread of its own.

    SQLite's own automatic checkpoint runs inside the commit that fills the log past 1,000
    pages: milliseconds of writes and two fsyncs in whatever thread committed, which may be a
    worker's event loop (:meth:`Database.run_inline`). Here a ``PASSIVE`` checkpoint runs
    every :attr:`EVERY` commits of this process, and :attr:`IDLE` seconds after the last
    commit it has not yet copied, holding the process's write lock as the committing thread
    did: the log starts over from its beginning only after a checkpoint that copied all of
    it, which a write of this process in the middle would prevent. The thread starts at the
    first commit and ends after :attr:`LINGER` seconds without one. The last connection to
    close checkpoints as always (a CLI command that exits)."""

    EVERY = 64  # about 1,000 pages of a SCIM create or a first login (15 pages each)
    IDLE = 1.0
    LINGER = 30.0

    def __init__(self, engine: sa.Engine, write_lock: threading.RLock, wait: float) -> None:
        self._target, self._uri = _sqlite_target(engine)
        self._write_lock = write_lock
        self._wait = wait
        self.done = 0  # checkpoints run (for tests and the curious)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._stopped = False

    def committed(self) -> None:
        with self._lock:
            self._pending += 1
            due = self._pending >= self.EVERY
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="jitprov-checkpoint",
                                                daemon=True)
                self._thread.start()
        if due:
            self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        idle_since = time.monotonic()
        try:
            while True:
                if not self._stopped:  # stopping: the last checkpoint at once, then out
                    self._wake.wait(self.IDLE)
                self._wake.clear()
                with self._lock:
                    pending, self._pending = self._pending, 0
                    if not pending and (self._stopped or
                                        time.monotonic() - idle_since > self.LINGER):
                        return
                if pending:
                    idle_since = time.monotonic()
                    conn = conn or sqlite3.connect(self._target, uri=self._uri,
                                                   isolation_level=None,
                                                   check_same_thread=False)
                    if not self._checkpoint(conn):
                        self._again()
        except Exception:  # never a silent end: the next commit starts a new thread
            log.exception("SQLite checkpoint thread failed")
        finally:
            with self._lock:
                self._thread = None
            if conn is not None:
                conn.close()

    def _again(self) -> None:
        """Try again after the next wait, without waiting for this process's next commit."""
        with self._lock:
            self._pending += 1

    def _checkpoint(self, conn: sqlite3.Connection) -> bool:
        """One PASSIVE checkpoint; whether it copied the whole log."""
        if not self._write_lock.acquire(timeout=self._wait):
            return False  # writers kept the turn: next time
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.done += 1
            return not busy and copied == frames  # else a reader holds an older snapshot
        except sqlite3.Error as exc:  # the file went away, the disk is full: the next try
            log.warning("SQLite checkpoint failed: %s", exc)
            return False
        finally:
            self._write_lock.release()


def _postgres_hooks(limits: DatabaseLimits, pooling: Pooling) -> tuple[Any, Any]:
    timeout_ms = math.ceil(limits.statement_timeout * 1000)

    def do_connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        if pooling.on:
            _through_pooler(cparams)
            return dialect.connect(*cargs, **cparams)
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            if pooling.mode != "auto" or _REFUSED_STARTUP not in str(exc):
                raise
        pooling.on = True
        log.warning("the database refused a startup option: talking to it as to a transaction "
                    "pooler (PgBouncer): statement timeout per transaction, no server-side "
                    "prepared statements (set JITPROV_DB_TRANSACTION_POOLING=on to say so)")
        _through_pooler(cparams)
        return dialect.connect(*cargs, **cparams)

    def on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        raw: Any = conn.connection.dbapi_connection
        # psycopg sends this with its BEGIN (no round trip of its own); set at every begin, as
        # the pool hands the connection to read-only and writing units alike
        read_only = True if options.get("readonly") else None
        if raw.read_only is not read_only:
            raw.read_only = read_only
        if options.get(UNLIMITED):  # migrations: transaction-scoped
            raw.execute("SET LOCAL statement_timeout = 0")
        elif pooling.on and timeout_ms:  # no startup option through a pooler
            raw.execute(f"SET LOCAL statement_timeout = {timeout_ms}")

    return do_connect, on_begin


#: a pooled PostgreSQL connection idle longer than this (seconds) is pinged before use
PING_AFTER_IDLE = 2.0
_IDLE_SINCE = "jitprov_idle_since"


def _ping_when_idle(engine: sa.Engine) -> None:
    """Ping a pooled connection at checkout only when it sat idle past
    :data:`PING_AFTER_IDLE`, instead of at every checkout (``pool_pre_ping``: one round trip
    per transaction). What the ping catches (a server restart, a pooler or firewall closing
    idle connections) happens while a connection is idle; a connection that breaks within
    the idle window fails its one request as ``unavailable``, and SQLAlchemy then discards
    every connection of the pool opened before it."""
    dialect = engine.dialect

    def on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since <= PING_AFTER_IDLE:
            return
        try:
            dialect.do_ping(dbapi_conn)
            dbapi_conn.commit()  # psycopg began a transaction for the ping
        except dialect.loaded_dbapi.Error as exc:  # the pool retries with a new connection
            raise sa.exc.DisconnectionError(str(exc)) from exc

    sa.event.listen(engine, "checkin", on_checkin)
    sa.event.listen(engine, "checkout", on_checkout)


def _postgres_connect_args(url: str, limits: DatabaseLimits) -> dict[str, Any]:
    """libpq parameters: ``connect_timeout`` and ``statement_timeout`` as a startup option
    (added to any ``options`` of the URL). Behind a transaction pooler, which refuses startup
    options, :class:`Pooling` drops them and sets the timeout per transaction instead."""
    args: dict[str, Any] = {"connect_timeout": max(2, math.ceil(limits.connect_timeout))}
    if limits.statement_timeout:
        option = f"-c statement_timeout={math.ceil(limits.statement_timeout * 1000)}"
        given = sa.make_url(url).query.get("options")
        given = given[-1] if isinstance(given, tuple) else given
        args["options"] = f"{given} {option}" if given else option
    return args


class WriteCount:
    """Write transactions this process committed, numbered: the session cache serves from
    memory only once the database's notifications of every one of them have arrived.
    Watchers (the change listener) are called after each commit, so they need not poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0
        self._watchers: tuple[Callable[[], None], ...] = ()

    def committed(self) -> None:
        with self._lock:
            self.value += 1
        for watcher in self._watchers:
            watcher()

    def watch(self, watcher: Callable[[], None]) -> None:
        with self._lock:
            self._watchers = (*self._watchers, watcher)

    def unwatch(self, watcher: Callable[[], None]) -> None:
        with self._lock:
            self._watchers = tuple(w for w in self._watchers if w != watcher)


@dataclass
class Database:
    """One engine and what we know about it. Build with :meth:`connect`."""

    url: str
    engine: sa.Engine

    #: SQLite takes one writer at a time; writers of this process queue here, in order,
    #: rather than in SQLite's busy handler (which sleeps and backs off: seconds of p99).
    write_lock: threading.RLock | None = None
    limits: DatabaseLimits = field(default_factory=DatabaseLimits)
    #: PostgreSQL: whether it is reached through a transaction pooler
    pooling: Pooling = field(default_factory=Pooling)
    writes: WriteCount = field(default_factory=WriteCount)
    #: SQLite: copies the write-ahead log back in a thread of its own
    checkpointer: Checkpointer | None = None
    #: SQLite: whether another process writes (:meth:`run_inline`)
    turn_probe: TurnProbe | None = None

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 20, max_overflow: int | None = None,
                limits: DatabaseLimits | None = None, pooling: str = "auto") -> Database:
        """Build the engine: ``pool_size`` connections kept, ``max_overflow`` more at peaks
        (default: as many again). Raises DatabaseNotReady for a URL it cannot use."""
        if pooling not in POOLING_MODES:
            raise DatabaseNotReady(f"transaction pooling must be one of "
                                   f"{', '.join(POOLING_MODES)}, not {pooling!r}")
        url = normalise_url(url)
        if not url.startswith(("sqlite:", "postgresql+psycopg:")):
            raise DatabaseNotReady("cannot use the database URL: jitprov stores its data in "
                                   "SQLite (sqlite:///path) or PostgreSQL (postgresql://...)")
        if url.startswith("sqlite:") and (sa.make_url(url).database or ":memory:") in (
                ":memory:", ""):
            raise DatabaseNotReady("cannot use the database URL: an SQLite database is a file "
                                   "(sqlite:///path/to/jitprov.db), not memory")
        try:
            return cls._connect(url, pool_size,
                                pool_size if max_overflow is None else max_overflow,
                                limits or DatabaseLimits(), Pooling(pooling))
        except (sa.exc.ArgumentError, ImportError, ValueError, TypeError) as exc:
            raise DatabaseNotReady(f"cannot use the database URL: {exc}") from exc

    @classmethod
    def _connect(cls, url: str, pool_size: int, max_overflow: int, limits: DatabaseLimits,
                 pooling: Pooling) -> Database:
        if url.startswith("sqlite"):
            path = sa.make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, pool_size=pool_size, max_overflow=max_overflow,
                                      pool_timeout=limits.pool_timeout,
                                      hide_parameters=True,  # no claims or emails in logs
                                      json_serializer=dump_json, json_deserializer=load_json,
                                      connect_args={"check_same_thread": False,
                                                    "timeout": limits.busy_timeout,
                                                    "factory": _SqliteConnection})
            on_connect, on_begin = _sqlite_hooks(limits)
            sa.event.listen(engine, "connect", on_connect)
            sa.event.listen(engine, "begin", on_begin)
            write_lock = threading.RLock()
            db = cls(url=url, engine=engine, write_lock=write_lock, limits=limits,
                     checkpointer=Checkpointer(engine, write_lock, limits.busy_timeout),
                     turn_probe=TurnProbe(engine))
            db.writes.watch(db.checkpointer.committed)  # type: ignore[union-attr]
            return db
        engine = sa.create_engine(url, pool_size=pool_size, max_overflow=max_overflow,
                                  pool_timeout=limits.pool_timeout,
                                  hide_parameters=True,
                                  json_serializer=dump_json, json_deserializer=load_json,
                                  connect_args=_postgres_connect_args(url, limits))
        do_connect, on_begin = _postgres_hooks(limits, pooling)
        sa.event.listen(engine, "do_connect", do_connect)
        sa.event.listen(engine, "begin", on_begin)
        _ping_when_idle(engine)
        return cls(url=url, engine=engine, limits=limits, pooling=pooling)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        # migrations may take longer than a request's statement timeout
        cfg.attributes["engine"] = self.engine.execution_options(**{UNLIMITED: True})
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
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            raise unavailable(exc) from exc
        except sa.exc.DatabaseError as exc:  # e.g. SQLite: "file is not a database"
            raise DatabaseNotReady(f"cannot read the database {self.safe_url}: "
                                   f"{_first_line(exc)}") from exc

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

    @property
    def runs_inline(self) -> bool:
        """Whether :meth:`run_inline` can ever run a call here (SQLite); PostgreSQL's every
        statement is a round trip the event loop would wait for."""
        return self.write_lock is not None

    def run_inline(self, fn: Callable[P, R], /, *args: P.args,
                   **kwargs: P.kwargs) -> Ran[R] | Declined:
        """Run ``fn`` here, in the calling thread (a worker's event loop), when that cannot
        wait on a lock: :class:`Ran` with its result; else why not (:class:`Declined`), and
        the caller tries again later or runs it in a worker thread. SQLite only, and only when
        no thread of this process is writing (the write lock is free: it is then held for the
        whole call) and no other process holds SQLite's write lock (:class:`TurnProbe`,
        asked before ``fn`` does any work); a write unit of the call that cannot begin at
        once, because another process took that lock since, makes the call give up
        (:class:`WouldWait`) if none of its units has committed yet. Declined too when every
        kept connection of the pool is in use (the checkout could wait). A thread hand-off
        costs more CPU than a SCIM create's SQL: an uncontended write is served without one.

        For calls that write little and never wait on the network: the event loop serves
        no other request of the worker while ``fn`` runs. Once a unit of the call has
        committed, a later one waits for its turn there (up to the busy timeout)."""
        lock = self.write_lock
        if lock is None or _INLINE.get() is not None:
            return Declined.NEVER
        if not self._connection_free():
            return Declined.POOL
        if not lock.acquire(blocking=False):
            return Declined.THREAD
        token = _INLINE.set(_InlineCall())
        try:
            if self.turn_probe is not None and self.turn_probe.taken():
                return Declined.PROCESS  # declined before any work
            return Ran(fn(*args, **kwargs))
        except WouldWait:
            return Declined.PROCESS
        finally:
            _INLINE.reset(token)
            lock.release()

    def _connection_free(self) -> bool:
        """A kept connection of the pool is idle: checking one out will not wait for one."""
        pool = self.engine.pool
        return not isinstance(pool, sa.QueuePool) or pool.checkedout() < pool.size()

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        lock = self.write_lock
        if self.turn_probe is not None and lock is not None:
            # under the write lock, where the probe is used; a writer still running past
            # the busy timeout leaves the connection to the process's exit
            if lock.acquire(timeout=self.limits.busy_timeout):
                try:
                    self.turn_probe.close()
                finally:
                    lock.release()
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: what the drivers say when a time limit is hit: psycopg's connect timeout, PostgreSQL's
#: statement_timeout (and lock_timeout), SQLite's interrupt by the progress handler
_TIMEOUT_TEXTS = ("timeout expired", "statement timeout", "lock timeout", "interrupted")


def is_timeout(exc: BaseException) -> bool:
    """Whether a database error is a time limit running out."""
    if isinstance(exc, sa.exc.TimeoutError):  # the pool's checkout timeout
        return True
    return any(text in _first_line(exc) for text in _TIMEOUT_TEXTS)


def unavailable(exc: BaseException) -> DatabaseNotReady:
    """The error a request gets when the database cannot serve it: a time limit, or
    unreachable. The message is for the server log."""
    if is_timeout(exc):
        return DatabaseTimeout(f"the database did not answer in time: {_first_line(exc)}")
    return DatabaseNotReady(f"cannot reach the database: {_first_line(exc)}")
