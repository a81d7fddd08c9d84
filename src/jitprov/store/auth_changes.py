"""What the database says about changes to the signed-in view (``/me``, ``/auth/verify``):
the triggers of migration 0019 on accounts, sessions, grants, identities, tenants and
connections.

PostgreSQL sends ``NOTIFY jitprov_auth`` at each commit that changed one of them, its payload
the account id (``*``: every account); :class:`ChangeListener` receives them on a connection
of its own (never through a transaction pooler, which cannot keep a ``LISTEN``). SQLite, one
host, bumps the row of ``auth_change`` instead: :func:`version` reads it, and
:class:`DataVersion` says without a read whether anything at all was committed since.
"""

from __future__ import annotations

import math
import os
import select
import socket
import sqlite3
import threading
import time
from collections.abc import Callable

import psycopg
import sqlalchemy as sa

from jitprov.store import tables as t
from jitprov.store.database import WriteCount

CHANNEL = "jitprov_auth"
EVERY_ACCOUNT = "*"
SYNC = "sync:"  # a listener's echo: sync:<pid>:<listener>:<n> (no account id has this form)
SYNC_TIMEOUT = 5.0
#: seconds between the listener's round trips when nothing else happens
HEARTBEAT = 1.0
#: seconds at least between two echoes: under a stream of commits one echo covers many (each
#: is a notification every listener of every node receives); until it comes back the worker's
#: session cache does not serve, so its forward-auth reads the database meanwhile (measured:
#: with logins committing on the worker, 1.02 ms per request at 20 ms, 0.16-0.19 at 5, 0.10 alone)
SYNC_EVERY = 0.005

_VERSION = sa.select(t.auth_change.c.version).where(t.auth_change.c.id == 1)
#: the same read, for a raw sqlite3 connection (:meth:`DataVersion.counter`)
_COUNTER = "SELECT version FROM auth_change WHERE id = 1"


def version(conn: sa.Connection) -> int:
    """SQLite: the change counter (0 before the first change)."""
    return int(conn.execute(_VERSION).scalar() or 0)


class DataVersion:
    """SQLite: ``PRAGMA data_version`` on a connection of its own, which moves at every commit
    of any other connection, of this process or another (the CLI, another worker). Unmoved,
    nothing was committed since: the counter of :func:`version` is what it was. No table is
    read (the header in shared memory) and nothing waits on a lock (no busy timeout), so the
    event loop may ask; None when it cannot say (busy, an error): read the counter.

    The value is ``(connection, data_version)``: a data version is a count of one connection,
    which a new connection starts again, so two values of different connections never match.
    The file is the one the engine's connections open, however the URL names it (a path, a
    ``file:`` URI)."""

    def __init__(self, engine: sa.Engine) -> None:
        args, options = engine.dialect.create_connect_args(engine.url)
        self._target, self._uri = str(args[0]), bool(options.get("uri"))
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._opened = 0  # connections opened so far: the first half of each value

    def read(self) -> tuple[int, int] | None:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(self._target, uri=self._uri, timeout=0,
                                                 isolation_level=None,
                                                 check_same_thread=False)
                    self._opened += 1
                # fetchall: the statement runs to its end, so no read transaction stays open
                # (it would pin this connection's view and hold back checkpoints)
                ((value,),) = self._conn.execute("PRAGMA data_version").fetchall()
                return self._opened, int(value)
            except (sqlite3.Error, ValueError):
                self._close()
                return None

    def counter(self, seen: tuple[int, int]) -> int | None:
        """The change counter (:func:`version`), read on the connection that observed
        ``seen`` (a value of :meth:`read`), so in a snapshot that began after it; None when
        that connection is gone or the read fails (read it in a unit of work instead). A
        read in WAL mode waits for no writer: the event loop may ask."""
        with self._lock:
            if self._conn is None or seen[0] != self._opened:
                return None
            try:
                rows = self._conn.execute(_COUNTER).fetchall()  # to its end, as read()
            except sqlite3.Error:
                self._close()
                return None
            return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:  # under the lock
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass


def conninfo(url: str) -> str:
    """A libpq URI of a SQLAlchemy PostgreSQL URL (its password kept)."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeListener:
    """A daemon thread that ``LISTEN``s on :data:`CHANNEL` and calls ``on_change(account_id)``
    for each notification (``*`` for every account).

    ``synced`` is the number of this process's write transactions (``writes``, counted by
    the unit of work after each commit) whose notifications have all been handled: when
    ``writes`` moves, the thread sends a notification of its own and waits for its echo.
    PostgreSQL delivers notifications in commit order, so every one of the earlier
    transactions' has been handled by then (a change made here is never served stale here,
    not even for the milliseconds a notification takes).

    Between round trips the thread sleeps in one ``poll`` of the connection's socket and a
    socket pair that each commit of this process (``writes``' watcher) and :meth:`stop` write
    to: an idle listener wakes once per :data:`HEARTBEAT`, and a commit is echoed at once, or
    :data:`SYNC_EVERY` after the last echo.

    ``on_state(True, None)`` once it listens (a cache may serve from then on),
    ``on_state(False, error)`` when its connection is lost or cannot be made (a cache must read
    the database until the next ``True``: notifications sent meanwhile are lost), ``error``
    the exception's class name. It reconnects every ``retry`` seconds."""

    def __init__(self, url: str, on_change: Callable[[str], None],
                 on_state: Callable[[bool, str | None], None], writes: WriteCount, *,
                 connect_timeout: float = 5.0, retry: float = 1.0) -> None:
        self._conninfo = conninfo(url)
        self._writes = writes
        self.synced = -1
        self._syncs = 0
        #: time.monotonic() of the last round trip that worked: a listener stuck on a dead
        #: connection stops looking alive (see :attr:`alive`)
        self.heard = 0.0
        self._on_change = on_change
        self._on_state = on_state
        self._connect_timeout = connect_timeout
        self._retry = retry
        self._stop = threading.Event()
        # socket objects, not raw descriptors: once closed, a late commit's wake-up fails on
        # the object instead of writing to whatever file reuses the number
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._thread = threading.Thread(target=self._run, name="jitprov-auth-listener",
                                        daemon=True)

    def start(self) -> None:
        self._writes.watch(self._wake)
        self._thread.start()

    def _wake(self) -> None:
        """Wake the thread's wait (a commit of this process, or stopping). A full buffer is
        already a wake-up; a closed pair (stopped) needs none."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _woken(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except OSError:
            pass

    def _receive(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Handle the notifications the socket has brought: libpq's own calls, no generator
        (one per notification of every commit of every node: the listener's hot path). Read
        again after any: over TLS the rest may wait in libpq's buffer, not in the socket."""
        pgconn = conn.pgconn
        received = True
        while received:
            received = False
            pgconn.consume_input()
            while (notify := pgconn.notifies()) is not None:
                received = True
                self._handle(notify.extra.decode())

    def _set_aside(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Handle the notifications psycopg kept aside while a statement of this thread ran
        (an echo, a heartbeat)."""
        for notify in conn.notifies(timeout=0):
            self._handle(notify.payload)

    @property
    def alive(self) -> bool:
        """Whether the thread went round its loop lately (a round trip to the database at
        least every :data:`HEARTBEAT` seconds); a read stuck on a silent peer is not."""
        return time.monotonic() - self.heard < 3 * HEARTBEAT

    def _handle(self, payload: str) -> None:
        if not payload.startswith(SYNC):  # (any node's echo)
            self._on_change(payload)

    def _sync(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Send an echo and handle every notification up to it."""
        self._syncs += 1
        echo = f"{SYNC}{os.getpid()}:{id(self)}:{self._syncs}"
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, echo))
        deadline = time.monotonic() + SYNC_TIMEOUT
        echoed = False
        while not echoed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the database did not echo a notification")
            # never leave the generator mid-batch: the rest of a batch would be lost
            for notify in conn.notifies(timeout=remaining, stop_after=1):
                if notify.payload == echo:
                    echoed = True
                else:
                    self._handle(notify.payload)

    def stop(self) -> None:
        self._stop.set()
        self._writes.unwatch(self._wake)
        self._wake()
        conn = self._conn
        if conn is not None and \
                conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
            try:  # a statement in flight (an echo, a heartbeat): cut it short
                conn.cancel_safe()
            except Exception:  # noqa: S110 - stopping: the thread exits either way
                pass
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True,
                                     connect_timeout=max(1, int(self._connect_timeout)),
                                     application_name="jitprov-auth-listener",
                                     # a peer gone silent (a failover, a cut link) is noticed
                                     # in seconds, not at the kernel's TCP timeout
                                     keepalives=1, keepalives_idle=5, keepalives_interval=2,
                                     keepalives_count=3, tcp_user_timeout=10_000) as conn:
                    self._conn = conn
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._set_aside(conn)
                    self.synced = self._writes.value  # the cache starts empty
                    self.heard = checked = time.monotonic()
                    echoed = 0.0
                    self._on_state(True, None)
                    listening, woken = conn.fileno(), self._wake_r.fileno()
                    # poll, not select: a busy worker's descriptors pass 1024
                    alone, both = select.poll(), select.poll()
                    alone.register(listening, select.POLLIN)
                    both.register(listening, select.POLLIN)
                    both.register(woken, select.POLLIN)
                    while not self._stop.is_set():
                        if self._writes.value != self.synced and \
                                time.monotonic() - echoed >= SYNC_EVERY:
                            writes = self._writes.value
                            self._sync(conn)
                            self.synced, echoed = writes, time.monotonic()
                            self._set_aside(conn)
                        if time.monotonic() - checked > HEARTBEAT:
                            conn.execute("SELECT 1")  # a dead peer shows here, not in a wait
                            checked = time.monotonic()
                            self._set_aside(conn)
                        now = self.heard = time.monotonic()
                        # sleep until a notification, the heartbeat, or a commit of this
                        # process (one waiting for SYNC_EVERY: until then)
                        if self._writes.value != self.synced:
                            watched, wait = alone, max(0.0, SYNC_EVERY - (now - echoed))
                        else:
                            watched, wait = both, max(0.0, HEARTBEAT - (now - checked))
                        ready = {fd for fd, _ in watched.poll(math.ceil(wait * 1000))}
                        if woken in ready:
                            self._woken()
                        if listening in ready:  # (also an error or hang-up: it raises there)
                            self._receive(conn)
            except Exception as exc:
                self._on_state(False, type(exc).__name__)
                self._stop.wait(self._retry)
            finally:
                self._conn = None
        self._on_state(False, None)
