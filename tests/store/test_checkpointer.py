"""SQLite's write-ahead log is copied back by a thread of the process (``Checkpointer``), never
by a commit: again a moment later when a reader held part of it back, and by a new thread when
the last one failed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from jitprov.core.audit import AuditEvent
from jitprov.store.database import Checkpointer, Database
from jitprov.store.records import TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _commit(db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("test.event", "test", {}), clock())
        uow.commit()


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Checkpointer, "EVERY", 1)
    monkeypatch.setattr(Checkpointer, "IDLE", 0.05)


def test_no_commit_copies_the_log_back_the_thread_does(
        db: Database, clock: Clock, tenant: TenantRecord, quick: None) -> None:
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
    assert db.checkpointer is not None
    before = db.checkpointer.done
    _commit(db, clock, tenant)
    assert _until(lambda: db.checkpointer is not None and db.checkpointer.done > before)


def test_a_log_a_reader_held_back_is_copied_once_it_lets_go_without_another_commit(
        db: Database, clock: Clock, tenant: TenantRecord, quick: None) -> None:
    assert db.checkpointer is not None
    path = sa.make_url(db.url).database or ""
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM audit_event").fetchall()  # pins this snapshot
    _commit(db, clock, tenant)
    tries = db.checkpointer.done
    assert _until(lambda: db.checkpointer is not None and db.checkpointer.done > tries)
    reader.execute("COMMIT")
    reader.close()
    tries = db.checkpointer.done
    # no commit from here on: the thread tries again by itself until the log is all copied,
    # then stops trying
    assert _until(lambda: db.checkpointer is not None and db.checkpointer.done > tries)
    time.sleep(0.2)
    settled = db.checkpointer.done
    time.sleep(0.3)
    assert db.checkpointer.done == settled


def test_a_checkpoint_thread_that_failed_is_started_again_by_the_next_commit(
        db: Database, clock: Clock, tenant: TenantRecord, quick: None,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert db.checkpointer is not None
    real = Checkpointer._checkpoint
    failures = [RuntimeError("disk on fire")]

    def failing_once(self: Checkpointer, conn: sqlite3.Connection) -> bool:
        if failures:
            raise failures.pop()
        return real(self, conn)

    monkeypatch.setattr(Checkpointer, "_checkpoint", failing_once)
    _commit(db, clock, tenant)
    assert _until(lambda: not failures)
    assert _until(lambda: "SQLite checkpoint thread failed" in caplog.text)
    done = db.checkpointer.done
    _commit(db, clock, tenant)
    assert _until(lambda: db.checkpointer is not None and db.checkpointer.done > done)
