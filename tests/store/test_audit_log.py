"""AuditLog: one hash chain per tenant, numbered 1..n without gaps, that survives the database
round trip (JSON columns included) and that ``verify_chain`` (``jitprov audit verify``) finds
broken when the stored rows are edited, deleted or reordered."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from jitprov.core.audit import GENESIS_HASH, AuditEvent, ChainedEvent, chain, verify_chain
from jitprov.core.errors import InvalidInput
from jitprov.store.database import Database
from jitprov.store.records import TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock, execute_raw

#: Data that exercises the JSON round trip: nesting, unicode, numbers, booleans, null.
DATA = {"roles": ["editor", "viewer"], "profile": {"name": "Zoë Ōtsuka", "email": None},
        "attempt": 3, "ratio": 0.125, "verified": True, "trace": [{"rule": "r1", "ok": False}]}
WRITERS = 8


def append(db: Database, clock: Clock, tenant: TenantRecord, n: int) -> list[ChainedEvent]:
    """``n`` events, each in its own committed unit of work, 1.000001 s apart; returns them as
    :func:`chain` places them after the stored head (the reference the stored rows, numbered
    and hashed by the database on PostgreSQL, must equal)."""
    seq, prev = stored(db, tenant)[1] or (0, GENESIS_HASH)
    expected = []
    for i in range(n):
        clock.advance(seconds=1, microseconds=1)
        event = AuditEvent("account.updated", "login:okta", {**DATA, "i": i},
                           account_id="7d3c1f9e-0000-4000-8000-000000000001",
                           request_id=f"req-{i}")
        with UnitOfWork(db) as uow:
            uow.audit.append(tenant.id, tenant.slug, event, clock())
            uow.commit()
        seq += 1
        expected.append(chain(event, tenant=tenant.slug, seq=seq, prev_hash=prev,
                              occurred_at=clock()))
        prev = expected[-1].hash
    return expected


def stored(db: Database, tenant: TenantRecord) -> tuple[list[ChainedEvent],
                                                        tuple[int, str] | None]:
    with UnitOfWork(db, readonly=True) as uow:
        return list(uow.audit.events(tenant.id)), uow.audit.head(tenant.id)


def problems(db: Database, tenant: TenantRecord) -> list[tuple[int, str]]:
    events, head = stored(db, tenant)
    return [(p.seq, p.problem) for p in verify_chain(tenant.slug, events, head)]


def set_data(db: Database, tenant: TenantRecord, seq: int, raw_json: str) -> None:
    cast = "CAST(:data AS JSON)" if db.dialect == "postgresql" else ":data"
    execute_raw(db, f"UPDATE audit_event SET data = {cast} "
                "WHERE tenant_id = :tenant_id AND seq = :seq",
                data=raw_json, tenant_id=tenant.id, seq=seq)


def test_append_numbers_events_from_one_and_links_each_to_the_previous_hash(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    appended = append(db, clock, tenant, 4)

    assert [1, 2, 3, 4] == [e.seq for e in appended]
    assert [GENESIS_HASH] + [e.hash for e in appended[:-1]] == [e.prev_hash for e in appended]
    with UnitOfWork(db, readonly=True) as uow:
        assert (4, appended[-1].hash) == uow.audit.head(tenant.id)


def test_events_read_back_equal_to_the_chain_computed_here_and_verify_intact(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    appended = append(db, clock, tenant, 5)

    events, head = stored(db, tenant)

    assert appended == events
    assert [] == verify_chain(tenant.slug, events, head)


def test_events_pages_in_batches_and_resumes_after_a_sequence_number(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    appended = append(db, clock, tenant, 5)

    with UnitOfWork(db, readonly=True) as uow:
        in_pairs = list(uow.audit.events(tenant.id, batch=2))
        after_three = list(uow.audit.events(tenant.id, after_seq=3, batch=1))
    assert (appended, appended[3:]) == (in_pairs, after_three)


def test_two_tenants_have_independent_chains(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord) -> None:
    acme_1 = append(db, clock, tenant, 1)
    globex = append(db, clock, other_tenant, 2)
    acme_2 = append(db, clock, tenant, 1)

    assert [(1, GENESIS_HASH), (2, acme_1[0].hash)] == [
        (e.seq, e.prev_hash) for e in acme_1 + acme_2]
    assert [(1, GENESIS_HASH), (2, globex[0].hash)] == [(e.seq, e.prev_hash) for e in globex]
    assert ([], []) == (problems(db, tenant), problems(db, other_tenant))
    assert ["acme", "acme"] == [e.tenant for e in stored(db, tenant)[0]]


def test_a_tenant_without_events_has_no_head_and_an_empty_intact_chain(
        db: Database, tenant: TenantRecord) -> None:
    assert ([], None) == stored(db, tenant)
    assert [] == problems(db, tenant)


def test_concurrent_appends_are_numbered_without_gaps(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    append(db, clock, tenant, 1)  # the chain head exists: writers queue on it
    start = threading.Barrier(WRITERS)

    def writer(i: int) -> None:
        start.wait(timeout=30)
        with UnitOfWork(db) as uow:
            uow.audit.append(tenant.id, tenant.slug,
                             AuditEvent("session.created", f"writer-{i}"), clock())
            uow.commit()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(writer, range(WRITERS), timeout=60))

    events = stored(db, tenant)[0]
    assert list(range(1, WRITERS + 2)) == [e.seq for e in events]
    assert {f"writer-{i}" for i in range(WRITERS)} == {e.actor for e in events[1:]}
    assert [] == problems(db, tenant)


def test_concurrent_first_events_of_a_tenant_are_numbered_without_gaps(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    """No head yet: the writers race to create it. On PostgreSQL the head's upsert makes one
    create it and the others move it; SQLite takes writers one at a time."""
    start = threading.Barrier(WRITERS)

    def writer(i: int) -> None:
        start.wait(timeout=30)
        with UnitOfWork(db) as uow:
            uow.audit.append(tenant.id, tenant.slug, AuditEvent("tenant.created", f"w-{i}"),
                             clock())
            uow.commit()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(writer, range(WRITERS), timeout=60))

    events, head = stored(db, tenant)
    assert list(range(1, WRITERS + 1)) == [e.seq for e in events]
    assert (WRITERS, events[-1].hash) == head
    assert [] == problems(db, tenant)


def test_a_unit_takes_the_chain_head_at_its_commit_not_at_its_append(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    """A unit that queued an event and is still working does not hold the tenant's head:
    another unit appends and commits meanwhile, and the first one's event comes after."""
    if db.dialect == "sqlite":
        pytest.skip("SQLite runs write transactions one at a time (the write lock)")
    append(db, clock, tenant, 1)
    with UnitOfWork(db) as slow:
        slow.audit.append(tenant.id, tenant.slug, AuditEvent("account.updated", "slow"),
                          clock())
        with ThreadPoolExecutor(max_workers=1) as pool:  # would wait for a held head
            pool.submit(append, db, clock, tenant, 1).result(timeout=30)
        slow.commit()

    events, _ = stored(db, tenant)
    assert [(1, "login:okta"), (2, "login:okta"), (3, "slow")] == [
        (e.seq, e.actor) for e in events]
    assert [] == problems(db, tenant)


def test_an_event_the_database_refuses_leaves_nothing_of_its_unit(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    """The events go last, with the COMMIT: when the database refuses one (here a type longer
    than its column), the unit's other writes are not committed either, and the connection
    serves the next unit."""
    if db.dialect == "sqlite":
        pytest.skip("SQLite does not enforce a column's length")
    append(db, clock, tenant, 1)
    with pytest.raises(InvalidInput), UnitOfWork(db) as uow:
        uow.config.admin_tokens.create("ci", "h" * 64, clock(), None)
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("x" * 65, "test"), clock())
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("account.updated", "test"),
                         clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert [] == uow.config.admin_tokens.list()
    assert [1] == [e.seq for e in stored(db, tenant)[0]]
    assert [2] == [e.seq for e in append(db, clock, tenant, 1)]
    assert [] == problems(db, tenant)


def test_an_event_is_audited_as_it_was_when_appended(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    """The event is written at the commit, its data as it was at the append: a caller that
    changes the dict in between does not change what is audited."""
    data: dict[str, object] = {"roles": ["nurse"]}
    with UnitOfWork(db) as uow:
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("role.granted", "test", data),
                         clock())
        data["roles"] = ["admin"]
        uow.commit()

    assert [{"roles": ["nurse"]}] == [e.data for e in stored(db, tenant)[0]]
    assert [] == problems(db, tenant)


def test_an_event_that_would_never_be_written_is_refused_at_the_append(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    event = AuditEvent("account.updated", "test")
    with UnitOfWork(db, readonly=True) as uow, pytest.raises(RuntimeError):
        uow.audit.append(tenant.id, tenant.slug, event, clock())
    with UnitOfWork(db) as uow:
        uow.audit.append(tenant.id, tenant.slug, event, clock())
        uow.commit()
        with pytest.raises(RuntimeError):
            uow.audit.append(tenant.id, tenant.slug, event, clock())

    assert [1] == [e.seq for e in stored(db, tenant)[0]]


def test_reformatted_json_in_a_stored_event_keeps_the_chain_intact(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    appended = append(db, clock, tenant, 3)
    same_value = dict(reversed(list(appended[1].data.items())))

    set_data(db, tenant, 2, json.dumps(same_value, indent=2, ensure_ascii=True))

    assert [] == problems(db, tenant)


def test_verify_finds_an_edited_event_data(db: Database, clock: Clock,
                                           tenant: TenantRecord) -> None:
    appended = append(db, clock, tenant, 5)
    escalated = {**appended[2].data, "roles": ["editor", "viewer", "admin"]}

    set_data(db, tenant, 3, json.dumps(escalated))

    found = problems(db, tenant)
    assert [3] == [seq for seq, _ in found]
    assert "edited" in found[0][1]


def test_verify_finds_an_edited_actor(db: Database, clock: Clock,
                                      tenant: TenantRecord) -> None:
    append(db, clock, tenant, 3)

    execute_raw(db, "UPDATE audit_event SET actor = 'someone-else' "
                "WHERE tenant_id = :t AND seq = 2", t=tenant.id)

    assert [2] == [seq for seq, _ in problems(db, tenant)]


def test_verify_finds_a_deleted_event(db: Database, clock: Clock,
                                      tenant: TenantRecord) -> None:
    append(db, clock, tenant, 5)

    execute_raw(db, "DELETE FROM audit_event WHERE tenant_id = :t AND seq = 2", t=tenant.id)

    found = problems(db, tenant)
    assert 3 == found[0][0]
    assert "deleted or reordered" in found[0][1]


def test_verify_finds_a_deleted_tail_through_the_head(db: Database, clock: Clock,
                                                      tenant: TenantRecord) -> None:
    append(db, clock, tenant, 5)

    execute_raw(db, "DELETE FROM audit_event WHERE tenant_id = :t AND seq >= 4", t=tenant.id)

    found = problems(db, tenant)
    assert [5] == [seq for seq, _ in found]
    assert "ends at 3" in found[0][1]


def test_verify_finds_two_events_with_swapped_sequence_numbers(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    append(db, clock, tenant, 5)

    with db.engine.begin() as conn:  # via a free number: (tenant_id, seq) is unique
        for old, new in ((2, -1), (3, 2), (-1, 3)):
            conn.execute(sa.text("UPDATE audit_event SET seq = :new "
                                 "WHERE tenant_id = :t AND seq = :old"),
                         {"new": new, "t": tenant.id, "old": old})

    found = problems(db, tenant)
    assert 2 == found[0][0]
    assert "does not follow the previous event" in found[0][1]


@pytest.mark.parametrize("column", ["prev_hash", "hash"])
def test_verify_finds_a_rewritten_hash(db: Database, clock: Clock, tenant: TenantRecord,
                                       column: str) -> None:
    append(db, clock, tenant, 3)

    execute_raw(db, f"UPDATE audit_event SET {column} = :h WHERE tenant_id = :t AND seq = 2",
                h="f" * 64, t=tenant.id)

    assert [2] == [seq for seq, _ in problems(db, tenant)][:1]
