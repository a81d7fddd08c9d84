"""Fixtures of the store conformance suite: every test runs on SQLite, on PostgreSQL, and on
PostgreSQL through PgBouncer in transaction mode (the way many deployments pool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from tests.conftest import fresh_database_url

from .seed import Clock, seed_connection, seed_tenant


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("pgbouncer", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path,
                 sqlite_template: Path) -> str:
    """Overrides the suite's: the store's tests run through PgBouncer as well."""
    return fresh_database_url(request.param, request, tmp_path, sqlite_template)


@pytest.fixture
def tenant(db: Database, clock: Clock) -> TenantRecord:
    return seed_tenant(db, clock, "acme")


@pytest.fixture
def other_tenant(db: Database, clock: Clock) -> TenantRecord:
    return seed_tenant(db, clock, "globex")


@pytest.fixture
def connection(db: Database, clock: Clock, tenant: TenantRecord) -> ConnectionRecord:
    return seed_connection(db, clock, tenant, "okta")
