"""SamlReplayRepository: an assertion ID is accepted once per connection, by exactly one of any
number of concurrent ACS requests on any node; expired IDs are purged. Plus the metadata
refresh's compare-and-set config write. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from jitprov.core.errors import NotFound
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock, seed_connection

ASSERTION = "_a75adf55-01d7-40cc-929f-dbd8372ebdfc"
CONCURRENT = 8


def remember(db: Database, connection_id: int, assertion_id: str, clock: Clock,
             lifetime: timedelta = timedelta(minutes=5)) -> bool:
    with UnitOfWork(db) as uow:
        first = uow.saml_replay.remember(connection_id, assertion_id, clock() + lifetime)
        uow.commit()
    return first


def test_an_assertion_id_is_new_once(db: Database, clock: Clock,
                                     connection: ConnectionRecord) -> None:
    assert remember(db, connection.id, ASSERTION, clock) is True
    assert remember(db, connection.id, ASSERTION, clock) is False


def test_a_replay_leaves_the_transaction_usable(db: Database, clock: Clock,
                                                connection: ConnectionRecord) -> None:
    remember(db, connection.id, ASSERTION, clock)
    with UnitOfWork(db) as uow:
        assert uow.saml_replay.remember(connection.id, ASSERTION, clock()) is False
        assert uow.saml_replay.remember(connection.id, "_other", clock()) is True
        uow.commit()
    assert remember(db, connection.id, "_other", clock) is False


def test_the_same_id_through_another_connection_is_not_a_replay(
        db: Database, clock: Clock, tenant: TenantRecord, connection: ConnectionRecord) -> None:
    other = seed_connection(db, clock, tenant, "entra")
    assert remember(db, connection.id, ASSERTION, clock) is True
    assert remember(db, other.id, ASSERTION, clock) is True


def test_a_rolled_back_remember_is_forgotten(db: Database, clock: Clock,
                                             connection: ConnectionRecord) -> None:
    with UnitOfWork(db) as uow:
        assert uow.saml_replay.remember(connection.id, ASSERTION, clock()) is True
    assert remember(db, connection.id, ASSERTION, clock) is True


def test_exactly_one_of_concurrent_acs_requests_wins(db: Database, clock: Clock,
                                                    connection: ConnectionRecord) -> None:
    barrier = threading.Barrier(CONCURRENT)

    def attempt(_: int) -> bool:
        barrier.wait()
        return remember(db, connection.id, ASSERTION, clock)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        outcomes = list(pool.map(attempt, range(CONCURRENT)))
    assert sorted(outcomes) == [False] * (CONCURRENT - 1) + [True]


def test_purge_removes_only_expired_ids(db: Database, clock: Clock,
                                        connection: ConnectionRecord) -> None:
    remember(db, connection.id, "_old", clock, timedelta(minutes=1))
    remember(db, connection.id, "_fresh", clock, timedelta(minutes=10))
    clock.advance(minutes=5)
    with UnitOfWork(db) as uow:
        assert uow.saml_replay.purge_expired(clock()) == 1
        uow.commit()
    assert remember(db, connection.id, "_old", clock) is True
    assert remember(db, connection.id, "_fresh", clock) is False


def test_replace_config_bumps_the_version(db: Database, clock: Clock,
                                          connection: ConnectionRecord) -> None:
    with UnitOfWork(db) as uow:
        version = uow.saml_config.replace_config(
            connection.slug, {"issuer": "https://new.example"},
            expected_version=connection.version, now=clock())
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        stored = uow.connections.get(connection.slug)
    assert (version, stored.version, stored.config) == (
        connection.version + 1, connection.version + 1, {"issuer": "https://new.example"})


def test_replace_config_refuses_a_stale_version(db: Database, clock: Clock,
                                                connection: ConnectionRecord) -> None:
    with UnitOfWork(db) as uow:
        uow.connections.set_mapping(connection.slug, "rules: []\n", "changed.yaml", clock())
        assert uow.saml_config.replace_config(
            connection.slug, {"issuer": "https://new.example"},
            expected_version=connection.version, now=clock()) is None
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.connections.get(connection.slug).config == connection.config


def test_replace_config_of_an_unknown_connection(db: Database, clock: Clock) -> None:
    with UnitOfWork(db) as uow, pytest.raises(NotFound):
        uow.saml_config.replace_config("nope", {}, expected_version=1, now=clock())


def test_one_claim_per_refresh_period(db: Database, clock: Clock,
                                      connection: ConnectionRecord) -> None:
    clock.advance(hours=2)
    due_before = clock() - timedelta(hours=1)
    with UnitOfWork(db) as uow:
        assert uow.saml_config.claim_refresh(connection.slug, unchanged_since=due_before,
                                             now=clock()) is True
        assert uow.saml_config.claim_refresh(connection.slug, unchanged_since=due_before,
                                             now=clock()) is False
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        claimed = uow.connections.get(connection.slug)
    assert (claimed.version, claimed.updated_at) == (connection.version, clock())


def test_peek_reads_an_unspent_login_without_spending_it(db: Database, clock: Clock,
                                                        connection: ConnectionRecord) -> None:
    with UnitOfWork(db) as uow:
        uow.login_requests.create(state_id="s" * 64, connection_id=connection.id,
                                  return_to="/me", data={"request_id": "_r1"}, now=clock(),
                                  expires_at=clock() + timedelta(minutes=10))
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        peeked = uow.saml_login_requests.peek("s" * 64, clock())
        assert uow.saml_login_requests.peek("t" * 64, clock()) is None
    assert peeked is not None
    assert (peeked.connection_id, peeked.return_to, peeked.data) == (
        connection.id, "/me", {"request_id": "_r1"})
    with UnitOfWork(db) as uow:
        assert uow.login_requests.consume("s" * 64, clock()) is not None
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.saml_login_requests.peek("s" * 64, clock()) is None


def test_peek_ignores_an_expired_login(db: Database, clock: Clock,
                                       connection: ConnectionRecord) -> None:
    with UnitOfWork(db) as uow:
        uow.login_requests.create(state_id="s" * 64, connection_id=connection.id,
                                  return_to="/", data={}, now=clock(),
                                  expires_at=clock() + timedelta(minutes=10))
        uow.commit()
    clock.advance(minutes=10)
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.saml_login_requests.peek("s" * 64, clock()) is None
