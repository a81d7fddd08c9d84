"""GET /auth/verify in-process (the ASGI app through Starlette's test client, whose own cost is
included): session lookup, roles, identity headers and the signed token, per request; on
SQLite and PostgreSQL, with the session cache (as ``serve`` runs) and without it. Database use
per request is counted (pool checkouts, statements). Then the cache's correctness cost: from a
deactivation on another node (another engine on the same database) to the first request this
node refuses."""

from __future__ import annotations

import asyncio
import statistics
import time

import sqlalchemy as sa
from starlette.testclient import TestClient

from bench.demo_app import client_of, demo_app, sign_in
from bench.oidc import _measure
from bench.provision import databases
from bench.scim import asgi_call
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
                    rows += _while_others_sign_in(ctx, client, db_name, ops)
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


#: requests of signed-in people per first login of someone else
EVERY = 5
#: the people signed in whose apps ask, one after the other
SIGNED_IN = 50


def _while_others_sign_in(ctx: ServiceContext, client: TestClient, db_name: str,
                          ops: int) -> list[dict[str, object]]:
    """``/auth/verify`` of :data:`SIGNED_IN` signed-in people in turn, each request one call
    of the ASGI app on an event loop of this thread (no test client: its own cost would hide
    the difference), alone, then while other people sign in for the first time (one every
    :data:`EVERY` requests, in another browser, not measured). CPU counts every thread of
    the process."""
    app = client.app
    others = client_of(ctx)  # other browsers: cookies of their own
    signed_in = []  # the people whose apps ask, in turn
    for n in range(SIGNED_IN):
        sign_in(others, f"signed-in-{db_name}-{n}@b.example")
        signed_in.append("; ".join(f"{k}={v}" for k, v in others.cookies.items()).encode())

    async def rounds(arrivals: bool) -> dict[str, object]:
        latencies: list[float] = []
        cpu = 0.0
        wall0 = time.perf_counter()
        for n in range(ops):
            if arrivals and n % EVERY == 0:  # (the test client runs on a loop of its own)
                await asyncio.to_thread(sign_in, others, f"arrival-{db_name}-{n}@b.example")
            cpu0, t0 = time.process_time(), time.perf_counter()
            cookie = signed_in[n % SIGNED_IN]
            status, _, _ = await asgi_call(app, "GET", "/auth/verify",
                                           [(b"host", b"testserver"), (b"cookie", cookie)])
            cpu += time.process_time() - cpu0
            latencies.append(time.perf_counter() - t0)
            assert status == 200, status
        latencies.sort()
        label = (f"while others sign in (a first login every {EVERY} requests)" if arrivals
                 else "alone")
        return {"scenario": f"forward-auth in process (ASGI calls), session cache, {label}",
                "db": db_name, "clients": 1, "ops": ops,
                "ops_per_s": ops / (time.perf_counter() - wall0),
                "cpu_ms_per_op": cpu / ops * 1000,
                "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[max(0, int(ops * 0.99) - 1)] * 1000}

    async def both() -> list[dict[str, object]]:
        for cookie in signed_in:  # warm: this loop's first calls, each person's entry
            await asgi_call(app, "GET", "/auth/verify",
                            [(b"host", b"testserver"), (b"cookie", cookie)])
        return [await rounds(False), await rounds(True)]

    return asyncio.run(both())


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
