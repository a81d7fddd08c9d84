"""SCIM filters of many terms at 5,000 and 100,000 users: a disjunction of 100
``groups.value eq`` terms (with five real groups among them, and with none), 32
``groups.value co`` terms (the cost budget's edge), and the refusal of 100 ``co`` terms
(400 invalidFilter before any SQL). Each user is in two of 200 groups.

``python -m bench.scim_filters [--postgres-url URL] [--only sqlite|postgresql]``, or through
``python -m bench --only scim_filters``. Target: every accepted filter < 50 ms p50 (a page of
100 with its totalResults) on SQLite at 100,000 users; it took 15.6 s at 5,000 when each term
was a subquery tried on every user.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from datetime import UTC, datetime

from bench.provision import databases
from bench.scim_store import populate, timed
from jitprov.protocols.scim.filter import parse_filter
from jitprov.store import tables as t
from jitprov.store.database import Database
from jitprov.store.scim.errors import InvalidFilter
from jitprov.store.unit_of_work import UnitOfWork

SIZES = (5_000, 100_000)
GROUPS = 200


def bench(db: Database, users: int, runs: int) -> list[tuple[str, dict[str, float]]]:
    now = datetime.now(UTC)
    tenant_id, ids = populate(db, users, now)
    with UnitOfWork(db) as uow:
        groups = [uow.scim.groups.create_group(tenant_id, display_name=f"group {g}",
                                               external_id=None, now=now).id
                  for g in range(GROUPS)]
        uow.commit()
    with db.engine.begin() as conn:
        conn.execute(t.scim_group_member.insert(), [
            {"group_id": groups[g], "account_id": a, "created_at": now}
            for n, a in enumerate(ids) for g in {n % GROUPS, (n * 7 + 3) % GROUPS}])
    rng = random.Random(7)

    def query(make: Callable[[], str]) -> Callable[[int], object]:
        def run(_: int) -> object:
            ast = parse_filter(make())
            with UnitOfWork(db, readonly=True) as uow:
                total, page = uow.scim.users.query_users(tenant_id, ast, count=100)
            return total, page
        return run

    def eq_terms(real: int) -> str:
        values = rng.sample(groups, real) + [f"nope-{rng.randrange(10**6)}"
                                            for _ in range(100 - real)]
        return " or ".join(f'groups.value eq "{v}"' for v in values)

    def co_terms() -> str:
        values = [g[:8] for g in rng.sample(groups, 2)] + [f"zz{i}" for i in range(30)]
        return " or ".join(f'groups.value co "{v}"' for v in values)

    def refused(_: int) -> object:
        text = " or ".join(f'groups.value co "zz{i}"' for i in range(100))
        try:
            query(lambda: text)(0)
        except InvalidFilter:
            return None
        raise AssertionError("100 co terms were not refused")

    return [
        ("100 x groups.value eq, 5 real groups (page + total)", timed(query(lambda: eq_terms(5)),
                                                                     runs)),
        ("100 x groups.value eq, none matching", timed(query(lambda: eq_terms(0)), runs)),
        ("32 x groups.value co, 2 matching", timed(query(co_terms), runs)),
        ("100 x groups.value co: refused (invalidFilter)", timed(refused, runs)),
    ]


def _rows(db_name: str, url: str, runs: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for users in SIZES:
        db = Database.connect(url, pool_size=2)
        try:
            db.upgrade()
            for scenario, f in bench(db, users, runs):
                rows.append({"scenario": f"{scenario}, {users:,} users", "db": db_name,
                             "clients": 1, "ops": runs, "ops_per_s": float("nan"),
                             "cpu_ms_per_op": f["cpu_p50_ms"], "p50_ms": f["p50_ms"],
                             "p99_ms": f["p99_ms"]})
            with db.engine.begin() as conn:  # the next size starts from an empty database
                conn.execute(t.scim_group_member.delete())
                conn.execute(t.scim_group.delete())
                conn.execute(t.account.delete())
                conn.execute(t.tenant.delete())
        finally:
            db.dispose()
    return rows


def run(*, ops: int, postgres_url: str, only: str | None = None) -> list[dict[str, object]]:
    """Rows for ``python -m bench`` (``ops`` bounds the runs per scenario)."""
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        try:
            if only in (None, db_name):
                rows += _rows(db_name, url, max(5, min(ops, 30)))
        finally:
            cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    for r in run(ops=args.runs, postgres_url=args.postgres_url, only=args.only):
        print(f"  {r['db']:<10} {r['scenario']:<72} p50 {r['p50_ms']:8.2f}   "
              f"p99 {r['p99_ms']:8.2f}   cpu p50 {r['cpu_ms_per_op']:7.2f}")


if __name__ == "__main__":
    main()
