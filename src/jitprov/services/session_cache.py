"""Signed-in sessions kept in memory, per process, so ``/auth/verify`` (every proxied request
of every app) and ``/me`` need no database read in steady state, and still refuse a revoked
session, a deactivated account or a changed role at once.

Correct first: the database itself says what changed (store/auth_changes.py).

- PostgreSQL: each commit that touched an account, its sessions, grants or identities (or a
  tenant or connection: everything) sends a notification; :class:`SessionCache` evicts that
  account's entries as it arrives (a few milliseconds after the commit, on every node). While
  the listening connection is down, or before it listens, nothing is served from memory. An
  entry filled by a read that began before an eviction is never stored (the read may have
  seen the old rows).
- SQLite (one host, possibly several processes and the CLI): the same triggers bump one
  counter row, and the whole cache is dropped when it moved. A request first asks SQLite's
  data version (``PRAGMA data_version`` on a connection of its own: shared memory, no table
  read, no wait), which moves at any commit of any other connection or process: unmoved
  since the counter was last read, the entries are current and the request reads nothing;
  moved, it reads the counter row instead of the session, the account and its grants.

Not cached: device sessions (their idle lock is a clock, each request may write) and offline
sessions (their IdP's health decides). An entry lives at most :data:`ENTRY_TTL`, and never
past its session's expiry; time-bound grants are filtered at each request, as before.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from jitprov.services import logs
from jitprov.store.auth_changes import EVERY_ACCOUNT, ChangeListener, DataVersion
from jitprov.store.database import Database
from jitprov.store.records import AccountView

log = logs.get_logger("jitprov.session_cache")

#: the longest an entry is served without a database read (defence in depth: every change
#: is notified, this bounds the cost of one that somehow was not)
ENTRY_TTL = 60.0
#: entries kept at most per process (a few KB each: profile, groups, grants); past it the
#: oldest go first
MAX_ENTRIES = 20_000
#: evictions remembered to judge a fill that raced with them (more: the fill is not kept)
EVICTIONS_KEPT = 256


@dataclass(frozen=True, slots=True)
class Entry:
    account_id: str
    view: AccountView
    connection: str | None
    subject: str | None
    method: str | None
    expires_at: datetime  # the session's
    filled: float  # time.monotonic()


class SessionCache:
    """Entries by session id (the SHA-256 of the cookie). Thread-safe: requests read it from
    worker threads, the listener evicts from its own."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.shared = db.dialect == "postgresql"  # notified; SQLite: the counter row
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._by_account: dict[str, set[str]] = {}
        self._epoch = 0  # bumped at every eviction
        #: the recent evictions, (epoch, account id or None for all): a fill from before one
        #: that concerns its account (or everyone) is not stored
        self._evictions: deque[tuple[int, str | None]] = deque(maxlen=EVICTIONS_KEPT)
        self._version: int | None = None  # SQLite: the counter the entries are good for
        #: SQLite: the data version seen before a snapshot that showed ``_version``: while
        #: SQLite's data version stays this, nothing was committed since
        self._confirmed: tuple[int, int] | None = None
        self._data_version = None if self.shared else DataVersion(db.engine)
        self._listening = False
        self._listener: ChangeListener | None = None
        self._started = False
        self._down_logged = False

    # -- PostgreSQL: the listener ----------------------------------------------------------

    def start(self) -> None:
        """Start listening (PostgreSQL, once; later calls do nothing). Through a transaction
        pooler a ``LISTEN`` cannot hold: the cache stays off and says so once."""
        if self._started or not self.shared:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        try:  # a first connection decides the pooler question (JITPROV_DB_TRANSACTION_POOLING=auto)
            with self._db.engine.connect():
                pass
        except Exception:  # the database is down: ask again at the next request
            with self._lock:
                self._started = False
            return
        if self._db.pooling.on:
            log.info("session_cache_off", reason="the database is reached through a "
                     "transaction pooler, which cannot keep a LISTEN: sessions are read from "
                     "the database at each request")
            return
        self._listener = ChangeListener(self._db.url, self._changed, self._state,
                                        self._db.writes)
        self._listener.start()

    def stop(self) -> None:
        """Stop listening (the app's shutdown); a later request starts again."""
        if self._data_version is not None:
            self._data_version.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        with self._lock:
            self._started = False

    def _state(self, listening: bool, error: str | None) -> None:
        with self._lock:
            self._entries.clear()
            self._by_account.clear()
            self._evicted(None)
            if not listening:
                self._listening = False
        if listening and self._down_logged:
            self._down_logged = False
            log.info("session_cache_on", reason="the database's change notifications are "
                     "received again")
        elif error is not None and not self._down_logged:
            self._down_logged = True
            log.warning("session_cache_off", reason="the database's change notifications "
                        "are not received: sessions are read from the database until they "
                        "are", error=error)
        if listening:  # (said first: once it serves, the line is in the log)
            with self._lock:
                self._listening = True

    def _changed(self, account_id: str) -> None:
        if account_id == EVERY_ACCOUNT:
            self.clear()
        else:
            self.evict_account(account_id)

    @property
    def serving(self) -> bool:
        """PostgreSQL: whether entries may be served: the listener listens, and has handled
        the notifications of every write this process committed (else the request reads
        the database, as without a cache)."""
        listener = self._listener
        return self._listening and listener is not None and listener.alive and \
            listener.synced == self._db.writes.value

    # -- entries ---------------------------------------------------------------------------

    def epoch(self) -> int:
        return self._epoch

    # -- SQLite: the counter and the data version -----------------------------------------

    def observe(self) -> tuple[int, int] | None:
        """SQLite: the database's data version now, observed before a request's snapshot
        (None on PostgreSQL, or when SQLite cannot say)."""
        return self._data_version.read() if self._data_version is not None else None

    def unchanged(self, seen: tuple[int, int] | None) -> bool:
        """SQLite: whether ``seen`` (:meth:`observe`) is the data version :meth:`confirm`
        recorded: nothing was committed since the counter was read, the entries may be
        served with no read at all."""
        return seen is not None and seen == self._confirmed

    def caught_up(self, seen: tuple[int, int] | None) -> bool:
        """SQLite: after a commit (``seen``, :meth:`observe`, moved), the counter read again
        without a unit of work (:meth:`DataVersion.counter`, no wait): True when what the
        cache holds is current as of that read (the counter unmoved: ``seen`` confirmed;
        moved: every entry dropped first). False whenever it cannot say: the caller reads
        the database."""
        if seen is None or self._data_version is None:
            return False
        version = self._data_version.counter(seen)
        if version is None or self.sync_version(version) is None:
            return False
        self.confirm(seen, version)
        return self._version == version

    def confirm(self, seen: tuple[int, int] | None, version: int) -> None:
        """SQLite: a snapshot begun after the data version ``seen`` was observed showed the
        counter ``version``. A commit after the observation moves the data version, so while
        it stays ``seen`` the counter is still ``version``."""
        if seen is None:
            return
        with self._lock:
            if self._version == version:
                self._confirmed = seen

    def sync_version(self, version: int) -> int | None:
        """SQLite: the counter read with this request; a newer one drops every entry. Returns
        the epoch a fill of this request passes to :meth:`put`, taken with the comparison (a
        change synced by another request right after it must refuse this request's fill);
        None when the request's snapshot is older than one already seen (a read that started
        before a change another request has seen): it must neither use nor fill the cache.

        Without the lock when the counter is the cache's: the epoch is read first, and a
        newer counter is stored after the entries are dropped and before the epoch moves, so
        a request that still saw the old counter holds an epoch from before the change, and
        one that sees the newer counter finds none of the older entries."""
        epoch = self._epoch
        if version == self._version:
            return epoch
        with self._lock:
            if self._version is not None and version < self._version:
                return None
            if version != self._version:
                self._confirmed = None
                self._entries.clear()
                self._by_account.clear()
                self._version = version
                self._evicted(None)
            return self._epoch

    def get(self, session_id: str, now: datetime) -> Entry | None:
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        if entry.expires_at <= now or time.monotonic() - entry.filled > ENTRY_TTL:
            self._evict(session_id)
            return None
        return entry

    def put(self, session_id: str, entry: Entry, epoch: int) -> None:
        """Keep ``entry`` unless its account (or everything) was evicted since ``epoch``,
        read before the database read that produced it: that read may have seen the rows
        from before the change."""
        with self._lock:
            if epoch != self._epoch and not self._untouched_since(epoch, entry.account_id):
                return
            if len(self._entries) >= MAX_ENTRIES:
                oldest = next(iter(self._entries))
                self._drop(oldest)
            self._entries[session_id] = entry
            self._by_account.setdefault(entry.account_id, set()).add(session_id)

    def _untouched_since(self, epoch: int, account_id: str) -> bool:  # under the lock
        """Whether every eviction after ``epoch`` concerned other accounts (and the log
        still reaches back that far)."""
        if not self._evictions or self._evictions[0][0] > epoch + 1:
            return False
        return all(target is not None and target != account_id
                   for at, target in self._evictions if at > epoch)

    def _evicted(self, account_id: str | None) -> None:  # under the lock
        self._epoch += 1
        self._evictions.append((self._epoch, account_id))

    def evict_account(self, account_id: str) -> None:
        with self._lock:
            self._evicted(account_id)
            for session_id in self._by_account.pop(account_id, ()):
                self._entries.pop(session_id, None)

    def evict_session(self, session_id: str) -> None:
        with self._lock:
            entry = self._entries.get(session_id)
            self._evicted(entry.account_id if entry is not None else None)
            self._drop(session_id)

    def clear(self) -> None:
        with self._lock:
            self._evicted(None)
            self._entries.clear()
            self._by_account.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self, session_id: str) -> None:
        with self._lock:
            self._drop(session_id)

    def _drop(self, session_id: str) -> None:  # under the lock
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            sessions = self._by_account.get(entry.account_id)
            if sessions is not None:
                sessions.discard(session_id)
                if not sessions:
                    del self._by_account[entry.account_id]
