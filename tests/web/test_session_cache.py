"""The session cache through ``GET /auth/verify`` and ``/me``: a session seen before is
answered from memory (no connection taken from the pool at all: on SQLite while its data
version says nothing was committed since the change counter was read), and every change to
what it shows, made on this node, on another node or by another process, is seen at the next
request (another node's within a second, measured). While the database's notifications are
not received (the listening connection killed, or a transaction pooler in the way) sessions
are read from the database as without a cache."""

from __future__ import annotations

import os
import resource
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.services import accounts, identity_tokens, sessions
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.services.session_cache import SessionCache
from jitprov.store import auth_changes
from jitprov.store.database import Database
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import setup_connection
from jitprov.web.routes.common import SESSION_COOKIE
from tests.conftest import TEST_SECRET_KEY, Clock, fresh_database_url
from tests.web.helpers import HandOffs, make_client, sign_in
from tests.web.scim_helpers import SCIM_JSON, auth, scim_token

JITPROV = str(Path(sys.executable).with_name("jitprov"))


class DatabaseUse:
    """Connections taken from the pool and statements run through SQLAlchemy."""

    def __init__(self, db: Database) -> None:
        self.checkouts = self.statements = 0
        sa.event.listen(db.engine, "checkout", self._checkout)
        sa.event.listen(db.engine, "before_cursor_execute", self._statement)

    def _checkout(self, *_: object) -> None:
        self.checkouts += 1

    def _statement(self, *_: object) -> None:
        self.statements += 1

    def during(self, work: Callable[[], object]) -> tuple[int, int]:
        before = (self.checkouts, self.statements)
        work()
        return self.checkouts - before[0], self.statements - before[1]


def wait_for(cache: SessionCache) -> None:
    """PostgreSQL: until the listener listens and has caught up with this process's writes."""
    cache.start()
    deadline = time.monotonic() + 10
    while not cache.serving:
        assert time.monotonic() < deadline, "the listener did not start"
        time.sleep(0.01)


@pytest.fixture
def cached(ctx: ServiceContext) -> Iterator[ServiceContext]:
    setup_connection(ctx)
    ctx.session_cache = SessionCache(ctx.db)
    yield ctx
    ctx.session_cache.stop()


@pytest.fixture
def client(cached: ServiceContext) -> Iterator[TestClient]:
    with make_client(cached) as c:
        yield c


def test_a_session_seen_before_is_answered_from_memory(
        client: TestClient, cached: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """From memory, on the event loop itself: no worker thread is woken for the session or
    the identity token (a hand-off costs more CPU than the answer)."""
    assert cached.session_cache is not None
    # the signing key stays in memory however slow this machine (else a token reads it)
    monkeypatch.setattr(identity_tokens, "KEY_CACHE_SECONDS", 3600.0)
    sign_in(client)
    use = DatabaseUse(cached.db)
    if cached.session_cache.shared:
        wait_for(cached.session_cache)
    first = client.get("/auth/verify")  # (the first identity token makes a signing key)
    assert first.status_code == 200
    assert client.get("/me/token").status_code == 200
    assert len(cached.session_cache) == 1
    if cached.session_cache.shared:
        wait_for(cached.session_cache)  # (after that write's notifications)
    hand_offs = HandOffs(monkeypatch)
    for _ in range(5):
        checkouts, statements = use.during(lambda: client.get("/auth/verify"))
        assert (checkouts, statements) == (0, 0)  # not even a pool checkout
    token = client.get("/me/token")
    assert token.status_code == 200
    assert token.json()["token"] == first.headers["x-jitprov-token"]  # handed out again
    assert hand_offs.calls == []
    again = client.get("/auth/verify")
    assert {k: v for k, v in again.headers.items() if k.startswith("x-jitprov-")
            and k != "x-jitprov-token"} == {k: v for k, v in first.headers.items()
                                            if k.startswith("x-jitprov-")
                                            and k != "x-jitprov-token"}
    assert client.get("/me").json()["roles"] == ["nurse", "staff"]


def test_other_peoples_logins_leave_a_signed_in_session_in_memory(
        client: TestClient, cached: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """While others sign in (first logins, a returning one), a signed-in person's next
    ``/auth/verify`` is still answered from memory on the event loop: no worker thread, no
    connection from the pool (on SQLite, after a commit, the change counter is read again on
    the data version's own connection, and those logins did not move it). A role granted to
    that person is still seen at their next request."""
    cache = cached.session_cache
    assert cache is not None
    monkeypatch.setattr(identity_tokens, "KEY_CACHE_SECONDS", 3600.0)
    sign_in(client)
    if cache.shared:
        wait_for(cache)
    assert client.get("/auth/verify").status_code == 200  # (fills the entry)
    assert len(cache) == 1
    use = DatabaseUse(cached.db)
    token = client.cookies.get(SESSION_COOKIE)
    for person in ("ben", "cleo", "ben"):  # two first logins, then ben returning
        client.cookies.clear()  # another browser (on the same app: one node)
        sign_in(client, email=f"{person}@hospital.example", sub=f"{person}-sub")
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, token)
        if cache.shared:
            wait_for(cache)  # (PostgreSQL: after the notifications of those writes)
        hand_offs = HandOffs(monkeypatch)
        checkouts, _ = use.during(lambda: client.get("/auth/verify"))
        assert (checkouts, hand_offs.calls) == (0, []), person
    account_id = client.get("/me").json()["id"]
    accounts.grant_role(cached, "hospital", account_id, "pharmacist", reason="cover",
                        actor="admin:ops")
    if cache.shared:
        wait_for(cache)
    assert "pharmacist" in client.get("/auth/verify").headers["x-jitprov-roles"]


def _verify_roles(client: TestClient) -> tuple[int, str | None]:
    r = client.get("/auth/verify")
    return r.status_code, r.headers.get("x-jitprov-roles")


@pytest.mark.parametrize("change", ["logout", "deactivate", "revoke_role", "grant_role",
                                    "scim_deactivate", "session_expiry"])
def test_a_change_on_this_node_is_seen_at_the_next_request(
        client: TestClient, cached: ServiceContext, clock: Clock, change: str) -> None:
    assert cached.session_cache is not None
    sign_in(client)
    account_id = client.get("/me").json()["id"]
    token = scim_token(cached) if change == "scim_deactivate" else ""
    if cached.session_cache.shared:
        wait_for(cached.session_cache)
    assert _verify_roles(client) == (200, "nurse,staff")
    assert _verify_roles(client) == (200, "nurse,staff")  # (from memory)
    assert len(cached.session_cache) == 1
    if change == "logout":
        assert client.post("/logout").status_code in (200, 303)
    elif change == "deactivate":
        accounts.set_account_status(cached, account_id, "deactivated", reason="left")
    elif change == "revoke_role":
        accounts.revoke_role(cached, "hospital", account_id, "staff", reason="moved",
                             actor="admin:ops", block=True)
    elif change == "grant_role":
        accounts.grant_role(cached, "hospital", account_id, "pharmacist", reason="cover",
                            actor="admin:ops")
    elif change == "scim_deactivate":
        users = client.get("/scim/v2/hospital/Users", headers=auth(token)).json()
        (person,) = users["Resources"]
        r = client.patch(f"/scim/v2/hospital/Users/{person['id']}", headers={
            **auth(token), "Content-Type": SCIM_JSON}, json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}]})
        assert r.status_code == 200, r.text
    else:
        clock.advance(hours=13)  # past the session's lifetime
    expected = {"logout": (401, None), "deactivate": (401, None), "scim_deactivate": (401, None),
                "session_expiry": (401, None), "revoke_role": (200, "nurse"),
                "grant_role": (200, "nurse,pharmacist,staff")}[change]
    assert _verify_roles(client) == expected


@pytest.fixture
def other_node(cached: ServiceContext, database_url: str) -> Iterator[ServiceContext]:
    """A second node on the same database: its own engine, no shared memory."""
    node = ServiceContext(db=Database.connect(database_url, pool_size=2),
                          secretbox=SecretBox(TEST_SECRET_KEY), clock=cached.clock)
    yield node
    node.db.dispose()


def _signed_in_on_sqlite(client: TestClient,
                         cached: ServiceContext) -> tuple[SessionCache, str, str | None]:
    """SQLite's cache (else the test is skipped), a person signed in: (the cache, their
    account id, their session cookie)."""
    cache = cached.session_cache
    assert cache is not None
    if cache.shared:
        pytest.skip("SQLite's counter")
    sign_in(client)
    return cache, client.get("/me").json()["id"], client.cookies.get(SESSION_COOKIE)


def test_on_sqlite_a_moved_counter_read_on_the_loop_drops_the_entries(
        client: TestClient, cached: ServiceContext, other_node: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After another node's commit the counter is read on the event loop; moved (a role
    revoked), every entry is dropped there, and the request reads the database in a thread
    and sees the change. The counter of a reopened data-version connection is not trusted:
    its data version may count from a new start."""
    cache, account_id, token = _signed_in_on_sqlite(client, cached)
    assert "staff" in client.get("/auth/verify").headers["x-jitprov-roles"]
    assert len(cache) == 1
    accounts.revoke_role(other_node, "hospital", account_id, "staff", reason="moved",
                         actor="admin:ops", block=True)
    caught_up, calls = cache.caught_up, []

    def recorded(seen: tuple[int, int] | None) -> bool:
        answer = caught_up(seen)
        calls.append((answer, len(cache)))
        return answer

    monkeypatch.setattr(cache, "caught_up", recorded)
    hand_offs = HandOffs(monkeypatch)
    assert "staff" not in client.get("/auth/verify").headers["x-jitprov-roles"]
    assert calls == [(True, 0)]  # on the loop: the counter moved, the entries dropped
    assert hand_offs.calls[0] == "current_session"  # then the database, in a thread
    assert sessions.remembered_session(cached, token) is not None  # (filled again)
    version = auth_changes.DataVersion(cached.db.engine)
    first = version.read()
    assert first is not None and version.counter(first) is not None
    version.close()
    again = version.read()  # a new connection: its values count again
    assert again is not None and version.counter(first) is None
    assert version.counter(again) is not None
    version.close()


@pytest.mark.parametrize("change", ["deactivate", "revoke_role"])
def test_a_change_on_another_node_is_seen_within_a_second(
        client: TestClient, cached: ServiceContext, other_node: ServiceContext,
        change: str) -> None:
    assert cached.session_cache is not None
    sign_in(client)
    account_id = client.get("/me").json()["id"]
    if cached.session_cache.shared:
        wait_for(cached.session_cache)
    assert _verify_roles(client) == (200, "nurse,staff")
    assert len(cached.session_cache) == 1
    started = time.monotonic()
    if change == "deactivate":
        accounts.set_account_status(other_node, account_id, "deactivated", reason="left")
        expected: tuple[int, str | None] = (401, None)
    else:
        accounts.revoke_role(other_node, "hospital", account_id, "staff", reason="moved",
                             actor="admin:ops", block=True)
        expected = (200, "nurse")
    while (seen := _verify_roles(client)) != expected:
        assert seen == (200, "nurse,staff")  # the old answer until the notification, no other
        assert time.monotonic() - started < 1.0, "not seen within a second"
        time.sleep(0.005)
    if not cached.session_cache.shared:  # SQLite: the counter makes it the very next request
        assert time.monotonic() - started < 1.0


def test_on_sqlite_a_change_synced_by_another_request_mid_read_is_not_kept(
        client: TestClient, cached: ServiceContext, other_node: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Request A reads the counter, then (before its fill) another process deactivates the
    account and request B syncs the newer counter: A answers from its own snapshot, but its
    fill is not kept, so the next request is refused."""
    cache, account_id, token = _signed_in_on_sqlite(client, cached)
    assert client.get("/auth/verify").status_code == 200
    cache.clear()  # the session not held (past its entry's lifetime)
    confirm, raced = cache.confirm, []

    def confirm_then_race(seen: tuple[int, int] | None, version: int) -> None:
        confirm(seen, version)
        if not raced:  # request A, right after its counter was compared
            raced.append(True)
            accounts.set_account_status(other_node, account_id, "deactivated", reason="left")
            assert sessions.current_session(cached, "another-cookie") is None  # request B

    monkeypatch.setattr(cache, "confirm", confirm_then_race)
    assert sessions.current_session(cached, token) is not None  # A, from its snapshot
    monkeypatch.setattr(cache, "confirm", confirm)
    assert raced and sessions.remembered_session(cached, token) is None
    assert client.get("/auth/verify").status_code == 401


def test_a_change_by_the_cli_in_another_process_is_seen(
        client: TestClient, cached: ServiceContext, database_url: str, tmp_path: Path) -> None:
    assert cached.session_cache is not None
    sign_in(client)
    account_id = client.get("/me").json()["id"]
    if cached.session_cache.shared:
        wait_for(cached.session_cache)
    assert client.get("/auth/verify").status_code == 200
    done = subprocess.run([JITPROV, "users", "deactivate", account_id, "--reason", "left",
                           "--database-url", database_url],
                          env={**os.environ, "JITPROV_SECRET_KEY": TEST_SECRET_KEY},
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    if not cached.session_cache.shared:  # SQLite: the data version moved, the very next one
        assert client.get("/auth/verify").status_code == 401
    deadline = time.monotonic() + 1.0
    while client.get("/auth/verify").status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.005)


@pytest.mark.postgres
def test_an_idle_listener_sleeps_until_this_process_commits(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener waits in one ``poll`` between heartbeats (no polling: an idle node
    costs nothing), and a commit of this process wakes it at once, so the cache serves again
    right after its notifications are echoed, not at the next heartbeat."""
    if ctx.db.dialect != "postgresql" or ctx.db.pooling.on:
        pytest.skip("the listener of PostgreSQL, on a direct connection")
    monkeypatch.setattr(auth_changes, "HEARTBEAT", 30.0)  # only a commit can wake it soon
    waits: list[int] = []

    class CountedPoll:
        def __init__(self) -> None:
            self._poll = select.poll()
            self.register = self._poll.register

        def poll(self, timeout_ms: int) -> list[tuple[int, int]]:
            waits.append(timeout_ms)
            return self._poll.poll(timeout_ms)

    monkeypatch.setattr(auth_changes, "select",
                        SimpleNamespace(poll=CountedPoll, POLLIN=select.POLLIN))
    setup_connection(ctx)
    cache = ctx.session_cache = SessionCache(ctx.db)
    try:
        wait_for(cache)
        time.sleep(0.5)
        # one wait (a wake-up while starting: two), as long as the heartbeat: no poll loop
        assert 1 <= len(waits) <= 2 and max(waits) > 10_000
        with UnitOfWork(ctx.db) as uow:  # a write transaction of this process
            uow.commit()
        assert not cache.serving  # this process's write, not yet echoed
        deadline = time.monotonic() + 10
        while not cache.serving:
            assert time.monotonic() < deadline, "the commit did not wake the listener"
            time.sleep(0.005)
    finally:
        cache.stop()


@pytest.mark.postgres
def test_a_listener_whose_descriptors_pass_1024_still_serves(ctx: ServiceContext) -> None:
    """A busy worker holds many sockets (kept-alive proxy connections): the listener's own
    connection and wake-up then get descriptors past 1024, which ``select`` refuses."""
    if ctx.db.dialect != "postgresql" or ctx.db.pooling.on:
        pytest.skip("the listener of PostgreSQL, on a direct connection")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("this machine allows fewer than 1,200 descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    setup_connection(ctx)
    cache = ctx.session_cache = SessionCache(ctx.db)
    try:
        wait_for(cache)
        listener = cache._listener
        assert listener is not None and listener._wake_r.fileno() > 1024
        with UnitOfWork(ctx.db) as uow:  # a commit: echoed, then it serves again
            uow.commit()
        wait_for(cache)
        time.sleep(0.3)
        assert cache.serving
    finally:
        cache.stop()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.postgres
def test_without_notifications_sessions_are_read_from_the_database(
        request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="jitprov.session_cache")
    url = fresh_database_url("postgresql", request, tmp_path, sqlite_template)
    db = Database.connect(url, pool_size=2)
    node = ServiceContext(db=db, secretbox=SecretBox(TEST_SECRET_KEY), clock=Clock())
    other = ServiceContext(db=Database.connect(url, pool_size=2),
                           secretbox=SecretBox(TEST_SECRET_KEY), clock=node.clock)
    setup_connection(node)
    cache = node.session_cache = SessionCache(db)
    try:
        with make_client(node) as client:
            sign_in(client)
            account_id = client.get("/me").json()["id"]
            assert _verify_roles(client) == (200, "nurse,staff")  # (and a signing key)
            wait_for(cache)
            assert _verify_roles(client) == (200, "nurse,staff")
            use = DatabaseUse(db)
            assert use.during(lambda: client.get("/auth/verify")) == (0, 0)
            with db.engine.connect() as conn:  # the listening connection dies
                killed = conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'jitprov-auth-listener'")).scalars().all()
            assert killed == [True]
            deadline = time.monotonic() + 5
            while cache.serving:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            # while nothing is received, a change elsewhere is seen at once: read, not cached
            accounts.revoke_role(other, "hospital", account_id, "staff", reason="moved",
                             actor="admin:ops", block=True)
            if not cache.serving:
                checkouts, _ = use.during(lambda: client.get("/auth/verify"))
                assert checkouts == 1
            assert _verify_roles(client) == (200, "nurse")
            wait_for(cache)  # it listens again (a second later) and serves from memory
            assert _verify_roles(client) == (200, "nurse")
            assert use.during(lambda: client.get("/auth/verify")) == (0, 0)
        logged = [r.msg for r in caplog.records if r.name == "jitprov.session_cache"]
        assert [m["event"] for m in logged if isinstance(m, dict)] == [
            "session_cache_off", "session_cache_on"]
    finally:
        cache.stop()
        other.db.dispose()
        db.dispose()


@pytest.mark.postgres
def test_through_a_transaction_pooler_the_cache_stays_off(
        request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    url = fresh_database_url("pgbouncer", request, tmp_path, sqlite_template)
    db = Database.connect(url, pool_size=2, pooling="on")
    node = ServiceContext(db=db, secretbox=SecretBox(TEST_SECRET_KEY), clock=Clock())
    setup_connection(node)
    cache = node.session_cache = SessionCache(db)
    try:
        with make_client(node) as client, caplog.at_level("INFO"):
            sign_in(client)
            assert client.get("/auth/verify").status_code == 200  # (and a signing key)
            use = DatabaseUse(db)
            for _ in range(3):
                checkouts, _ = use.during(lambda: client.get("/auth/verify"))
                assert checkouts == 1
            assert not cache.serving and len(cache) == 0
        assert "transaction pooler" in caplog.text
        assert caplog.text.count("session_cache_off") == 1
    finally:
        db.dispose()


def test_a_shared_device_session_is_never_kept_and_still_locks_when_idle(
        client: TestClient, cached: ServiceContext, clock: Clock) -> None:
    """A device session's idle lock is a clock and each request may move it: read at every
    request, never cached."""
    from tests.web.test_devices_routes import enrol_passkey, kiosk, tap

    assert cached.session_cache is not None
    sign_in(client)
    key = enrol_passkey(client)
    client.cookies.clear()
    kiosk(client, cached)
    assert tap(client, key, prefix="/device/passkey").status_code == 200
    if cached.session_cache.shared:
        wait_for(cached.session_cache)
    for _ in range(3):
        assert client.get("/auth/verify").status_code == 200
    assert len(cached.session_cache) == 0
    clock.advance(minutes=6)  # past the default idle lock of 5 minutes
    assert client.get("/auth/verify").status_code == 401


@pytest.mark.parametrize(("value", "on"), [("", True), ("on", True), ("off", False)])
def test_the_cache_is_on_unless_the_setting_says_off(value: str, on: bool) -> None:
    from jitprov.settings import load_operations

    assert load_operations({"JITPROV_SESSION_CACHE": value}).session_cache is on
