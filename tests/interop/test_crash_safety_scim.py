"""A node dies (SIGKILL) in the middle of a SCIM Bulk load while users log in: nothing is
half-written, the audit chain verifies, the restarted node serves at once, the IdP's re-sent
Bulk requests finish the load (409 for what was already created), and every outbox event
reaches the webhook receiver.

Two real `jitprov dev` processes on one PostgreSQL (the `bench/surge` cluster), as in
test_crash_safety.py; PostgreSQL is required in CI (JITPROV_REQUIRE_POSTGRES=1) and skipped
locally without it. The webhook wait is bounded by the delivery lease: deliveries the dead node
had claimed are sent by the others once their lease (services/webhooks.SEND_LEASE) runs out.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from bench.plain_http import KeptAlive
from bench.surge import SECRET, Login, Node, cluster, signing_key, surge

from jitprov.services import audit_export, webhooks
from jitprov.services.context import build_context
from jitprov.services.scim import tokens as scim_tokens
from jitprov.settings import Settings
from jitprov.store.database import Database, normalise_url
from tests.conftest import _truncate_postgres
from tests.services.test_webhooks import Receiver

pytestmark = pytest.mark.postgres

BULKS = 4
PER_BULK = 100
SCIM_USERS = BULKS * PER_BULK
LOGIN_CLIENTS = 4
KILL_AT = PER_BULK + PER_BULK // 2  # SCIM accounts: the kill lands in the second Bulk request
BULK_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def pg(postgres_url: str) -> Iterator[str]:
    db = Database.connect(postgres_url, pool_size=1)
    _truncate_postgres(db)  # `jitprov dev` seeds the demo tenant again
    db.dispose()
    yield postgres_url


def user_name(n: int) -> str:
    return f"scim-{n}@hospital.example"


def bulk_body(batch: int) -> dict[str, Any]:
    return {"schemas": [BULK_SCHEMA], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": f"u{n}", "data": {
            "schemas": [USER_SCHEMA], "userName": user_name(n), "externalId": f"ext-{n}",
            "name": {"givenName": "Scim", "familyName": f"User {n}"},
            "displayName": f"Scim User {n}",
            "emails": [{"value": user_name(n), "type": "work", "primary": True}],
            "active": True}}
        for n in range(batch * PER_BULK, (batch + 1) * PER_BULK)]}


@dataclass
class BulkClient:
    """The IdP: Bulk requests one after the other to one node; what failed is re-sent later."""

    token: str
    answered: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)

    def send(self, node: Node, batches: list[int]) -> None:
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {self.token}"}) as http:
            for batch in batches:
                try:
                    r = http.post(f"{node.url}/scim/v2/demo/Bulk", json=bulk_body(batch),
                                  headers={"Content-Type": "application/scim+json"})
                except httpx.TransportError:
                    self.failed.append(batch)
                    continue
                assert r.status_code == 200, r.text
                self.answered[batch] = r.json()["Operations"]


class LoginStream:
    """Browsers signing in without pause, each user once, spread over the nodes."""

    def __init__(self, login: Login, nodes: list[Node]) -> None:
        self.login = login
        self.nodes = nodes
        self.next_user = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(LOGIN_CLIENTS)]

    def _run(self) -> None:
        connections = {node.url: KeptAlive(node.url) for node in self.nodes}
        while not self.stopping.is_set():
            with self.lock:
                user, self.next_user = self.next_user, self.next_user + 1
            try:
                self.login(connections[self.nodes[user % len(self.nodes)].url], user)
            except (OSError, RuntimeError) as exc:
                with self.lock:
                    self.errors.append(f"user-{user}: {exc}")
        for connection in connections.values():
            connection.close()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> tuple[list[str], int]:
        """(errors, users that started a login)"""
        self.stopping.set()
        for t in self.threads:
            t.join()
        return self.errors, self.next_user


@contextmanager
def _disposed(db: Database) -> Iterator[Database]:
    """``db``, disposed however the block ends: a failed assertion must not leave its pooled
    connections to the garbage collector (an open psycopg connection collected later fails
    whichever test runs then, with a ResourceWarning)."""
    try:
        yield db
    finally:
        db.dispose()


class Counter:
    """One pooled connection for the polls (an engine per poll would cost more than a login)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(normalise_url(url), pool_size=1)

    def __call__(self, sql: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


def test_a_node_killed_mid_scim_bulk_loses_nothing(pg: str) -> None:
    started = time.monotonic()
    receiver = Receiver()
    count = Counter(pg)
    restarted: Node | None = None
    try:
        with cluster(pg) as nodes, _disposed(Database.connect(pg, pool_size=2)) as db:
            ctx = build_context(Settings(database_url=pg, secret_key=SECRET, dev_mode=True), db)
            ctx.webhook_allow_private = True
            webhooks.add_endpoint(ctx, "demo", receiver.url, ["account.created"])
            _, token = scim_tokens.create_token(ctx, "demo", "entra")
            login = Login(signing_key(pg))
            victim, survivor = nodes
            idp = BulkClient(token)
            killed_at: list[int] = []

            def kill_mid_bulk() -> None:
                deadline = time.monotonic() + 60
                while (time.monotonic() < deadline and count(
                        "SELECT count(*) FROM account WHERE provisioned_by = 'scim'") < KILL_AT):
                    time.sleep(0.02)
                victim.kill()
                killed_at.append(count(
                    "SELECT count(*) FROM account WHERE provisioned_by = 'scim'"))

            logins = LoginStream(login, nodes)
            killer = threading.Thread(target=kill_mid_bulk)
            scim = threading.Thread(target=idp.send, args=(victim, list(range(BULKS))))
            killer.start()
            scim.start()
            # distinct users log in on both nodes meanwhile (half of them on the victim),
            # without pause, until a moment after the kill
            logins.start()
            killer.join()
            time.sleep(0.3)
            errors, login_users = logins.stop()
            scim.join()
            assert victim.proc.returncode == -9
            # the kill hit logins: cut off in flight, or refused by the dead node after it
            # (which of the two depends on where each browser was at the instant; the ones
            # cut off must leave nothing half-written, checked below either way)
            assert errors, "the kill came too late to interrupt any login"
            [at_kill] = killed_at
            assert KILL_AT <= at_kill < SCIM_USERS, "the kill did not land inside the Bulk load"
            assert 1 in idp.failed, "the kill came too late to interrupt a Bulk request"
            assert 0 in idp.answered

            # the node comes back on the same database and serves at once: no recovery step
            t0 = time.monotonic()
            restarted = Node(pg, Path(tempfile.mkdtemp(prefix="jitprov-restart-")))
            came_back = time.monotonic() - t0
            assert came_back < 20, f"the restarted node took {came_back:.1f} s to answer"
            _, again, _ = surge([restarted], login, [login_users], clients=1)
            assert again == []

            # the IdP re-sends what failed, to the restarted node: what the dead node had
            # committed is a 409 (uniqueness), the rest is created now
            resend = sorted(idp.failed)
            idp.failed.clear()
            idp.send(restarted, resend)
            assert idp.failed == []
            statuses = {op["status"] for b in resend for op in idp.answered[b]}
            assert statuses <= {"201", "409"}, statuses
            assert "409" in statuses, "what the dead node committed must not be created twice"
            assert all(op["status"] == "201"
                       for b in range(BULKS) if b not in resend for op in idp.answered[b])
            # users whose login the dead node failed (or never answered) sign in again
            failed = sorted({int(e.split(":")[0].removeprefix("user-")) for e in errors})
            _, again, _ = surge([survivor, restarted], login, failed, clients=4)
            assert again == []

            accounts = SCIM_USERS + login_users + 1
            _wait_for_deliveries(receiver, accounts, count)
    finally:
        if restarted is not None:
            restarted.stop()
        receiver.close()

    try:
        _assert_complete(count, accounts)
    finally:
        count.close()
    db = Database.connect(pg, pool_size=1)
    try:
        [report] = audit_export.verify(build_context(
            Settings(database_url=pg, secret_key=SECRET), db), "demo")
    finally:
        db.dispose()
    assert report.intact, report.problems
    assert len(set(receiver.ids())) == accounts  # every account.created event, once each
    assert time.monotonic() - started < 120


def _assert_complete(count: Counter, accounts: int) -> None:
    assert count("SELECT count(*) FROM account") == accounts
    assert count("SELECT count(DISTINCT email_lower) FROM account") == accounts
    # every SCIM user exactly once, complete (userName, externalId, the SCIM attributes)
    assert count("SELECT count(*) FROM account WHERE provisioned_by = 'scim'") == SCIM_USERS
    assert count("SELECT count(DISTINCT user_name_lower) FROM account "
                 "WHERE provisioned_by = 'scim' AND user_name_lower LIKE 'scim-%'") == SCIM_USERS
    assert count("SELECT count(*) FROM account WHERE provisioned_by = 'scim' AND ("
                 "user_name IS NULL OR scim IS NULL OR external_id IS NULL "
                 "OR email_lower <> user_name_lower "
                 "OR external_id <> 'ext-' || split_part(split_part(user_name, '@', 1), '-', 2) "
                 "OR scim::jsonb -> 'name' ->> 'familyName' IS NULL)") == 0
    # every login account has its identity
    assert count("SELECT count(*) FROM account a WHERE provisioned_by = 'jit' AND NOT EXISTS "
                 "(SELECT 1 FROM identity i WHERE i.account_id = a.id)") == 0
    # every account has exactly one account.created audit event and one outbox event, and no
    # event names an account that is not there
    assert count("SELECT count(*) FROM account a WHERE (SELECT count(*) FROM audit_event e "
                 "WHERE e.type = 'account.created' AND e.account_id = a.id) <> 1") == 0
    assert count("SELECT count(*) FROM account a WHERE (SELECT count(*) FROM outbox_event o "
                 "WHERE o.type = 'account.created' "
                 "AND o.payload::jsonb ->> 'account_id' = a.id) <> 1") == 0
    assert count("SELECT count(*) FROM audit_event WHERE type = 'account.created'") == accounts
    assert count("SELECT count(*) FROM outbox_event WHERE type = 'account.created'") == accounts
    # every delivery went out (none pending, none dead); the receiver has them all, and the
    # sender records each answer right after it (a moment later than the receiver sees it)
    deadline = time.monotonic() + 10
    while count("SELECT count(*) FROM webhook_delivery WHERE status <> 'delivered'") and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert count("SELECT count(*) FROM webhook_delivery WHERE status <> 'delivered'") == 0
    assert count("SELECT count(*) FROM webhook_delivery") == accounts


def _wait_for_deliveries(receiver: Receiver, expected: int, count: Counter) -> None:
    """Until the receiver has every event and every delivery is recorded, while the nodes
    still run: a delivery the dead node had claimed is free again after its lease (60 s at
    most), also one it sent but was killed before recording (the receiver has it already;
    a live node sends it again)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (
            len(set(receiver.ids())) < expected
            or count("SELECT count(*) FROM webhook_delivery WHERE status <> 'delivered'")):
        time.sleep(0.2)
