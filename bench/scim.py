"""The SCIM server in-process, through the whole ASGI app (routing, bearer token, body limit,
parsing, one transaction with audit and outbox, rendering), SQLite and PostgreSQL:

- ``POST /Users``: users created per second, 1 client and 16 concurrent clients (asyncio
  tasks on the app, database work in its threadpool), CPU ms per POST (this process); on
  PostgreSQL also its backends' CPU and their lock wait per POST by kind (sampled from
  ``pg_stat_activity``, as ``bench/surge.py`` does: the tenant's audit chain head);
- ``GET /Users?filter=userName eq "..."`` p50/p99 at 100,000 users (the store's data
  generator, ``bench/scim_store.populate``);
- ``PATCH /Groups/{id}`` adding 100 members, to an empty group and to one of 50,000.

``python -m bench --only scim`` (or ``python -m bench.scim [--profile]`` for a cProfile of the
POST path). CPU for PostgreSQL excludes the server's own.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bench.provision import databases
from bench.scim_store import BIG_GROUP, populate
from bench.surge import PostgresBackends
from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store import tables as t
from jitprov.store.database import Database
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.web.app import create_app

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LOOKUP_USERS = 100_000


def user_body(n: int) -> bytes:
    """What Entra sends for a new user (about 600 bytes)."""
    return json.dumps({
        "schemas": [USER, ENTERPRISE], "externalId": f"00u{n:08d}",
        "userName": f"nurse{n}@hospital.example", "active": True,
        "displayName": f"Nurse {n}", "name": {"givenName": "Nurse", "familyName": f"N{n}",
                                              "formatted": f"Nurse N{n}"},
        "emails": [{"value": f"nurse{n}@hospital.example", "type": "work", "primary": True}],
        "title": "Staff Nurse",
        ENTERPRISE: {"department": "Ward 3", "employeeNumber": str(n)}}).encode()


async def asgi_call(app: Any, method: str, target: str, headers: list[tuple[bytes, bytes]],
                    body: bytes = b"") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through the ASGI app in this process (no socket, no HTTP client):
    (status, the response's headers as sent, body). ``headers`` carry the Host."""
    path, _, query = target.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "",
             "headers": [*headers, (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("bench", 80)}
    sent = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return (messages[0]["status"], messages[0].get("headers", []),
            b"".join(m.get("body", b"") for m in messages[1:]))


class InProcess:
    """A SCIM client calling the ASGI app directly: no sockets, no HTTP client in the
    measurement."""

    def __init__(self, app: Any, token: str, tenant: str = "bench") -> None:
        self.app = app
        self.base = f"/scim/v2/{tenant}"
        self.headers = [(b"authorization", f"Bearer {token}".encode()),
                        (b"content-type", b"application/scim+json"), (b"host", b"bench")]

    async def __call__(self, method: str, path: str, body: bytes = b"",
                       query: str = "") -> tuple[int, bytes]:
        target = self.base + path + (f"?{query}" if query else "")
        status, _, out = await asgi_call(self.app, method, target, self.headers, body)
        return status, out


def _stats(latencies: list[float], ops: int, cpu: float, wall: float) -> dict[str, float]:
    latencies.sort()
    return {"ops": ops, "ops_per_s": ops / wall, "cpu_ms_per_op": cpu / ops * 1000,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000}


async def _measure(fn: Callable[[int], Awaitable[None]], ops: int,
                   clients: int) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(ops))

    async def worker() -> None:
        for n in counter:
            t0 = time.perf_counter()
            await fn(n)
            latencies.append(time.perf_counter() - t0)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return _stats(latencies, ops, time.process_time() - cpu0, time.perf_counter() - wall0)


def _context(url: str) -> tuple[ServiceContext, Any, str]:
    db = Database.connect(url, pool_size=20)
    db.upgrade()
    ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
    settings = Settings(base_url="http://bench", secret_key="bench")
    return ctx, create_app(settings, ctx=ctx), "bench"


async def _post_users(client: InProcess, ops: int, start: int,
                      clients: int) -> dict[str, float]:
    bodies = [user_body(start + n) for n in range(ops)]

    async def post(n: int) -> None:
        status, out = await client("POST", "/Users", bodies[n])
        if status != 201:
            raise RuntimeError(f"POST /Users: {status} {out[:200]!r}")

    return await _measure(post, ops, clients)


async def _bench_db(db_name: str, url: str, ops: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    ctx, app, _ = _context(url)
    now = datetime.now(UTC)
    # 100,000 users from the store's generator (tenant "bench"), then the SCIM client
    tenant_id, ids = populate(ctx.db, LOOKUP_USERS, now)
    token = scim_tokens.create_token(ctx, "bench", "bench")[1]
    client = InProcess(app, token)
    await _post_users(client, 50, 10_000_000, 1)  # warm: caches, pool, statements
    for clients in (1, 16):
        start = 20_000_000 + clients * ops
        database: dict[str, object] = {}
        if db_name != "postgresql":
            figures = await _post_users(client, ops, start, clients)
        else:  # the backends' CPU, and what they waited for (the tenant's audit chain head)
            with PostgresBackends(url) as backends:
                figures = await _post_users(client, ops, start, clients)
            database = {"postgres_cpu_ms_per_op": backends.cpu() / ops * 1000,
                        "lock_wait_ms_per_op": {
                            kind: seconds / ops * 1000
                            for kind, seconds in backends.lock_wait_seconds().items()}}
        rows.append({"scenario": "POST /Users (Entra-shaped user)", "db": db_name,
                     "clients": clients, **figures, **database})

    rng = random.Random(7)
    scim_n = [n for n in range(LOOKUP_USERS) if n % 10 != 9]

    async def lookup(_: int) -> None:
        query = f'filter=userName+eq+"user{rng.choice(scim_n)}"'
        status, out = await client("GET", "/Users", query=query)
        if status != 200 or b'"totalResults":1' not in out:
            raise RuntimeError(f"GET /Users: {status} {out[:200]!r}")

    await lookup(0)
    rows.append({"scenario": f"GET userName eq, {LOOKUP_USERS:,} users", "db": db_name,
                 "clients": 1, **await _measure(lookup, min(ops, 1000), 1)})

    # groups: PATCH add 100 members to an empty group and to one of 50,000
    with UnitOfWork(ctx.db) as uow:
        empty = uow.scim.groups.create_group(tenant_id, display_name="empty",
                                             external_id=None, now=now)
        big = uow.scim.groups.create_group(tenant_id, display_name="big", external_id=None,
                                           now=now)
        uow.commit()
    with ctx.db.engine.begin() as conn:
        conn.execute(t.scim_group_member.insert(), [
            {"group_id": big.id, "account_id": a, "created_at": now}
            for a in ids[:BIG_GROUP]])
    spare = ids[BIG_GROUP:]
    rng.shuffle(spare)
    batches = iter([spare[i:i + 100] for i in range(0, len(spare), 100)])

    def add_members(group_id: str) -> Callable[[int], Awaitable[None]]:
        async def run(_: int) -> None:
            body = json.dumps({"schemas": [PATCH], "Operations": [
                {"op": "add", "path": "members",
                 "value": [{"value": a} for a in next(batches)]}]}).encode()
            status, out = await client("PATCH", f"/Groups/{group_id}", body)
            if status != 204:
                raise RuntimeError(f"PATCH /Groups: {status} {out[:200]!r}")
        return run

    runs = min(ops, 100)
    small = await _measure(add_members(empty.id), runs, 1)
    large = await _measure(add_members(big.id), runs, 1)
    rows.append({"scenario": "PATCH add 100 members, empty group", "db": db_name,
                 "clients": 1, **small})
    rows.append({"scenario": f"PATCH add 100 members, group of {BIG_GROUP:,}",
                 "db": db_name, "clients": 1, **large})
    ctx.db.dispose()
    return rows


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        try:
            rows += asyncio.run(_bench_db(db_name, url, ops))
        finally:
            cleanup()
    return rows


def profile(ops: int = 2000) -> None:
    """cProfile of sequential POST /Users on SQLite, the 25 costliest functions."""
    import cProfile
    import pstats
    import tempfile

    url = f"sqlite:///{tempfile.mkdtemp(prefix='jitprov-bench-')}/scim.db"
    ctx, app, _ = _context(url)
    admin.create_tenant(ctx, "bench")
    client = InProcess(app, scim_tokens.create_token(ctx, "bench", "bench")[1])
    asyncio.run(_post_users(client, 50, 0, 1))
    profiler = cProfile.Profile()
    profiler.enable()
    figures = asyncio.run(_post_users(client, ops, 1000, 1))
    profiler.disable()
    print(figures)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    ctx.db.dispose()


if __name__ == "__main__":
    if "--profile" in sys.argv:
        profile()
    else:
        for row in run(ops=int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
                       postgres_url="postgresql://postgres@127.0.0.1:5432/test"):
            print(row)
