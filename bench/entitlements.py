"""Roles that follow SCIM membership, at 50,000 accounts, on SQLite and PostgreSQL:

(a) one member removed from a 50,000-member group (SCIM PATCH ``members[value eq ...]``, the
    service call: the membership change, the re-evaluation of that account, its audit and
    outbox events, one transaction); target < 50 ms;
(b) the re-evaluation of one account, CPU: the mapping of its recorded claims plus
    ``scim_groups`` and ``reevaluate_grants`` (pure), and the whole ``reevaluate`` of one account
    in a transaction (with the database client's work); target < 1 ms for the pure part;
(c) DELETE of a group of 10,000 members whose rule grants a role: time until the job has
    revoked the last one, and the longest pause it caused to a concurrent SCIM request (a User
    PATCH, back to back in another thread), next to that request's pause without the job.

``python -m bench.entitlements [--postgres-url URL] [--only sqlite|postgresql]``, or through
``python -m bench --only entitlements``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bench.provision import databases
from jitprov.core.provisioning import reevaluate_grants
from jitprov.jobs import entitlements as entitlement_jobs
from jitprov.services import admin, entitlements
from jitprov.services.context import ServiceContext
from jitprov.services.scim import groups as scim_groups
from jitprov.services.scim import tokens as scim_tokens
from jitprov.services.scim import users as scim_users
from jitprov.services.secretbox import SecretBox
from jitprov.store import tables as t
from jitprov.store.database import Database
from jitprov.store.unit_of_work import UnitOfWork

ACCOUNTS = 50_000
WARD = 10_000  # members of the group deleted in (c)
BASE = "https://bench.example/scim/v2/bench"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAPPING = """\
profile:
  email: email
groups: groups
roles:
  default: [staff]
  rules:
    - {id: pharmacy, grant: [pharmacist], when: "contains(scim_groups, 'Pharmacy')"}
    - {id: ward9, grant: [ward-9], when: "contains(scim_groups, 'Ward 9')"}
    - {id: nurses, grant: [nurse], when: "contains(groups, 'Nurses')"}
"""


def _claims(n: int) -> dict[str, object]:
    return {"email": f"user{n}@bench.example", "email_verified": True, "name": f"User {n}",
            "groups": ["Nurses", "All Staff"]}


def populate(ctx: ServiceContext, now: datetime) -> tuple[list[str], str, str]:
    """50,000 accounts signed in once through connection ``bench`` (recorded claims), all in
    group Pharmacy, the first 10,000 also in Ward 9, with the grants their logins gave."""
    db = ctx.db
    admin.create_tenant(ctx, "bench")
    admin.add_mock_connection(ctx, tenant="bench", slug="bench", mapping=MAPPING,
                              mapping_source="bench.yaml")
    conn = ctx.connections.get("bench")
    ids = [str(uuid.uuid4()) for _ in range(ACCOUNTS)]
    pharmacy, ward = str(uuid.uuid4()), str(uuid.uuid4())
    with db.engine.begin() as c:
        for g, name in ((pharmacy, "Pharmacy"), (ward, "Ward 9")):
            c.execute(t.scim_group.insert(), {
                "id": g, "tenant_id": conn.tenant_id, "display_name": name,
                "display_name_lower": name.lower(), "external_id": None, "version": 1,
                "created_at": now, "updated_at": now})
        for start in range(0, ACCOUNTS, 5000):
            chunk = range(start, min(start + 5000, ACCOUNTS))
            c.execute(t.account.insert(), [{
                "id": ids[n], "tenant_id": conn.tenant_id, "status": "active", "kind": "user",
                "provisioned_by": "jit", "email": f"user{n}@bench.example",
                "email_lower": f"user{n}@bench.example",
                "profile": {"email": f"user{n}@bench.example"},
                "profile_sources": {"email": "rule:profile.email"}, "idp_groups": [],
                "created_at": now, "updated_at": now, "last_login_at": now, "version": 1}
                for n in chunk])
            c.execute(t.identity.insert(), [{
                "connection_id": conn.id, "subject": f"user-{n}", "issuer": "https://idp",
                "account_id": ids[n], "created_at": now, "last_login_at": now,
                "claims": _claims(n), "claims_at": now} for n in chunk])
            grants = [("staff", "default"), ("nurse", "nurses"), ("pharmacist", "pharmacy")]
            c.execute(t.role_grant.insert(), [{
                "account_id": ids[n], "role": role, "source": f"rule:bench/{rule}",
                "granted_at": now, "granted_by": "login"}
                for n in chunk for role, rule in grants + ([("ward-9", "ward9")]
                                                           if n < WARD else [])])
            c.execute(t.scim_group_member.insert(), [
                {"group_id": pharmacy, "account_id": ids[n], "created_at": now}
                for n in chunk])
            if start < WARD:
                c.execute(t.scim_group_member.insert(), [
                    {"group_id": ward, "account_id": ids[n], "created_at": now}
                    for n in chunk if n < WARD])
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            for table in ("account", "identity", "role_grant", "scim_group_member"):
                c.execute(sa.text(f"VACUUM ANALYZE {table}"))
    return ids, pharmacy, ward


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "max_ms": ordered[-1] * 1000}


def bench(ctx: ServiceContext, ops: int) -> list[tuple[str, dict[str, float]]]:
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    ids, pharmacy, ward = populate(ctx, now)
    print(f"  populated {ACCOUNTS} accounts in {time.perf_counter() - t0:.1f} s")
    _, token = scim_tokens.create_token(ctx, "bench", "bench", connection="bench")
    principal = scim_tokens.authenticate(ctx, "bench", token)
    assert principal is not None
    out: list[tuple[str, dict[str, float]]] = []

    # (a) one member removed from the 50,000-member group, re-evaluated in the same request
    removals = min(ops, 200)
    walls, cpus = [], []
    for n in range(WARD, WARD + removals + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        scim_groups.patch_group(ctx, principal, BASE, pharmacy, {"schemas": [PATCH], "Operations": [
            {"op": "remove", "path": f'members[value eq "{ids[n]}"]'}]})
        if n > WARD:  # the first one warms caches
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        assert "pharmacist" not in uow.accounts.get(ids[WARD]).roles
    out.append((f"remove 1 member of {ACCOUNTS}, re-evaluated (one request)",
                {**_stats(walls), "cpu_ms": statistics.median(cpus) * 1000, "ops": removals}))

    # (b) re-evaluation of one account: pure CPU, then with the store
    conn = ctx.connections.get("bench")
    policy = ctx.policies.get(conn)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        account = uow.accounts.get(ids[0])
    claims = {**_claims(0), "scim_groups": ["Pharmacy", "Ward 9"]}
    runs = max(ops, 2000)
    cpu = time.process_time()
    for _ in range(runs):
        reevaluate_grants(account, policy.map(claims).scoped("bench"), policy.settings,
                          "bench", now=now)
    out.append(("re-evaluate 1 account: map + reevaluate_grants (pure CPU)",
                {"p50_ms": (time.process_time() - cpu) / runs * 1000, "ops": runs}))
    walls, cpus = [], []
    for n in range(min(ops, 500)):
        wall, cpu = time.perf_counter(), time.process_time()
        with UnitOfWork(ctx.db) as uow:
            entitlements.reevaluate(ctx, uow, [(ids[WARD + 1000 + n], "bench", None)], now)
            uow.commit()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    out.append(("re-evaluate 1 account in a transaction (no change)",
                {**_stats(walls), "cpu_ms": statistics.median(cpus) * 1000, "ops": len(walls)}))

    # (c) DELETE a 10,000-member group; a concurrent SCIM client patches Users meanwhile
    pauses: list[float] = []
    running = threading.Event()
    stop_client = threading.Event()

    def scim_client() -> None:
        n = 0
        while not stop_client.is_set():
            target = ids[ACCOUNTS - 1 - (n % 1000)]
            wall = time.perf_counter()
            scim_users.patch_user(ctx, principal, BASE, target, {"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": "title", "value": f"t{n}"}]})
            if running.is_set():
                pauses.append(time.perf_counter() - wall)
            n += 1

    client = threading.Thread(target=scim_client, daemon=True)
    client.start()
    time.sleep(0.5)
    running.set()
    time.sleep(3)  # the client alone
    baseline = _stats(pauses)
    pauses.clear()
    stop_job = threading.Event()
    entitlement_jobs.run_periodically(ctx, timedelta(seconds=1), stop_job)
    wall = time.perf_counter()
    scim_groups.delete_group(ctx, principal, ward)
    answered = time.perf_counter() - wall
    while True:
        with ctx.db.engine.connect() as c:
            left = c.execute(sa.select(sa.func.count()).select_from(t.role_grant).where(
                t.role_grant.c.source == "rule:bench/ward9")).scalar_one()
        if not left:
            break
        time.sleep(0.01)
    done = time.perf_counter() - wall
    running.clear()
    stop_client.set()
    stop_job.set()
    client.join()
    during = _stats(pauses)
    out.append((f"DELETE group of {WARD}: the request answered", {"p50_ms": answered * 1000}))
    out.append((f"DELETE group of {WARD}: last role revoked (job)", {"p50_ms": done * 1000}))
    out.append(("concurrent SCIM User PATCH, alone", baseline))
    out.append(("concurrent SCIM User PATCH, while the job revokes", during))
    return out


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    """Rows for ``python -m bench``."""
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        try:
            for scenario, f in _measure(url, ops):
                rows.append({"scenario": scenario, "db": db_name, "clients": 1,
                             "ops": int(f.get("ops", 1)), "ops_per_s": float("nan"),
                             "cpu_ms_per_op": f.get("cpu_ms", float("nan")),
                             "p50_ms": f["p50_ms"], "p99_ms": f.get("max_ms", f["p50_ms"])})
        finally:
            cleanup()
    return rows


def _measure(url: str, ops: int) -> list[tuple[str, dict[str, float]]]:
    db = Database.connect(url, pool_size=4)
    try:
        db.upgrade()
        ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
        return bench(ctx, ops)
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--ops", type=int, default=200)
    args = parser.parse_args()
    for name, url, cleanup in databases(args.postgres_url):
        try:
            if args.only and name != args.only:
                continue
            print(f"{name}:")
            for scenario, f in _measure(url, args.ops):
                figures = "   ".join(f"{k} {v:9.3f}" for k, v in f.items() if k != "ops")
                print(f"  {scenario:<62} {figures}")
        finally:
            cleanup()


if __name__ == "__main__":
    main()
