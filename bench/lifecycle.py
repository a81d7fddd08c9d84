"""The dormant sweep at 100,000 accounts: 1 % to warn, 1 % to deactivate, the rest recent."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from bench.provision import databases
from jitprov.services import admin, lifecycle
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.store import tables as t
from jitprov.store.database import Database

ACCOUNTS = 100_000


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    del ops  # the size is the point here
    rows: list[dict[str, object]] = []
    now = datetime.now(UTC)
    for db_name, url, cleanup in databases(postgres_url):
        db = Database.connect(url, pool_size=2)
        db.upgrade()
        ctx = ServiceContext(db=db, secretbox=SecretBox("bench"), clock=lambda: now)
        tenant = admin.create_tenant(ctx, "bench")
        lifecycle.set_dormant_policy(ctx, "bench", warn_days=80, deactivate_days=90)

        def idle_days(n: int) -> int:
            return 85 if n % 100 == 0 else 95 if n % 100 == 1 else n % 30

        with db.engine.begin() as conn:
            for start in range(0, ACCOUNTS, 10_000):
                conn.execute(t.account.insert(), [{
                    "id": str(uuid.uuid4()), "tenant_id": tenant.id, "status": "active",
                    "kind": "user", "provisioned_by": "jit", "email": f"u{n}@bench.example",
                    "email_lower": f"u{n}@bench.example", "profile": {}, "profile_sources": {},
                    "idp_groups": [], "created_at": now - timedelta(days=200),
                    "updated_at": now, "version": 1,
                    "last_login_at": now - timedelta(days=idle_days(n))}
                    for n in range(start, start + 10_000)])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        [report] = lifecycle.sweep(ctx, "bench")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        rows.append({"scenario": f"dormant sweep, {ACCOUNTS} accounts "
                                 f"({len(report.warned)} warned, "
                                 f"{len(report.deactivated)} deactivated)",
                     "db": db_name, "clients": 1, "ops": 1, "ops_per_s": 1 / wall,
                     "cpu_ms_per_op": cpu * 1000, "p50_ms": wall * 1000, "p99_ms": wall * 1000})
        cpu0, wall0 = time.process_time(), time.perf_counter()
        lifecycle.sweep(ctx, "bench")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        rows.append({"scenario": "dormant sweep again (nothing new)", "db": db_name,
                     "clients": 1, "ops": 1, "ops_per_s": 1 / wall,
                     "cpu_ms_per_op": cpu * 1000, "p50_ms": wall * 1000,
                     "p99_ms": wall * 1000})
        db.dispose()
        cleanup()
    return rows
