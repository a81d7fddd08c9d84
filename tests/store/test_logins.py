"""Login state (store/logins.py) on SQLite and PostgreSQL: a stored request (a SAML
LogoutRequest in flight) is single use and expires, and of any number of concurrent consumers
exactly one gets the record; a login is spent once, by exactly one of any number of concurrent
callbacks, and forgotten when its request expired; an assertion ID is accepted once per
connection, by exactly one of any number of concurrent ACS requests on any node, and expired
IDs are purged."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, LoginRequestRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock, seed_connection

STATE = "b" * 64  # SHA-256 hex of the state value
DATA = {"nonce": "n-0S6_WzA2Mj", "code_verifier": "dBjftJeZ4CVP", "acr": ["mfa", "pwd"],
        "max_age": 300, "prompt": None}
CONSUMERS = 8
ASSERTION = "_a75adf55-01d7-40cc-929f-dbd8372ebdfc"
CONCURRENT = 8


def create(db: Database, clock: Clock, connection: ConnectionRecord,
           lifetime: timedelta = timedelta(minutes=10)) -> None:
    with UnitOfWork(db) as uow:
        uow.logins.requests.create(state_id=STATE, connection_id=connection.id,
                                   return_to="/apps/wiki?x=1", data=DATA, now=clock(),
                                   expires_at=clock() + lifetime)
        uow.commit()


def consume(db: Database, clock: Clock, state: str = STATE) -> LoginRequestRecord | None:
    with UnitOfWork(db) as uow:
        record = uow.logins.requests.consume(state, clock())
        uow.commit()
    return record


def test_consume_returns_the_request_once(db: Database, clock: Clock,
                                          connection: ConnectionRecord) -> None:
    create(db, clock, connection)
    expected = LoginRequestRecord(connection_id=connection.id, return_to="/apps/wiki?x=1",
                                  data=DATA, expires_at=clock.now + timedelta(minutes=10))
    clock.advance(minutes=1)

    assert (expected, None) == (consume(db, clock), consume(db, clock))


def test_a_consume_rolled_back_leaves_the_request_usable(
        db: Database, clock: Clock, connection: ConnectionRecord) -> None:
    create(db, clock, connection)
    with UnitOfWork(db) as uow:
        assert uow.logins.requests.consume(STATE, clock()) is not None
        # leave without commit

    assert consume(db, clock) is not None


def test_an_expired_request_cannot_be_consumed(db: Database, clock: Clock,
                                               connection: ConnectionRecord) -> None:
    create(db, clock, connection, lifetime=timedelta(minutes=10))
    clock.advance(minutes=10)

    assert consume(db, clock) is None


def test_an_unknown_state_cannot_be_consumed(db: Database, clock: Clock,
                                             connection: ConnectionRecord) -> None:
    create(db, clock, connection)

    assert consume(db, clock, "c" * 64) is None


def test_exactly_one_of_concurrent_consumers_gets_the_request(
        db: Database, clock: Clock, connection: ConnectionRecord) -> None:
    create(db, clock, connection)
    start = threading.Barrier(CONSUMERS)

    def consumer() -> LoginRequestRecord | None:
        start.wait(timeout=30)  # all threads race for the same row
        return consume(db, clock)

    with ThreadPoolExecutor(max_workers=CONSUMERS) as pool:
        futures = [pool.submit(consumer) for _ in range(CONSUMERS)]
        results = [f.result(timeout=60) for f in futures]

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert DATA == winners[0].data


def spend(db: Database, clock: Clock, connection: ConnectionRecord, state: str = "s" * 64,
          *, commit: bool = True) -> bool:
    with UnitOfWork(db) as uow:
        first = uow.logins.requests.spend(state_id=state, connection_id=connection.id,
                                          return_to="/me", now=clock(),
                                          expires_at=clock() + timedelta(minutes=10)).taken
        if commit:
            uow.commit()
    return first


def test_a_login_is_spent_once_and_reads_as_spent(db: Database, clock: Clock,
                                                  connection: ConnectionRecord) -> None:
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.logins.requests.is_spent("s" * 64) is False
    assert spend(db, clock, connection) is True
    assert spend(db, clock, connection) is False
    assert spend(db, clock, connection, "t" * 64) is True
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.logins.requests.is_spent("s" * 64) is True
        assert uow.logins.requests.is_spent("u" * 64) is False


def test_a_unit_cannot_commit_a_spend_it_never_checked(db: Database, clock: Clock,
                                                       connection: ConnectionRecord) -> None:
    """A spend whose answer nobody read would let a second use through unnoticed: the commit
    refuses and the unit rolls back; a claim has no truth value to test by mistake."""
    with pytest.raises(RuntimeError, match="never checked"), UnitOfWork(db) as uow:
        claim = uow.logins.requests.spend(state_id="s" * 64, connection_id=connection.id,
                                          return_to="/me", now=clock(),
                                          expires_at=clock() + timedelta(minutes=10))
        with pytest.raises(TypeError, match="taken"):
            bool(claim)
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        assert uow.logins.requests.is_spent("s" * 64) is False
        with pytest.raises(RuntimeError, match="read-only"):
            uow.logins.saml_replay.remember(connection.id, ASSERTION, clock())
    assert spend(db, clock, connection) is True


def test_a_spend_rolled_back_leaves_the_login_unspent(db: Database, clock: Clock,
                                                      connection: ConnectionRecord) -> None:
    assert spend(db, clock, connection, commit=False) is True
    assert spend(db, clock, connection) is True


def test_exactly_one_of_concurrent_spenders_wins(db: Database, clock: Clock,
                                                connection: ConnectionRecord) -> None:
    start = threading.Barrier(CONSUMERS)

    def spender() -> bool:
        start.wait(timeout=30)  # all threads race for the same key
        return spend(db, clock, connection)

    with ThreadPoolExecutor(max_workers=CONSUMERS) as pool:
        futures = [pool.submit(spender) for _ in range(CONSUMERS)]
        results = [f.result(timeout=60) for f in futures]

    assert sorted(results) == [False] * (CONSUMERS - 1) + [True]


def test_spent_logins_are_purged_once_their_request_expired(
        db: Database, clock: Clock, connection: ConnectionRecord) -> None:
    assert spend(db, clock, connection) is True
    with UnitOfWork(db) as uow:
        assert uow.logins.requests.purge_expired(clock() + timedelta(minutes=9)) == 0
        assert uow.logins.requests.purge_expired(clock() + timedelta(minutes=11)) == 1
        uow.commit()
    assert spend(db, clock, connection) is True


def remember(db: Database, connection_id: int, assertion_id: str, clock: Clock,
             lifetime: timedelta = timedelta(minutes=5)) -> bool:
    with UnitOfWork(db) as uow:
        first = uow.logins.saml_replay.remember(connection_id, assertion_id,
                                                clock() + lifetime).taken
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
        assert uow.logins.saml_replay.remember(connection.id, ASSERTION, clock()).taken is False
        assert uow.logins.saml_replay.remember(connection.id, "_other", clock()).taken is True
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
        assert uow.logins.saml_replay.remember(connection.id, ASSERTION, clock()).taken is True
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
        assert uow.logins.saml_replay.purge_expired(clock()) == 1
        uow.commit()
    assert remember(db, connection.id, "_old", clock) is True
    assert remember(db, connection.id, "_fresh", clock) is False
