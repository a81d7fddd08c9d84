"""The login's hot statements (``store/fast.py``, run on the DBAPI cursor) are seen by the
engine's cursor listeners like SQLAlchemy's own, and read-only units stay read-only."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from jitprov.core.audit import AuditEvent
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import ISSUER, Clock, first_login_changes


def new_account(uow: UnitOfWork, tenant: TenantRecord, connection: ConnectionRecord,
                clock: Clock) -> str:
    """A first login's account with its identity (subject ``s-1``), in ``uow``."""
    account_id = uow.accounts.create(tenant_id=tenant.id, changes=first_login_changes(clock),
                                     provisioned_by="jit", now=clock())
    uow.identities.add_identity(account_id=account_id, connection_id=connection.id,
                                subject="s-1", issuer=ISSUER, now=clock())
    return account_id


def first_login(db: Database, tenant: TenantRecord, connection: ConnectionRecord,
                clock: Clock, *, events: int = 0) -> None:
    """One unit as a first login writes it: the account, its identity, the login's touch, and
    ``events`` audit events."""
    with UnitOfWork(db) as uow:
        account_id = new_account(uow, tenant, connection, clock)
        uow.identities.record_login(account_id=account_id, connection_id=connection.id,
                                    subject="s-1", now=clock())
        for _ in range(events):
            uow.audit.append(tenant.id, tenant.slug, AuditEvent("login.succeeded", "test", {}),
                             clock())
        uow.commit()


def test_hot_statements_reach_the_cursor_listeners_in_order(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    seen: list[tuple[str, str]] = []

    def before(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any,
               _many: bool) -> None:
        context.marked = statement  # a tracer keeps its span on the context
        seen.append(("before", statement.split()[0]))

    def after(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any,
              _many: bool) -> None:
        assert context.marked == statement
        seen.append(("after", statement.split()[0]))

    sa.event.listen(db.engine, "before_cursor_execute", before)
    sa.event.listen(db.engine, "after_cursor_execute", after)
    try:
        first_login(db, tenant, connection, clock, events=2)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)
        sa.event.remove(db.engine, "after_cursor_execute", after)
    verbs = [verb for when, verb in seen if when == "before"]
    assert verbs[0] in ("INSERT", "WITH")  # the account (with its grants on PostgreSQL)
    assert "UPDATE" in verbs or "WITH" in verbs  # the touch of the login
    assert len([w for w, _ in seen if w == "before"]) == len([w for w, _ in seen
                                                             if w == "after"])
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.audit.head(tenant.id) is not None
        assert [e.seq for e in uow.audit.events(tenant.id)] == [1, 2]


def test_a_listener_after_the_statements_alone_sees_them(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    """A listener on ``after_cursor_execute`` only (a statement timer) still gets each hot
    statement, though the engine's own listeners are on other events."""
    seen: list[str] = []

    def after(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement.split()[0])

    sa.event.listen(db.engine, "after_cursor_execute", after)
    try:
        first_login(db, tenant, connection, clock)
    finally:
        sa.event.remove(db.engine, "after_cursor_execute", after)
    assert seen[0] in ("INSERT", "WITH")
    assert "UPDATE" in seen or seen.count("WITH") > 1


def test_a_failing_hot_statement_still_closes_what_its_listener_opened(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    opened: list[str] = []

    def before(*args: Any) -> None:
        opened.append("open")

    def after(*args: Any) -> None:
        opened.append("closed")

    with UnitOfWork(db) as uow:
        account_id = new_account(uow, tenant, connection, clock)
        uow.commit()
    sa.event.listen(db.engine, "before_cursor_execute", before)
    sa.event.listen(db.engine, "after_cursor_execute", after)
    try:
        with pytest.raises(Exception, match="already bound"), UnitOfWork(db) as uow:
            uow.identities.add_identity(account_id=account_id, connection_id=connection.id,
                                        subject="s-1", issuer=ISSUER, now=clock())
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)
        sa.event.remove(db.engine, "after_cursor_execute", after)
    assert opened.count("open") == opened.count("closed") >= 1


@pytest.mark.postgres
def test_a_read_only_unit_cannot_write_on_postgresql(db: Database, clock: Clock) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite runs read-only units as deferred transactions")
    with pytest.raises(sa.exc.InternalError, match="read-only transaction"), \
            UnitOfWork(db, readonly=True) as uow:
        uow.config.tenants.create("initech", "Initech", clock())
    with UnitOfWork(db) as uow:  # the next unit on that connection writes again
        uow.config.tenants.create("initech", "Initech", clock())
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        assert "initech" in [t.slug for t in uow.config.tenants.list()]


@pytest.mark.postgres
def test_a_write_sent_with_the_commit_that_fails_is_named_in_the_error(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    """Of the writes sent with the commit, the one that broke a key is the statement of the
    error (not the last of the pipeline), the unit is a lost race, and nothing of it stays."""
    from jitprov.core.errors import RaceLost

    if db.dialect != "postgresql":
        pytest.skip("SQLite runs each write at once")
    with UnitOfWork(db) as uow:
        new_account(uow, tenant, connection, clock)
        uow.commit()
    with pytest.raises(RaceLost) as lost, UnitOfWork(db) as uow:
        account_id = uow.accounts.create(tenant_id=tenant.id, changes=first_login_changes(clock),
                                         provisioned_by="jit", now=clock(), with_commit=True)
        uow.identities.add_identity(account_id=account_id, connection_id=connection.id,
                                    subject="s-1", issuer=ISSUER, now=clock(),
                                    with_commit=True)  # bound already: the identity's key
        uow.sessions.create(session_id="s" * 64, account_id=account_id,
                            connection_id=connection.id, subject="s-1", now=clock(),
                            expires_at=clock(), user_agent=None, with_commit=True)
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("account.created", "test"), clock())
        uow.commit()
    failed = lost.value.__cause__
    assert isinstance(failed, sa.exc.IntegrityError)
    assert str(failed.statement).startswith("INSERT INTO identity"), failed.statement
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.sessions.get_active("s" * 64, clock()) is None
        assert [e.seq for e in uow.audit.events(tenant.id)] == []
        assert uow.accounts.find_by_identity(connection.id, "s-1") is not None
