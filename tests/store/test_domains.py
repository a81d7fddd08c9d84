"""DomainRepository (``uow.config.domains``): one tenant per domain, copies out, Conflict and
NotFound, and rows that go with their connection."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from jitprov.core.errors import Conflict, NotFound
from jitprov.store import tables as t
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, DomainRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock, seed_connection


def put(db: Database, clock: Clock, domain: str, tenant: TenantRecord,
        connection: ConnectionRecord, by: str = "cli") -> None:
    with UnitOfWork(db) as uow:
        uow.config.domains.put(domain, tenant_id=tenant.id, connection_id=connection.id,
                               verified_by=by, now=clock())
        uow.commit()


def test_put_then_find_and_list_return_copies(db: Database, clock: Clock,
                                              tenant: TenantRecord,
                                              connection: ConnectionRecord) -> None:
    with UnitOfWork(db, readonly=True) as uow:
        assert (uow.config.domains.any(), uow.config.domains.find("acme.example")) == (
            False, None)
    put(db, clock, "acme.example", tenant, connection, by="cli:ana")
    put(db, clock, "acme.test", tenant, connection)
    with UnitOfWork(db, readonly=True) as uow:
        found = uow.config.domains.find("acme.example")
        listed = uow.config.domains.list(tenant.id)
        assert uow.config.domains.any()
    assert found == DomainRecord(domain="acme.example", tenant_slug="acme",
                                 connection_slug="okta", connection_kind="oidc",
                                 connection_enabled=True, verified_by="cli:ana",
                                 verified_at=clock.now)
    assert [d.domain for d in listed] == ["acme.example", "acme.test"]


def test_a_domain_of_another_tenant_is_a_conflict_and_stays_put(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    put(db, clock, "acme.example", tenant, connection)
    theirs = seed_connection(db, clock, other_tenant, "globex-idp")
    with pytest.raises(Conflict), UnitOfWork(db) as uow:
        uow.config.domains.put("acme.example", tenant_id=other_tenant.id,
                               connection_id=theirs.id, verified_by="cli", now=clock())
    with pytest.raises(NotFound), UnitOfWork(db) as uow:
        uow.config.domains.remove("acme.example", other_tenant.id)
    with UnitOfWork(db, readonly=True) as uow:
        found = uow.config.domains.find("acme.example")
    assert found is not None and found.tenant_slug == "acme"


def test_the_tenant_moves_its_domain_to_another_connection(
        db: Database, clock: Clock, tenant: TenantRecord, connection: ConnectionRecord) -> None:
    put(db, clock, "acme.example", tenant, connection)
    second = seed_connection(db, clock, tenant, "entra")
    clock.advance(minutes=1)
    put(db, clock, "acme.example", tenant, second, by="cli:ben")
    with UnitOfWork(db, readonly=True) as uow:
        found = uow.config.domains.find("acme.example")
    assert found is not None
    assert (found.connection_slug, found.verified_by, found.verified_at) == (
        "entra", "cli:ben", clock.now)


def test_a_deleted_connection_takes_its_domains_along(
        db: Database, clock: Clock, tenant: TenantRecord, connection: ConnectionRecord) -> None:
    put(db, clock, "acme.example", tenant, connection)
    with db.engine.begin() as conn:
        conn.execute(sa.delete(t.connection).where(t.connection.c.id == connection.id))
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.config.domains.find("acme.example") is None
        assert not uow.config.domains.any()
