"""Time limits toward a sick database, through HTTP: a request that hits one answers 503 with
``Retry-After`` (a SCIM error body on SCIM, JSON on /api, a page elsewhere) instead of hanging;
``/readyz`` names the failing check; ``/healthz`` stays liveness.

No wall-clock assertion: each scenario would hang (or answer after the blocker lets go, with
another status) without its time limit, so the status and the header are the proof.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import UNLIMITED, Database, DatabaseLimits
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import HandOffs, make_client
from tests.web.scim_helpers import (
    BASE,
    GROUP_SCHEMA,
    assert_scim_error,
    auth,
    scim_token,
    user,
)

FAST = DatabaseLimits(connect_timeout=2, statement_timeout=1, pool_timeout=1, busy_timeout=1)
#: how long a blocker holds on: past it, a request without time limits would get through
HOLD = 30.0


class SilentServer:
    """A "PostgreSQL" that accepts TCP connections and never says a word."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._held: list[tuple[float, socket.socket]] = []
        self._closed = threading.Event()
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        """Accept and hold each connection for ``HOLD`` seconds, then hang up (so that a
        client without a connect timeout fails late instead of hanging the suite)."""
        self._sock.settimeout(0.2)
        while not self._closed.is_set():
            now = time.monotonic()
            while self._held and now - self._held[0][0] > HOLD:
                self._held.pop(0)[1].close()
            try:
                self._held.append((now, self._sock.accept()[0]))
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        for _, conn in self._held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def _context(url: str, limits: DatabaseLimits, key: str = TEST_SECRET_KEY) -> ServiceContext:
    return ServiceContext(db=Database.connect(url, pool_size=1, limits=limits),
                          secretbox=SecretBox(key))


def _assert_retry_later(response: object) -> None:
    assert response.status_code == 503, response.text  # type: ignore[attr-defined]
    assert response.headers["retry-after"] == "5"  # type: ignore[attr-defined]


def test_a_silent_database_is_a_fast_503_everywhere_and_readyz_says_so(
        silent: SilentServer) -> None:
    ctx = _context(f"postgresql://jitprov@127.0.0.1:{silent.port}/jitprov", FAST)
    try:
        with make_client(ctx) as client:
            assert client.get("/healthz").status_code == 200  # liveness touches nothing

            r = client.get(f"{BASE}/Users", headers=auth("jps_" + "x" * 40))
            assert_scim_error(r, 503)
            _assert_retry_later(r)
            assert "try again" in r.json()["detail"]

            r = client.get("/api/tenants", headers={"Authorization": "Bearer jpa_" + "x" * 40})
            _assert_retry_later(r)
            assert r.json()["error"] == "database_timeout"
            assert str(silent.port) not in r.text

            r = client.get("/", headers={"Accept": "text/html"})
            _assert_retry_later(r)
            assert r.headers["content-type"].startswith("text/html")
            assert "temporarily unavailable" in r.text

            r = client.get("/readyz")
            _assert_retry_later(r)
            body = r.json()
            assert body["status"] == "not_ready"
            assert body["failing"] == "database"
            assert body["checks"] == {"database": "the database did not answer in time",
                                      "schema": "not checked", "secret_key": "not checked"}
            assert str(silent.port) not in r.text
    finally:
        ctx.db.dispose()


def test_a_write_stuck_behind_a_held_writer_is_a_503(database_url: str) -> None:
    """SQLite: another writer holds the write turn; PostgreSQL: another session holds a lock
    on the accounts. The SCIM POST waits its busy/statement timeout, then answers 503."""
    ctx = _context(database_url, FAST)
    setup_connection(ctx)
    token = scim_token(ctx)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        if ctx.db.dialect == "sqlite":
            assert ctx.db.write_lock is not None
            with ctx.db.write_lock:
                holding.set()
                release.wait(HOLD)
            return
        engine = sa.create_engine(ctx.db.engine.url)
        with engine.begin() as conn:
            conn.execute(sa.text("LOCK TABLE account IN ACCESS EXCLUSIVE MODE"))
            holding.set()
            release.wait(HOLD)
        engine.dispose()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with make_client(ctx) as client:
            r = client.post(f"{BASE}/Users", json=user(), headers=auth(token))
        assert_scim_error(r, 503)
        _assert_retry_later(r)
    finally:
        release.set()
        holder.join()
    with make_client(ctx) as client:  # and the tenant works again once the writer is gone
        assert client.post(f"{BASE}/Users", json=user(), headers=auth(token)
                           ).status_code == 201
    ctx.db.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_write_behind_another_processs_writer_is_a_503_and_gives_its_connection_back(
        database_url: str) -> None:
    """SQLite: a writer of another process (another ``serve`` worker) holds the write turn
    past the busy timeout: 503, and the pool has its connection back."""
    ctx = _context(database_url, FAST)
    setup_connection(ctx)
    token = scim_token(ctx)
    with make_client(ctx) as client:
        assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
        other = sqlite3.connect(sa.make_url(database_url).database or "", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            r = client.post(f"{BASE}/Users", json=user(), headers=auth(token))
        finally:
            other.execute("COMMIT")
            other.close()
        assert_scim_error(r, 503)
        _assert_retry_later(r)
        assert ctx.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert client.post(f"{BASE}/Users", json=user(), headers=auth(token)
                           ).status_code == 201
    ctx.db.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_write_in_a_thread_behind_another_processs_brief_writer_tries_again_every_few_ms(
        database_url: str) -> None:
    """SQLite: another process holds the write turn for a moment. A SCIM Group create (a
    write run in a worker thread) waits for it by trying ``BEGIN IMMEDIATE`` again every
    2 ms at most, not inside SQLite's busy handler (one try that sleeps up to 100 ms at a
    time, past the moment the lock was free), and answers 201 once the other writer is
    done."""
    ctx = _context(database_url, FAST)
    setup_connection(ctx)
    token = scim_token(ctx)
    ctx.db.engine.dispose()  # the next connections are traced
    begins: list[str] = []

    def traced(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.set_trace_callback(
            lambda sql: begins.append(sql) if sql == "BEGIN IMMEDIATE" else None)

    sa.event.listen(ctx.db.engine, "connect", traced)
    other = sqlite3.connect(sa.make_url(database_url).database or "", isolation_level=None,
                            check_same_thread=False)
    with make_client(ctx) as client:
        assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
        other.execute("BEGIN IMMEDIATE")
        done = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        done.start()
        try:
            r = client.post(f"{BASE}/Groups", headers=auth(token),
                            json={"schemas": [GROUP_SCHEMA], "displayName": "Nurses"})
        finally:
            done.join()
            other.close()
    assert r.status_code == 201, r.text
    # 0.3 s of pauses of 2 ms at most: ~150 tries (SQLite's busy handler: 1)
    assert len(begins) > 20
    with ctx.db.engine.connect() as conn:  # the pool's one connection waits as before
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 1000
    ctx.db.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_write_while_every_kept_connection_is_in_use_is_served_in_a_thread(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: the pool's kept connection is in use (a long read in a thread, say). The SCIM
    create cannot run on the event loop, whose checkout could wait, and goes to a worker
    thread at once, where an overflow connection serves it: 201, not a wait for the kept one
    until the busy timeout."""
    ctx = _context(database_url, FAST)
    setup_connection(ctx)
    token = scim_token(ctx)
    with make_client(ctx) as client:
        assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
        hand_offs = HandOffs(monkeypatch)
        held = ctx.db.engine.connect()
        try:
            r = client.post(f"{BASE}/Users", json=user(), headers=auth(token))
        finally:
            held.close()
    assert r.status_code == 201, r.text
    assert hand_offs.calls == ["create_user"]
    ctx.db.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_write_behind_this_processs_writer_threads_one_after_another_is_served(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: two threads of this process write one after another (SCIM Group writes, the
    entitlement job), so the write lock is never free when the event loop looks. The SCIM
    create waits on the loop a moment, then in a worker thread, which the lock lets in
    between them: 201, not a 503 at the busy timeout."""
    ctx = _context(database_url, FAST)
    setup_connection(ctx)
    token = scim_token(ctx)
    lock = ctx.db.write_lock
    assert lock is not None
    stop = threading.Event()

    def group_writes() -> None:
        while not stop.is_set():
            with lock:
                time.sleep(0.003)

    writers = [threading.Thread(target=group_writes) for _ in range(2)]
    with make_client(ctx) as client:
        assert client.get(f"{BASE}/Users", headers=auth(token)).status_code == 200
        hand_offs = HandOffs(monkeypatch)
        for writer in writers:
            writer.start()
        try:
            r = client.post(f"{BASE}/Users", json=user(), headers=auth(token))
        finally:
            stop.set()
            for writer in writers:
                writer.join()
    assert r.status_code == 201, r.text
    assert hand_offs.calls == ["create_user"]
    ctx.db.dispose()


def test_an_exhausted_connection_pool_is_a_503(database_url: str) -> None:
    ctx = _context(database_url, FAST)
    _, token = admin.create_admin_token(ctx, "ops")
    held = [ctx.db.engine.connect() for _ in range(2)]  # pool_size 1 + 1 overflow
    try:
        with make_client(ctx) as client:
            r = client.get("/api/tenants", headers={"Authorization": f"Bearer {token}"})
        _assert_retry_later(r)
        assert r.json()["error"] == "database_timeout"
    finally:
        for conn in held:
            conn.close()
    with make_client(ctx) as client:
        assert client.get("/api/tenants", headers={"Authorization": f"Bearer {token}"}
                          ).status_code == 200
    ctx.db.dispose()


def _slow_statement(dialect: str) -> str:
    if dialect == "sqlite":  # a few seconds of virtual-machine work
        return ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                "WHERE i < 300000000) SELECT count(*) FROM n")
    return "SELECT pg_sleep(30)"


def test_a_statement_past_the_statement_timeout_is_interrupted(database_url: str) -> None:
    from jitprov.core.errors import DatabaseTimeout
    from jitprov.store.unit_of_work import UnitOfWork

    db = Database.connect(database_url, pool_size=1,
                          limits=DatabaseLimits(statement_timeout=0.3))
    try:
        with pytest.raises(DatabaseTimeout), UnitOfWork(db, readonly=True) as uow:
            uow.config._c.execute(sa.text(_slow_statement(db.dialect)))
        with UnitOfWork(db, readonly=True) as uow:  # the connection is still good
            assert uow.config._c.execute(sa.text("SELECT 1")).scalar() == 1
        # migrations run without it
        with db.engine.execution_options(**{UNLIMITED: True}).connect() as conn:
            quick = ("SELECT count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                     "SELECT i + 1 FROM n WHERE i < 3000000) SELECT i FROM n) AS t"
                     if db.dialect == "sqlite" else "SELECT pg_sleep(0.6)")
            conn.execute(sa.text(quick))
    finally:
        db.dispose()


def test_readyz_answers_ready_when_every_check_passes(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok",
                                                      "secret_key": "ok"}}
    assert "retry-after" not in r.headers


def test_readyz_is_503_with_a_key_that_does_not_open_the_stored_secrets(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)  # the demo connection's signing key is sealed with the test key
    wrong_key = "another-key-" + "z" * 30
    wrong = ServiceContext(db=ctx.db, secretbox=SecretBox(wrong_key))
    with make_client(wrong) as client:
        r = client.get("/readyz")
    _assert_retry_later(r)
    body = r.json()
    assert body["failing"] == "secret_key"
    assert body["checks"]["database"] == body["checks"]["schema"] == "ok"
    assert wrong_key not in r.text and TEST_SECRET_KEY not in r.text


def test_readyz_is_503_when_the_schema_is_behind(client: TestClient,
                                                 ctx: ServiceContext) -> None:
    with ctx.db.engine.begin() as conn:
        head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        r = client.get("/readyz")
    finally:
        with ctx.db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    _assert_retry_later(r)
    body = r.json()
    assert body["failing"] == "schema"
    assert "jitprov db upgrade" in body["checks"]["schema"]
    assert body["checks"]["secret_key"] == "not checked"


def test_the_time_limits_come_from_the_environment_and_a_bad_one_is_named() -> None:
    from jitprov.services.context import database_limits
    from jitprov.settings import SettingsError, load_settings

    env = {"JITPROV_SECRET_KEY": TEST_SECRET_KEY, "JITPROV_DB_CONNECT_TIMEOUT": "3",
           "JITPROV_DB_STATEMENT_TIMEOUT": "0", "JITPROV_DB_POOL_TIMEOUT": "2.5"}
    assert database_limits(load_settings(env)) == DatabaseLimits(
        connect_timeout=3, statement_timeout=0, pool_timeout=2.5, busy_timeout=10)
    for name, value in (("JITPROV_DB_POOL_TIMEOUT", "0"), ("JITPROV_DB_BUSY_TIMEOUT", "soon"),
                        ("JITPROV_DB_STATEMENT_TIMEOUT", "-1")):
        with pytest.raises(SettingsError, match=name):
            load_settings({**env, name: value})
