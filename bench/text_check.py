"""The cost of the input rule for text on a SCIM POST: ``core.text`` and
``protocols.scim.limits`` (every string of the body checked against the rule and the size
limits) as the parse path calls them (``check_resource``), against the CPU of the whole
``POST /Users`` through the ASGI app (bench.scim's Entra-shaped user, one client, SQLite and
PostgreSQL; the CPU of this process only).

Rows: the whole POST; the check as it runs (its fast path: one scan of every string joined);
the slow walk that names a bad attribute (what the check cost before the fast path, and
what it still costs on a body it refuses). The scenario names the check's share of a POST.
Target: < 2 %.

``python -m bench --only text_check`` or ``python -m bench.text_check [ops]``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.provision import databases
from bench.scim import InProcess, _context, _post_users, user_body
from jitprov.protocols.scim.limits import check_resource, walk_resource
from jitprov.services import admin
from jitprov.services.scim import tokens as scim_tokens

#: calls per timed batch of the check (one call takes microseconds)
BATCH = 100


def _check_figures(check: Callable[[str, Any], None], bodies: list[dict[str, Any]],
                   rounds: int) -> dict[str, float]:
    """CPU per call of ``check`` over ``bodies``, ``rounds`` times; latencies per batch."""
    for body in bodies[:200]:  # warm
        check("User", body)
    per_call: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        for start in range(0, len(bodies), BATCH):
            batch = bodies[start:start + BATCH]
            t0 = time.perf_counter()
            for body in batch:
                check("User", body)
            per_call.append((time.perf_counter() - t0) / len(batch))
    calls = rounds * len(bodies)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    per_call.sort()
    return {"ops": calls, "ops_per_s": calls / wall, "cpu_ms_per_op": cpu / calls * 1000,
            "p50_ms": statistics.median(per_call) * 1000,
            "p99_ms": per_call[max(0, int(len(per_call) * 0.99) - 1)] * 1000}


async def _post_figures(url: str, ops: int) -> dict[str, float]:
    ctx, app, tenant = _context(url)
    admin.create_tenant(ctx, tenant)
    client = InProcess(app, scim_tokens.create_token(ctx, tenant, "bench")[1], tenant)
    await _post_users(client, 50, 10_000_000, 1)  # warm: caches, pool, statements
    figures = await _post_users(client, ops, 0, 1)
    ctx.db.dispose()
    return figures


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    bodies = [json.loads(user_body(n)) for n in range(ops)]
    rounds = max(1, 20_000 // max(1, ops))
    fast = _check_figures(check_resource, bodies, rounds)
    slow = _check_figures(walk_resource, bodies, rounds)
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        try:
            post = asyncio.run(_post_figures(url, ops))
        finally:
            cleanup()
        rows.append({"scenario": "POST /Users (Entra-shaped user), the whole request",
                     "db": db_name, "clients": 1, **post})
        for name, figures in (("the check (fast path)", fast),
                              ("the slow walk, for comparison", slow)):
            share = figures["cpu_ms_per_op"] / post["cpu_ms_per_op"] * 100
            rows.append({"scenario": f"text check per POST, {name}: {share:.2f} % of its CPU",
                         "db": db_name, "clients": 1, **figures, "share_pct": share})
    return rows


if __name__ == "__main__":
    for row in run(ops=int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
                   postgres_url="postgresql://postgres@127.0.0.1:5432/test"):
        print(row)
