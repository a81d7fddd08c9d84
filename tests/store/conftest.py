"""Fixtures of the store conformance suite: every test runs on SQLite and on PostgreSQL
(``database_url`` in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord

from .seed import Clock, seed_connection, seed_tenant


@pytest.fixture
def tenant(db: Database, clock: Clock) -> TenantRecord:
    return seed_tenant(db, clock, "acme")


@pytest.fixture
def other_tenant(db: Database, clock: Clock) -> TenantRecord:
    return seed_tenant(db, clock, "globex")


@pytest.fixture
def connection(db: Database, clock: Clock, tenant: TenantRecord) -> ConnectionRecord:
    return seed_connection(db, clock, tenant, "okta")
