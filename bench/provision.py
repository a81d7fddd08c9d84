"""provision_on_login in-process: first and returning logins, SQLite and PostgreSQL,
1 and 16 concurrent callers (threads).

CPU is this process's CPU time (``time.process_time``) per login, which includes the
database client work; for SQLite that is all of it, for PostgreSQL the server's own CPU is
extra (a separate process, not counted here).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from jitprov.core.identity import ExternalIdentity
from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import Database, normalise_url

MAPPING = """\
profile:
  email: email
  name: name
  department: department
groups: groups
roles:
  default: [staff]
  rules:
    - {id: nurses, grant: [nurse], when: "contains(groups, 'Nurses')"}
    - {id: charge, grant: [charge-nurse], when: "contains(groups, 'Charge Nurses')"}
    - {id: pharmacy, grant: [pharmacist], when: "contains(groups, 'Pharmacists')"}
deny:
  - {id: unverified, when: "email_verified != `true`", reason: email not verified}
"""

GROUPS = ["Nurses", "Ward 3", "All Staff"] + [f"Group {i}" for i in range(17)]  # 20 groups


def identity(n: int) -> ExternalIdentity:
    return ExternalIdentity(issuer="https://idp.bench", subject=f"user-{n}", claims={
        "email": f"user{n}@hospital.example", "email_verified": True, "name": f"User {n}",
        "department": "Ward 3", "groups": GROUPS})


def measure(ctx: ServiceContext, ops: int, clients: int,
            subject: Callable[[int], int]) -> dict[str, float]:
    latencies: list[float] = []

    def one(n: int) -> None:
        t0 = time.perf_counter()
        provision_on_login(ctx, "bench", identity(subject(n)), start_session=True)
        latencies.append(time.perf_counter() - t0)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    if clients == 1:
        for n in range(ops):
            one(n)
    else:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(ops)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    latencies.sort()
    return {"ops": ops, "ops_per_s": ops / wall, "cpu_ms_per_op": cpu / ops * 1000,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def fresh_context(url: str) -> ServiceContext:
    db = Database.connect(url, pool_size=16)
    db.upgrade()
    ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
    admin.create_tenant(ctx, "bench")
    admin.add_mock_connection(ctx, tenant="bench", slug="bench", mapping=MAPPING,
                              mapping_source="bench.yaml")
    return ctx


def databases(postgres_url: str) -> list[tuple[str, str, Callable[[], None]]]:
    tmp = Path(tempfile.mkdtemp(prefix="jitprov-bench-"))
    out: list[tuple[str, str, Callable[[], None]]] = [
        ("sqlite", f"sqlite:///{tmp}/bench.db", lambda: None)]
    admin_engine = sa.create_engine(normalise_url(postgres_url), isolation_level="AUTOCOMMIT")
    try:
        with admin_engine.connect() as conn:
            name = f"jitprov_bench_{uuid.uuid4().hex[:8]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        print("bench: PostgreSQL unreachable, SQLite only")
        return out

    def drop() -> None:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    url = sa.make_url(normalise_url(postgres_url)).set(database=name)
    out.append(("postgresql", url.render_as_string(hide_password=False), drop))
    return out


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        ctx = fresh_context(url)
        provision_on_login(ctx, "bench", identity(-1))  # warm caches and the policy
        base = 0
        for clients in (1, 16):
            first = measure(ctx, ops, clients, lambda n, b=base: b + n)
            rows.append({"scenario": "first login", "db": db_name, "clients": clients, **first})
            again = measure(ctx, ops, clients, lambda n, b=base: b + n)
            rows.append({"scenario": "returning login (no change)", "db": db_name,
                         "clients": clients, **again})
            base += ops
        ctx.db.dispose()
        cleanup()
    return rows
