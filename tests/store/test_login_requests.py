"""LoginRequestRepository: server-side login state is single use and expires; of any number of
concurrent consumers exactly one gets the record."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, LoginRequestRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock

STATE = "b" * 64  # SHA-256 hex of the state value
DATA = {"nonce": "n-0S6_WzA2Mj", "code_verifier": "dBjftJeZ4CVP", "acr": ["mfa", "pwd"],
        "max_age": 300, "prompt": None}
CONSUMERS = 8


def create(db: Database, clock: Clock, connection: ConnectionRecord,
           lifetime: timedelta = timedelta(minutes=10)) -> None:
    with UnitOfWork(db) as uow:
        uow.login_requests.create(state_id=STATE, connection_id=connection.id,
                                  return_to="/apps/wiki?x=1", data=DATA, now=clock(),
                                  expires_at=clock() + lifetime)
        uow.commit()


def consume(db: Database, clock: Clock, state: str = STATE) -> LoginRequestRecord | None:
    with UnitOfWork(db) as uow:
        record = uow.login_requests.consume(state, clock())
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
        assert uow.login_requests.consume(STATE, clock()) is not None
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
