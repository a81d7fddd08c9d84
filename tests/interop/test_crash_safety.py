"""A node dies (SIGKILL) in the middle of a login surge: nothing is half-written, the audit
chain verifies, the users it failed log in on the other node with one account each, and every
outbox event still reaches the webhook receiver.

Two real `jitprov dev` processes on one PostgreSQL (the `bench/surge` cluster); PostgreSQL is
required in CI (JITPROV_REQUIRE_POSTGRES=1) and skipped locally without it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from bench.surge import SECRET, Login, cluster, signing_key, surge

from jitprov.services import webhooks
from jitprov.services.context import build_context
from jitprov.settings import Settings
from jitprov.store.database import Database, normalise_url
from tests.conftest import _truncate_postgres
from tests.services.test_webhooks import Receiver

pytestmark = pytest.mark.postgres

USERS = 240


@pytest.fixture
def pg(postgres_url: str) -> Iterator[str]:
    db = Database.connect(postgres_url, pool_size=1)
    _truncate_postgres(db)  # `jitprov dev` seeds the demo tenant again
    db.dispose()
    yield postgres_url


def count(url: str, sql: str) -> int:
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_a_node_killed_mid_surge_loses_nothing(pg: str) -> None:
    receiver = Receiver()
    try:
        with cluster(pg) as nodes:
            db = Database.connect(pg, pool_size=1)
            ctx = build_context(Settings(database_url=pg, secret_key=SECRET, dev_mode=True), db)
            ctx.webhook_allow_private = True
            webhooks.add_endpoint(ctx, "demo", receiver.url, ["account.created"])
            login = Login(signing_key(pg))
            victim, survivor = nodes

            def kill_when_busy() -> None:
                deadline = time.monotonic() + 60
                while (time.monotonic() < deadline
                       and count(pg, "SELECT count(*) FROM account") < USERS // 4):
                    time.sleep(0.05)
                victim.kill()

            killer = threading.Thread(target=kill_when_busy)
            killer.start()
            _, errors, _ = surge(nodes, login, range(USERS), clients=8)
            killer.join()
            assert victim.proc.returncode == -9
            assert errors, "the kill came too late to interrupt anything"
            # users whose login the dead node failed (or whose answer it never sent) retry
            failed = sorted({int(e.split(":")[0].removeprefix("user-")) for e in errors})
            _, again, _ = surge([survivor], login, failed, clients=4)
            assert again == []
            _wait_for_deliveries(receiver, USERS)
            db.dispose()
    finally:
        receiver.close()
    assert count(pg, "SELECT count(*) FROM account") == USERS
    assert count(pg, "SELECT count(DISTINCT email_lower) FROM account") == USERS
    assert count(pg, "SELECT count(*) FROM account a WHERE NOT EXISTS "
                     "(SELECT 1 FROM identity i WHERE i.account_id = a.id)") == 0
    assert count(pg, "SELECT count(*) FROM audit_event "
                     "WHERE type = 'account.created'") == USERS
    db = Database.connect(pg, pool_size=1)
    try:
        from jitprov.services import audit_export

        [report] = audit_export.verify(build_context(
            Settings(database_url=pg, secret_key=SECRET), db), "demo")
    finally:
        db.dispose()
    assert report.intact, report.problems
    assert len(set(receiver.ids())) == USERS  # every account.created event, once each


def _wait_for_deliveries(receiver: Receiver, expected: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(set(receiver.ids())) < expected:
        time.sleep(0.2)

