"""A failover on PostgreSQL (every pooled connection killed by the server, before the idle
ping would notice): the unit that meets a dead connection fails as ``unavailable``
(``DatabaseNotReady``), whether its first statement runs on the DBAPI cursor
(``store/fast.py``) or through SQLAlchemy, and the units after it get fresh connections."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import DatabaseNotReady
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.store import database
from jitprov.store.database import Database
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY, fresh_database_url
from tests.web.helpers import idp_response, make_client, sign_in, start

pytestmark = pytest.mark.postgres

POOL = 3


@pytest.fixture
def pg(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[Database, list[int]]]:
    """A PostgreSQL database whose pool never pings (a slow test run must not hide the dead
    connections), and the server pids of the connections its pool opened."""
    monkeypatch.setattr(database, "PING_AFTER_IDLE", 3600.0)
    url = fresh_database_url("postgresql", request, request.getfixturevalue("tmp_path"),
                             request.getfixturevalue("sqlite_template"))
    db = Database.connect(url, pool_size=POOL, max_overflow=0)
    pids: list[int] = []
    sa.event.listen(db.engine, "connect",
                    lambda raw, _record: pids.append(raw.info.backend_pid))
    yield db, pids
    db.dispose()


def _warm(db: Database) -> None:
    """Open every connection of the pool and give them back."""
    units = [UnitOfWork(db, readonly=True) for _ in range(POOL)]
    for unit in units:
        unit.__enter__()
        unit.accounts.find_by_identity(1, "nobody")
    for unit in units:
        unit.__exit__(None, None, None)


def _kill(db: Database, pids: list[int]) -> None:
    """Terminate those server processes from a connection of another engine, and wait for
    them to be gone."""
    admin = sa.create_engine(db.engine.url, poolclass=sa.NullPool)
    with admin.connect() as conn:
        killed = conn.execute(sa.text(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
            "FROM unnest(CAST(:pids AS int[])) AS pid"), {"pids": pids}).scalar_one()
    admin.dispose()
    assert killed == len(pids) == POOL, pids


FIRST: dict[str, Callable[[UnitOfWork], Any]] = {
    "on the DBAPI cursor": lambda uow: uow.accounts.find_by_identity(1, "nobody"),
    "through SQLAlchemy": lambda uow: uow.config.tenants.list(),
}


@pytest.mark.parametrize("readonly", [True, False], ids=["read-only", "writing"])
@pytest.mark.parametrize("first", list(FIRST))
def test_a_unit_on_a_killed_connection_is_unavailable_and_the_next_one_works(
        pg: tuple[Database, list[int]], first: str, readonly: bool) -> None:
    db, pids = pg
    _warm(db)
    _kill(db, pids)
    with pytest.raises(DatabaseNotReady, match="cannot reach the database") as failed, \
            UnitOfWork(db, readonly=readonly) as uow:
        FIRST[first](uow)
    assert isinstance(failed.value.__cause__, sa.exc.OperationalError)
    for _ in range(POOL + 1):  # the pool's other dead connections were discarded with it
        with UnitOfWork(db, readonly=readonly) as uow:
            FIRST[first](uow)
            assert uow.accounts.find_by_identity(1, "nobody") is None


@pytest.mark.parametrize("ending", ["without commit", "with its own error"])
def test_a_unit_whose_connection_dies_under_it_is_unavailable_when_it_rolls_back(
        pg: tuple[Database, list[int]], ending: str) -> None:
    db, pids = pg
    _warm(db)
    own_error = LookupError("the unit's own error")
    with pytest.raises(DatabaseNotReady, match="cannot reach the database") as failed, \
            UnitOfWork(db) as uow:
        uow.config.tenants.list()  # the transaction is open on the server
        _kill(db, pids)
        if ending == "with its own error":
            raise own_error
    cause = failed.value.__cause__
    assert cause is own_error if ending == "with its own error" else \
        isinstance(cause, sa.exc.OperationalError)
    for _ in range(POOL + 1):
        with UnitOfWork(db) as uow:
            assert uow.accounts.find_by_identity(1, "nobody") is None


def test_a_unit_whose_connection_dies_before_its_audited_commit_writes_nothing(
        pg: tuple[Database, list[int]]) -> None:
    """The audit events go to the server with the COMMIT, in one pipeline: a connection dead
    by then fails the unit as ``unavailable``, nothing of it is written, and the units after
    it get fresh connections."""
    db, pids = pg
    _warm(db)
    now = datetime.now(UTC)
    with pytest.raises(DatabaseNotReady, match="cannot reach the database") as failed, \
            UnitOfWork(db) as uow:
        tenant = uow.config.tenants.create("acme", "Acme", now)
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("tenant.created", "test"), now)
        _kill(db, pids)
        uow.commit()
    assert isinstance(failed.value.__cause__, sa.exc.OperationalError)
    for _ in range(POOL + 1):
        with UnitOfWork(db, readonly=True) as uow:
            assert uow.config.tenants.list() == []
    with UnitOfWork(db) as uow:  # the same write goes through on a fresh connection
        tenant = uow.config.tenants.create("acme", "Acme", now)
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("tenant.created", "test"), now)
        uow.commit()
    with UnitOfWork(db, readonly=True) as uow:
        assert [1] == [e.seq for e in uow.audit.events(tenant.id)]


def test_a_login_callback_on_killed_connections_answers_503_then_the_next_one_signs_in(
        pg: tuple[Database, list[int]]) -> None:
    """Through HTTP: the readable 503, not a 500 (the callback's first statement, the spend of
    the login request, runs on the DBAPI cursor like the identity's look-up after it)."""
    db, pids = pg
    ctx = ServiceContext(db=db, secretbox=SecretBox(TEST_SECRET_KEY))
    setup_connection(ctx)
    with make_client(ctx) as client:
        sign_in(client)  # a person who exists: the callback looks the identity up first
        fields = idp_response(client, start(client))
        _warm(db)
        _kill(db, pids)
        r = client.post("/sso/idp/mock/callback", data=fields)
        assert r.status_code == 503, r.text
        assert "temporarily unavailable" in r.text
        sign_in(client)
        assert client.get("/me").status_code == 200
