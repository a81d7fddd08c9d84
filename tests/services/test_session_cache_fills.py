"""The session cache's one subtle rule, checked against a model: a fill read from the database
before an eviction of its account (or of everything) is never kept; one raced only by other
accounts' evictions is."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from jitprov.services.session_cache import EVICTIONS_KEPT, Entry, SessionCache
from jitprov.store.database import Database
from jitprov.store.records import AccountView

ACCOUNTS = ["a", "b", "c"]
NOW = datetime(2026, 12, 5, tzinfo=UTC)


def entry(account_id: str) -> Entry:
    return Entry(account_id, cast(AccountView, None), "idp", "sub", "sso",
                 NOW + timedelta(hours=1), time.monotonic())


def cache(tmp: Path) -> SessionCache:
    return SessionCache(Database.connect(f"sqlite:///{tmp}/c.db", pool_size=1))


evictions = st.lists(st.sampled_from([*ACCOUNTS, None, "session-of-a"]), max_size=8)


@given(before=evictions, during=evictions, account=st.sampled_from(ACCOUNTS))
def test_a_fill_is_kept_unless_its_account_was_evicted_while_it_read(
        before: list[str | None], during: list[str | None], account: str) -> None:
    c = cache(Path(tempfile.mkdtemp()))
    c.put("s-a", entry("a"), c.epoch())
    for target in before:
        _evict(c, target)
    epoch = c.epoch()  # the fill starts reading here
    for target in during:
        _evict(c, target)
    c.put("s-new", entry(account), epoch)
    raced = any(t is None or t == account or (t == "session-of-a" and account == "a")
                for t in during)
    assert (c.get("s-new", NOW) is not None) == (not raced)


def _evict(c: SessionCache, target: str | None) -> None:
    if target is None:
        c.clear()
    elif target == "session-of-a":
        c.put("s-a", entry("a"), c.epoch())
        c.evict_session("s-a")
    else:
        c.evict_account(target)


def test_a_fill_older_than_the_remembered_evictions_is_not_kept(tmp_path: Path) -> None:
    c = cache(tmp_path)
    epoch = c.epoch()
    for _ in range(EVICTIONS_KEPT + 1):
        c.evict_account("b")  # none of them concerns "a", but the log no longer reaches back
    c.put("s-new", entry("a"), epoch)
    assert c.get("s-new", NOW) is None


def test_on_sqlite_entries_are_served_unread_only_while_nothing_was_committed(
        tmp_path: Path) -> None:
    """SQLite's data version says whether anything was committed since the counter was read:
    a commit of another connection (another process: the CLI) moves it, a read does not; a
    counter read in an older snapshot than the one the entries are good for confirms
    nothing; a data version of a reopened connection never matches one of the last (each
    connection counts from the same start)."""
    import sqlite3

    c = cache(tmp_path)
    other = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    other.execute("CREATE TABLE t (x)")
    seen = c.observe()
    assert seen is not None and not c.unchanged(seen)  # nothing confirmed yet
    assert c.sync_version(7) is not None
    c.confirm(seen, 7)
    assert c.unchanged(c.observe())
    other.execute("SELECT count(*) FROM t").fetchall()
    assert c.unchanged(c.observe())  # a read moves nothing
    other.execute("INSERT INTO t VALUES (1)")
    moved = c.observe()
    assert not c.unchanged(moved)  # another connection committed: read the counter
    assert c.sync_version(8) is not None  # (that commit moved the counter: entries dropped)
    c.confirm(moved, 7)  # a request whose snapshot showed the older counter
    assert not c.unchanged(moved)
    assert c.sync_version(7) is None  # ...and it may neither use nor fill the cache
    c.confirm(moved, 8)
    assert c.unchanged(c.observe())
    c.stop()  # (a shutdown, or a failed read: the connection is opened again)
    other.execute("INSERT INTO t VALUES (2)")
    reopened = c.observe()  # a count restarted, which may equal the confirmed one...
    assert reopened is not None and reopened[0] != moved[0]
    assert not c.unchanged(reopened)  # ...but of another connection: read the counter
    assert not c.unchanged((moved[0] + 1, moved[1]))
    c.stop()
    other.close()


def test_on_sqlite_a_fill_synced_just_before_a_newer_counter_is_not_kept(
        tmp_path: Path) -> None:
    """The epoch a fill passes to ``put`` comes with its counter's comparison: a request that
    synced the old counter, then lost the race to one that synced a newer counter, reads
    rows the newer counter may have changed and keeps nothing."""
    c = cache(tmp_path)
    assert c.sync_version(7) is not None
    fill = c.sync_version(7)  # request A: its snapshot shows counter 7
    assert fill is not None
    assert c.sync_version(8) is not None  # request B: another process changed something
    c.put("s-a", entry("a"), fill)  # A's fill, read from its older snapshot
    assert c.get("s-a", NOW) is None
    fresh = c.sync_version(8)
    assert fresh is not None
    c.put("s-a", entry("a"), fresh)
    assert c.get("s-a", NOW) is not None
    c.stop()


def test_on_sqlite_a_newer_counter_is_seen_only_once_the_older_entries_are_gone(
        tmp_path: Path) -> None:
    """``sync_version`` compares without the lock when the counter is the cache's: while a
    newer counter is synced, the older entries are dropped before the counter is stored, and
    the epoch moves after it (a request seeing the old counter holds the older epoch)."""
    c = cache(tmp_path)
    before = c.sync_version(7)
    assert before is not None
    c.put("s-a", entry("a"), before)
    during: list[tuple[int | None, int]] = []

    class Entries(dict):  # type: ignore[type-arg]
        def clear(self) -> None:
            during.append((c._version, c.epoch()))  # what a lock-free reader sees meanwhile
            super().clear()

    c._entries = Entries(c._entries)
    after = c.sync_version(8)
    assert during == [(7, before)]  # old entries: the old counter, the old epoch
    assert after is not None and after > before and c._version == 8
    assert c.get("s-a", NOW) is None
    c.stop()
