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
