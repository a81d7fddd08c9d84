"""GET /auth/verify in-process (the ASGI app through Starlette's test client, whose own cost is
included): session lookup, roles, identity headers and the signed token, per request; on
SQLite and PostgreSQL, with the session cache (as ``serve`` runs) and without it. Database use
per request is counted (pool checkouts, statements). Then the cache's correctness cost: from a
deactivation on another node (another engine on the same database) to the first request this
node refuses."""

from __future__ import annotations

import statistics
import time

import sqlalchemy as sa
from starlette.testclient import TestClient

from bench.demo_app import client_of, demo_app, sign_in
from bench.oidc import _measure
from bench.provision import databases
from jitprov.services import accounts
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.services.session_cache import SessionCache
from jitprov.store.database import Database


class _Use:
    def __init__(self, db: Database) -> None:
        self.checkouts = self.statements = 0
        sa.event.listen(db.engine, "checkout", self._checkout)
        sa.event.listen(db.engine, "before_cursor_execute", self._statement)

    def _checkout(self, *_: object) -> None:
        self.checkouts += 1

    def _statement(self, *_: object) -> None:
        self.statements += 1


def _serving(ctx: ServiceContext, client: TestClient) -> None:
    """Until the cache serves (PostgreSQL: its listener caught up with this node's writes)."""
    cache = ctx.session_cache
    if cache is None:
        return
    deadline = time.monotonic() + 10
    client.get("/auth/verify")
    while cache.shared and not cache.serving:
        assert time.monotonic() < deadline, "the session cache did not start"
        time.sleep(0.01)
    client.get("/auth/verify")  # (fills the entry)


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        ctx, _ = demo_app(url)
        for cached in (False, True):
            ctx.session_cache = SessionCache(ctx.db) if cached else None
            with client_of(ctx) as client:
                sign_in(client, "a@b.example")
                assert client.get("/auth/verify").status_code == 200
                _serving(ctx, client)
                use = _Use(ctx.db)
                row = _measure(lambda n: client.get("/auth/verify"), range(ops))
                label = "session cache" if cached else "no cache"
                rows.append({"scenario": f"forward-auth, signed in (200 + token), {label}: "
                                         f"{use.checkouts / ops:.3g} pool checkouts and "
                                         f"{use.statements / ops:.3g} statements per request",
                             "db": db_name, "clients": 1, **row,
                             "db_checkouts_per_op": round(use.checkouts / ops, 3),
                             "db_statements_per_op": round(use.statements / ops, 3)})
                if cached:
                    rows.append(_revocation(ctx, client, url, db_name, rounds=min(ops, 50)))
                elif db_name == "sqlite":
                    client.cookies.clear()
                    rows.append({"scenario": "forward-auth, anonymous (401)", "db": db_name,
                                 "clients": 1, **_measure(lambda n: client.get("/auth/verify"),
                                                          range(ops))})
                    probe = _measure(lambda n: client.get("/healthz"), range(ops))
                    rows.append({"scenario": "test-client floor (GET /healthz)", "db": "-",
                                 "clients": 1, **probe})
            if ctx.session_cache is not None:
                ctx.session_cache.stop()
        ctx.db.dispose()
        ctx.http.close()
        cleanup()
    return rows


def _revocation(ctx: ServiceContext, client: TestClient, url: str, db_name: str, *,
                rounds: int) -> dict[str, object]:
    """Deactivate on another node, poll this node's cached /auth/verify until refused."""
    other = ServiceContext(db=Database.connect(url, pool_size=2), secretbox=SecretBox("bench"))
    samples: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        for n in range(rounds):
            sign_in(client, f"revoked{n}@b.example")
            account_id = client.get("/me").json()["id"]
            _serving(ctx, client)
            samples.append(_until_refused(client, other, account_id))
    finally:
        other.db.dispose()
        other.http.close()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    samples.sort()
    return {"scenario": "session cache: deactivated on another node -> first refused request "
                        "here (one op: sign in, deactivate there, poll here)",
            "db": db_name, "clients": 1, "ops": len(samples),
            "ops_per_s": len(samples) / wall, "cpu_ms_per_op": cpu / len(samples) * 1000,
            "p50_ms": statistics.median(samples) * 1000,
            "p99_ms": samples[max(0, int(len(samples) * 0.99) - 1)] * 1000,
            "max_ms": samples[-1] * 1000}


def _until_refused(client: TestClient, other: ServiceContext, account_id: str) -> float:
    t0 = time.perf_counter()
    accounts.set_account_status(other, account_id, "deactivated", reason="bench",
                                actor="bench")
    while client.get("/auth/verify").status_code != 401:
        if time.perf_counter() - t0 > 5:
            raise AssertionError("a deactivation on another node was not seen within 5 s")
    return time.perf_counter() - t0
