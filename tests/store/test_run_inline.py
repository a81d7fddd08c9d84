"""``Database.run_inline``: on SQLite a call runs in the calling thread when the write turn is
free, is declined before it runs while another process writes, gives up (to be run again
later) only while none of its write units has committed, and is declined when it could wait
for a lock or a connection; PostgreSQL always declines. The web tests
(tests/web/test_inline_writes.py) drive it through the routes."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlalchemy as sa

from jitprov.core.audit import AuditEvent
from jitprov.store.database import Database, Declined, Ran
from jitprov.store.records import TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _audit(db: Database, clock: Clock, tenant: TenantRecord, n: int) -> None:
    with UnitOfWork(db) as uow:
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("test.event", "test", {"n": n}),
                         clock())
        uow.commit()


def _events(db: Database, tenant: TenantRecord) -> list[object]:
    with UnitOfWork(db, readonly=True) as uow:
        return [e.data["n"] for e in uow.audit.events(tenant.id) if e.type == "test.event"]


def _hold_write_turn(db: Database) -> sqlite3.Connection:
    """Another process's writer: a write transaction of its own connection to the file."""
    conn = sqlite3.connect(sa.make_url(db.url).database or "", isolation_level=None,
                           check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_postgresql_declines_and_sqlite_runs_the_call_here(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    ran_in: list[threading.Thread] = []

    def call() -> str:
        ran_in.append(threading.current_thread())
        _audit(db, clock, tenant, 1)
        return "done"

    outcome = db.run_inline(call)
    if db.dialect == "postgresql":
        assert (outcome, ran_in) == (Declined.NEVER, [])
        assert _events(db, tenant) == []
    else:
        assert (outcome, ran_in) == (Ran("done"), [threading.current_thread()])
        assert _events(db, tenant) == [1]


@SQLITE
def test_a_call_gives_up_before_its_first_commit_and_writes_nothing(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    other = _hold_write_turn(db)
    try:
        assert db.run_inline(_audit, db, clock, tenant, 1) is Declined.PROCESS
    finally:
        other.execute("COMMIT")
        other.close()
    assert _events(db, tenant) == []
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert db.run_inline(_audit, db, clock, tenant, 2) == Ran(None)  # and runs again
    assert _events(db, tenant) == [2]


@SQLITE
def test_a_call_is_declined_before_it_runs_while_another_process_writes(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    """The probe asks before the call does any work, and leaves no transaction of its own
    behind: the call runs once the other writer is done, and another can write after it."""
    ran: list[int] = []

    def call(n: int) -> None:
        ran.append(n)
        _audit(db, clock, tenant, n)

    other = _hold_write_turn(db)
    try:
        assert db.run_inline(call, 1) is Declined.PROCESS
        assert ran == []
    finally:
        other.execute("COMMIT")
        other.close()
    assert db.run_inline(call, 2) == Ran(None)
    assert ran == [2] and _events(db, tenant) == [2]
    again = _hold_write_turn(db)  # the probe's own connection holds nothing
    again.execute("ROLLBACK")
    again.close()


@SQLITE
def test_a_call_gives_up_when_another_process_writes_from_after_the_probe(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    """Another process takes the write turn between the probe and the call's first write
    unit: that unit raises WouldWait, the call gives up, nothing is written."""
    others: list[sqlite3.Connection] = []

    def call() -> None:
        others.append(_hold_write_turn(db))
        _audit(db, clock, tenant, 1)

    try:
        assert db.run_inline(call) is Declined.PROCESS
    finally:
        others[0].execute("COMMIT")
        others[0].close()
    assert _events(db, tenant) == []
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@SQLITE
def test_after_a_commit_a_later_unit_of_the_call_waits_for_its_turn(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    """Giving up then would run the first unit twice: the later unit waits instead."""
    released = threading.Event()

    def call() -> None:
        _audit(db, clock, tenant, 1)
        other = _hold_write_turn(db)

        def release() -> None:
            released.wait(0.2)
            other.execute("COMMIT")
            other.close()

        threading.Thread(target=release).start()
        _audit(db, clock, tenant, 2)

    assert db.run_inline(call) == Ran(None)
    assert _events(db, tenant) == [1, 2]


@SQLITE
def test_a_call_is_declined_while_a_thread_of_this_process_writes(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    assert db.write_lock is not None
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.write_lock:  # type: ignore[union-attr]
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        assert db.run_inline(_audit, db, clock, tenant, 1) is Declined.THREAD
    finally:
        release.set()
        thread.join()
    assert _events(db, tenant) == []


@SQLITE
def test_a_call_is_declined_when_no_kept_connection_is_idle(
        database_url: str, clock: Clock) -> None:
    db = Database.connect(database_url, pool_size=1)
    held = db.engine.connect()
    try:
        assert db.run_inline(lambda: "ran") is Declined.POOL
    finally:
        held.close()
    assert db.run_inline(lambda: "ran") == Ran("ran")
    db.dispose()
