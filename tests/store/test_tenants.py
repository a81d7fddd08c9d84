"""TenantRepository: create, get, list; Conflict on a taken slug, NotFound on an unknown one."""

from __future__ import annotations

import pytest

from jitprov.core.errors import Conflict, NotFound
from jitprov.store.database import Database
from jitprov.store.records import TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock


def test_create_returns_the_tenant_and_get_reads_it_back(db: Database, clock: Clock) -> None:
    with UnitOfWork(db) as uow:
        created = uow.config.tenants.create("acme", "Acme Corp", clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        fetched = uow.config.tenants.get("acme")

    assert TenantRecord(id=created.id, slug="acme", name="Acme Corp",
                        created_at=clock.now) == created
    assert created == fetched
    assert fetched.created_at.utcoffset() is not None


def test_list_returns_every_tenant_ordered_by_slug(db: Database, clock: Clock) -> None:
    with UnitOfWork(db) as uow:
        for slug in ("initech", "acme", "globex"):
            uow.config.tenants.create(slug, slug.title(), clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert ["acme", "globex", "initech"] == [t.slug for t in uow.config.tenants.list()]


def test_create_with_a_taken_slug_raises_conflict(db: Database, clock: Clock) -> None:
    with UnitOfWork(db) as uow:
        uow.config.tenants.create("acme", "Acme", clock())
        uow.commit()

    with UnitOfWork(db) as uow, pytest.raises(Conflict):
        uow.config.tenants.create("acme", "Another Acme", clock())

    with UnitOfWork(db, readonly=True) as uow:
        assert ["Acme"] == [t.name for t in uow.config.tenants.list()]


def test_get_of_an_unknown_slug_raises_not_found(db: Database) -> None:
    with UnitOfWork(db, readonly=True) as uow, pytest.raises(NotFound):
        uow.config.tenants.get("nobody")
