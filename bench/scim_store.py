"""The SCIM store at 100,000 users, on SQLite and PostgreSQL: ``userName eq`` lookups, a page
of 100 at the first and the last offset, and adding 100 members to an empty group and to a
group of 50,000.

``python -m bench.scim_store [--postgres-url URL] [--users N]``; targets: ``userName eq`` p99
< 5 ms, a page of 100 < 20 ms at any offset, add-100-members < 30 ms with a ratio (50,000 vs
empty) < 1.5.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bench.provision import databases
from jitprov.protocols.scim.filter import parse_filter
from jitprov.store import tables as t
from jitprov.store.database import Database
from jitprov.store.unit_of_work import UnitOfWork

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
BIG_GROUP = 50_000


def populate(db: Database, users: int, now: datetime) -> tuple[int, list[str]]:
    """A tenant with ``users`` accounts (one in ten created by JIT: no userName, no SCIM data);
    returns (tenant id, account ids in insertion order)."""
    with UnitOfWork(db) as uow:
        tenant = uow.config.tenants.create("bench", "Bench", now)
        uow.commit()
    ids = [str(uuid.uuid4()) for _ in range(users)]
    with db.engine.begin() as conn:
        for start in range(0, users, 10_000):
            rows = []
            for n in range(start, min(start + 10_000, users)):
                jit = n % 10 == 9
                email = f"user{n}@bench.example"
                rows.append({
                    "id": ids[n], "tenant_id": tenant.id, "status": "active", "kind": "user",
                    "provisioned_by": "jit" if jit else "scim", "email": email,
                    "email_lower": email, "profile": {}, "profile_sources": {},
                    "idp_groups": [], "created_at": now - timedelta(seconds=users - n),
                    "updated_at": now, "version": 1, "external_id": None if jit else f"ext-{n}",
                    "user_name": None if jit else f"User{n}",
                    "user_name_lower": None if jit else f"user{n}",
                    "scim": None if jit else {
                        "displayName": f"User {n}",
                        "name": {"givenName": "User", "familyName": f"N{n % 997}"},
                        "emails": [{"value": email, "type": "work", "primary": True}],
                        ENTERPRISE: {"department": f"D{n % 50}"}}})
            conn.execute(t.account.insert(), rows)
    if db.engine.dialect.name == "postgresql":  # as autovacuum would, soon after the load
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE account"))
    # SQLite: no ANALYZE, as in a deployment: the plans must not depend on statistics
    return tenant.id, ids


def timed(fn: Callable[[int], object], runs: int) -> dict[str, float]:
    """Wall p50/p99 and CPU p50 (ms) of ``runs`` calls, after one warm-up call."""
    return interleaved([fn], runs)[0]


def interleaved(fns: list[Callable[[int], object]], runs: int) -> list[dict[str, float]]:
    """As ``timed`` for each of ``fns``, run in turn (so that they share the machine's noise:
    the ratios between them are the reliable part on a shared box)."""
    for fn in fns:
        fn(0)  # warm: statement cache, pool
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    for i in range(runs):
        for k, fn in enumerate(fns):
            wall, cpu = time.perf_counter(), time.process_time()
            fn(i)
            walls[k].append((time.perf_counter() - wall) * 1000)
            cpus[k].append((time.process_time() - cpu) * 1000)
    out = []
    for wall_ms, cpu_ms in zip(walls, cpus, strict=True):
        wall_ms.sort()
        out.append({"p50_ms": statistics.median(wall_ms),
                    "p99_ms": wall_ms[min(len(wall_ms) - 1, int(len(wall_ms) * 0.99))],
                    "cpu_p50_ms": statistics.median(cpu_ms), "runs": runs})
    return out


def bench(db: Database, users: int) -> list[tuple[str, dict[str, float]]]:
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    tenant_id, ids = populate(db, users, now)
    print(f"  populated {users} users in {time.perf_counter() - t0:.1f} s")
    rng = random.Random(7)
    out: list[tuple[str, dict[str, float]]] = []

    def query(text: str | None, **kwargs: object) -> Callable[[int], object]:
        def run(i: int) -> object:
            ast = None if text is None else parse_filter(text.format(n=rng.randrange(users)))
            with UnitOfWork(db, readonly=True) as uow:
                return uow.scim.users.query_users(tenant_id, ast, **kwargs)  # type: ignore[arg-type]
        return run

    scim_n = [n for n in range(users) if n % 10 != 9]
    out.append(("userName eq (SCIM user), query_users", timed(
        lambda i: query(f'userName eq "user{rng.choice(scim_n)}"')(i), 300)))
    out.append(("userName eq (JIT account: its email)", timed(
        lambda i: query(f'userName eq "user{rng.randrange(9, users, 10)}@bench.example"')(i),
        300)))
    out.append(("externalId eq", timed(query('externalId eq "ext-{n}"'), 100)))
    last = users - 100
    first, end = interleaved([query(None, count=100),
                              query(None, start_index=last + 1, count=100)], 30)
    out.append(("page of 100, offset 0 (by id, with totalResults)", first))
    out.append((f"page of 100, offset {last} (by id, with totalResults)", end))
    out.append(("page of 100, offset 0, sortBy userName",
                timed(query(None, count=100, sort_by="userName"), 10)))
    out.append((f"page of 100, offset {last}, sortBy userName",
                timed(query(None, start_index=last + 1, count=100, sort_by="userName"), 10)))
    out.append(("page of 100, filter active eq true, offset 0",
                timed(query("active eq true", count=100), 10)))
    out.append(("emails.value eq (JSON scan)",
                timed(query('emails.value eq "user{n}@bench.example"'), 10)))

    # groups: add 100 members to an empty group, and to one of 50,000
    with UnitOfWork(db) as uow:
        empty = uow.scim.groups.create_group(tenant_id, display_name="empty", external_id=None,
                                             now=now)
        big = uow.scim.groups.create_group(tenant_id, display_name="big", external_id=None,
                                           now=now)
        uow.commit()
    members = ids[:BIG_GROUP]
    with db.engine.begin() as conn:
        conn.execute(t.scim_group_member.insert(), [
            {"group_id": big.id, "account_id": a, "created_at": now} for a in members])
    spare = ids[BIG_GROUP:]
    rng.shuffle(spare)
    batches = iter([spare[i:i + 100] for i in range(0, len(spare), 100)])

    def add_to(group_id: str) -> Callable[[int], object]:
        def run(_: int) -> object:
            with UnitOfWork(db) as uow:
                added = uow.scim.groups.add_members(group_id, next(batches), now=now)
                uow.scim.groups.touch_group(group_id, now)
                uow.commit()
            assert len(added) == 100
            return added
        return run

    small, large = interleaved([add_to(empty.id), add_to(big.id)], 40)
    out.append(("add 100 members, group of ~0 (+commit)", small))
    out.append((f"add 100 members, group of {BIG_GROUP} (+commit)", large))
    out.append(("  ratio 50,000 / ~0 (p50 wall, p50 cpu)", {
        "p50_ms": large["p50_ms"] / small["p50_ms"], "p99_ms": 0.0,
        "cpu_p50_ms": large["cpu_p50_ms"] / small["cpu_p50_ms"], "runs": 0}))

    def get_big(_: int) -> object:
        with UnitOfWork(db, readonly=True) as uow:
            return uow.scim.groups.get_group(tenant_id, big.id, with_members=False)
    out.append(("get group of 50,000, excludedAttributes=members", timed(get_big, 100)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    for name, url, cleanup in databases(args.postgres_url):
        if args.only and name != args.only:
            cleanup()
            continue
        print(f"{name}:")
        db = Database.connect(url, pool_size=2)
        try:
            db.upgrade()
            for scenario, figures in bench(db, args.users):
                print(f"  {scenario:<52} p50 {figures['p50_ms']:8.2f}   "
                      f"p99 {figures['p99_ms']:8.2f}   cpu p50 {figures['cpu_p50_ms']:7.2f}")
        finally:
            db.dispose()
            cleanup()


if __name__ == "__main__":
    main()
