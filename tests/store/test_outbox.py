"""Outbox: events written with the change they announce, handed out oldest first."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from jitprov.store.database import Database
from jitprov.store.records import TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock

EVENTS = [
    ("account.created", {"id": "a-1", "roles": ["editor"], "verified": True}),
    ("account.updated", {"id": "a-1", "changes": {"profile": {"name": "Zoë"}}}),
    ("account.deactivated", {"id": "a-2", "reason": None}),
]


def test_pending_returns_added_events_oldest_first(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord) -> None:
    for (type_, payload), owner in zip(EVENTS, (tenant, other_tenant, tenant), strict=True):
        with UnitOfWork(db) as uow:
            uow.outbox.add(owner.id, type_, payload, clock())
            uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        pending = uow.outbox.pending()

    assert EVENTS == [(type_, payload) for _, type_, payload in pending]
    ids = [event_id for event_id, _, _ in pending]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_pending_honours_the_limit(db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        for type_, payload in EVENTS:
            uow.outbox.add(tenant.id, type_, payload, clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert [t for t, _ in EVENTS[:2]] == [t for _, t, _ in uow.outbox.pending(limit=2)]


def test_an_event_added_in_a_rolled_back_unit_is_not_pending(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        uow.outbox.add(tenant.id, "account.created", {"id": "a-1"}, clock())
        # leave without commit

    with UnitOfWork(db, readonly=True) as uow:
        assert [] == list(uow.outbox.pending())


def test_add_many_keeps_the_order_given_in_one_statement(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    # webhooks are delivered in outbox id order: the ids must follow the announcements
    events = [("account.created" if n % 7 == 0 else "role.granted",
               {"n": n, "role": f"r{49 - n}", "note": "Zoë \\ \"q\" ☃", "in": {"a": [n]}})
              for n in range(50)]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        with UnitOfWork(db) as uow:
            uow.outbox.add_many(tenant.id, events, clock())
            uow.commit()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)

    with UnitOfWork(db, readonly=True) as uow:
        pending = uow.outbox.pending(limit=100)
    assert events == [(type_, payload) for _, type_, payload in pending]
    ids = [event_id for event_id, _, _ in pending]
    assert sorted(ids) == ids
    inserts = [s for s in statements if "outbox_event" in s]
    assert len(inserts) == 1


def test_add_many_of_no_events_writes_nothing(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        uow.outbox.add_many(tenant.id, [], clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert [] == list(uow.outbox.pending())
