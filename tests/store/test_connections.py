"""ConnectionRepository: add, get, list, set_mapping (bumps and returns the version),
set_enabled; Conflict on a taken slug, NotFound on an unknown one. Plus the IdP metadata
refresh's writes (``uow.config.saml``): a compare-and-set config write, one claim per period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from jitprov.core.errors import Conflict, NotFound
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock, seed_connection

CONFIG = {"issuer": "https://idp.example.com", "scopes": ["openid", "email"],
          "pkce": True, "timeout_s": 10}


def add(uow: UnitOfWork, tenant: TenantRecord, slug: str, clock: Clock) -> ConnectionRecord:
    return uow.config.connections.add(tenant_id=tenant.id, slug=slug, kind="oidc", config=CONFIG,
                                      secrets="gAAAAA-fernet-token", mapping="rules: []\n",
                                      mapping_source=f"/etc/jitprov/{slug}.yaml", now=clock())


def test_add_returns_the_connection_enabled_at_version_one(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        added = add(uow, tenant, "okta", clock)
        uow.commit()

    expected = ConnectionRecord(
        id=added.id, tenant_id=tenant.id, tenant_slug="acme", slug="okta", kind="oidc",
        config=CONFIG, secrets="gAAAAA-fernet-token", mapping="rules: []\n",
        mapping_source="/etc/jitprov/okta.yaml", enabled=True, version=1,
        updated_at=clock.now)
    assert expected == added
    with UnitOfWork(db, readonly=True) as uow:
        assert expected == uow.config.connections.get("okta")


def test_list_orders_by_slug_and_filters_by_tenant(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        add(uow, tenant, "okta", clock)
        add(uow, other_tenant, "entra", clock)
        add(uow, tenant, "adfs", clock)
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert ["adfs", "entra", "okta"] == [c.slug for c in uow.config.connections.list()]
        assert ["adfs", "okta"] == [c.slug for c in uow.config.connections.list(tenant.id)]
        assert [("entra", "globex")] == [(c.slug, c.tenant_slug)
                                         for c in uow.config.connections.list(other_tenant.id)]


def test_add_with_a_slug_taken_in_another_tenant_raises_conflict(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord) -> None:
    seed_connection(db, clock, tenant, "okta")

    with UnitOfWork(db) as uow, pytest.raises(Conflict):
        add(uow, other_tenant, "okta", clock)


def test_set_mapping_replaces_the_mapping_and_returns_the_bumped_version(
        db: Database, clock: Clock, connection: ConnectionRecord) -> None:
    clock.advance(minutes=5)
    with UnitOfWork(db) as uow:
        first = uow.config.connections.set_mapping("okta", "rules: [a]\n", "v2.yaml", clock())
        second = uow.config.connections.set_mapping("okta", "rules: [b]\n", "v3.yaml", clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        current = uow.config.connections.get("okta")
    assert (2, 3) == (first, second)
    assert ("rules: [b]\n", "v3.yaml", 3, clock.now) == (
        current.mapping, current.mapping_source, current.version, current.updated_at)


def test_set_enabled_disables_and_reenables_the_connection(
        db: Database, clock: Clock, connection: ConnectionRecord) -> None:
    with UnitOfWork(db) as uow:
        uow.config.connections.set_enabled("okta", False, clock())
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        disabled = uow.config.connections.get("okta")

    with UnitOfWork(db) as uow:
        uow.config.connections.set_enabled("okta", True, clock())
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        enabled = uow.config.connections.get("okta")

    assert (False, True) == (disabled.enabled, enabled.enabled)


@pytest.mark.parametrize("operation", [
    pytest.param(lambda uow, now: uow.config.connections.get("nope"), id="get"),
    pytest.param(lambda uow, now: uow.config.connections.set_mapping("nope", "", "x", now),
                 id="set_mapping"),
    pytest.param(lambda uow, now: uow.config.connections.set_enabled("nope", False, now),
                 id="set_enabled"),
])
def test_unknown_connection_raises_not_found(
        db: Database, clock: Clock, connection: ConnectionRecord,
        operation: Callable[..., object]) -> None:
    with UnitOfWork(db) as uow, pytest.raises(NotFound):
        operation(uow, clock())


# the IdP metadata refresh's writes (uow.config.saml)
def test_replace_config_bumps_the_version(db: Database, clock: Clock,
                                          connection: ConnectionRecord) -> None:
    with UnitOfWork(db) as uow:
        version = uow.config.saml.replace_config(
            connection.slug, {"issuer": "https://new.example"},
            expected_version=connection.version, now=clock())
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        stored = uow.config.connections.get(connection.slug)
    assert (version, stored.version, stored.config) == (
        connection.version + 1, connection.version + 1, {"issuer": "https://new.example"})


def test_replace_config_refuses_a_stale_version(db: Database, clock: Clock,
                                                connection: ConnectionRecord) -> None:
    with UnitOfWork(db) as uow:
        uow.config.connections.set_mapping(connection.slug, "rules: []\n", "changed.yaml", clock())
        assert uow.config.saml.replace_config(
            connection.slug, {"issuer": "https://new.example"},
            expected_version=connection.version, now=clock()) is None
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.config.connections.get(connection.slug).config == connection.config


def test_replace_config_of_an_unknown_connection(db: Database, clock: Clock) -> None:
    with UnitOfWork(db) as uow, pytest.raises(NotFound):
        uow.config.saml.replace_config("nope", {}, expected_version=1, now=clock())


def test_one_claim_per_refresh_period(db: Database, clock: Clock,
                                      connection: ConnectionRecord) -> None:
    clock.advance(hours=2)
    due_before = clock() - timedelta(hours=1)
    with UnitOfWork(db) as uow:
        assert uow.config.saml.claim_refresh(connection.slug, unchanged_since=due_before,
                                             now=clock()) is True
        assert uow.config.saml.claim_refresh(connection.slug, unchanged_since=due_before,
                                             now=clock()) is False
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        claimed = uow.config.connections.get(connection.slug)
    assert (claimed.version, claimed.updated_at) == (connection.version, clock())
