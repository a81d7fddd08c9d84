"""The shift change over HTTP: distinct users' first logins through 2 jitprov nodes (separate
processes, uvicorn) on one PostgreSQL, as fast as the box sustains.

Each node is a real `jitprov dev` process (the demo IdP's signed assertions stand in for an
IdP, so the IdP is not what is measured). The load generator runs in this process, apart from
the nodes, on plain kept-alive sockets, and its CPU is reported apart. After the warm-up the
database is ``VACUUM ANALYZE``d, as autovacuum keeps a running deployment's statistics (it is
off on this machine's server). Checked after the surge: 0 errors, one account per
user, no duplicate identity, the audit chain verifies; then the same users log in on both
nodes at the same instant and must still have one account each.

``python -m bench --only surge --ops 10000``, or on its own, with the number of users that log
in on both nodes at once: ``python -m bench.surge --users 10000 --pairs 200``.

Server CPU is the two node processes' CPU time plus, reported apart, the CPU time of the
PostgreSQL backends serving the bench database (sampled from /proc: only when PostgreSQL runs
on this machine; ``null`` otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.e2e import analyze
from bench.plain_http import KeptAlive
from bench.provision import databases
from jitprov.protocols import mock
from jitprov.services import audit_export
from jitprov.services.context import build_context
from jitprov.settings import Settings
from jitprov.store.database import Database, normalise_url

CONNECTION = "demo"  # the demo tenant's mock connection that `jitprov dev` seeds
TENANT = "demo"
SECRET = "awyb3NyFdmBkkGOmaLbtQXG0XvA24jAEz8Yhf93P13s"  # noqa: S105 - throwaway databases
PUBLIC_URL = "http://jitprov.surge"  # both nodes sit behind one (notional) load balancer
CLIENTS = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Node:
    """A `jitprov dev` process on an ephemeral port; ``cpu()`` reads its CPU seconds."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "JITPROV_DATABASE_URL": database_url,
               "JITPROV_SECRET_KEY": SECRET, "JITPROV_BASE_URL": PUBLIC_URL,
               # the surge comes from one address: per-address and per-token limits off
               "JITPROV_RATE_LIMIT_LOGIN": "off", "JITPROV_RATE_LIMIT_SCIM": "off",
               "JITPROV_RATE_LIMIT_PASSKEY": "off"}
        jitprov = str(Path(sys.executable).with_name("jitprov"))
        self.proc = subprocess.Popen([jitprov, "dev", "--port", str(self.port)],
                                     cwd=workdir,
                                     env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jitprov dev exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("jitprov dev did not start")

    def cpu(self) -> float:
        cpu = proc_cpu(self.proc.pid)
        assert cpu is not None, "the node exited"
        return cpu

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def cluster(database_url: str, nodes: int = 2) -> Iterator[list[Node]]:
    """Start nodes one after the other (the first migrates and seeds the demo tenant)."""
    workdir = Path(tempfile.mkdtemp(prefix="jitprov-surge-"))
    started: list[Node] = []
    try:
        for _ in range(nodes):
            started.append(Node(database_url, workdir))
        yield started
    finally:
        for node in started:
            node.stop()


class Login:
    """One user's SP-initiated login through a node: start, the demo IdP's assertion, callback.

    Each user is a browser of their own (no cookie but the start's binding cookie goes with
    the callback); the requests go on a kept-alive plain socket per node and client thread
    (:mod:`bench.plain_http`), so that the load generator, on the same two cores, leaves them
    to the nodes (httpx cost it 4 ms per login, as much as half a node's)."""

    def __init__(self, signing_key: str) -> None:
        self.key = signing_key
        self.issuer = mock.issuer_for(PUBLIC_URL, CONNECTION)

    def __call__(self, http: KeptAlive, user: int) -> None:
        start = http.request("GET", f"/sso/{CONNECTION}/login?return_to=%2Fme")
        if start.status != 303:
            raise RuntimeError(f"login start: HTTP {start.status}")
        state = httpx.URL(start.header("location") or "").params["state"]
        assertion = mock.sign_assertion(
            key=self.key, issuer=self.issuer, audience=CONNECTION, subject=f"user-{user}",
            state=state, claims={"email": f"user{user}@hospital.example",
                                 "email_verified": True, "name": f"User {user}",
                                 "department": "Ward 3", "groups": ["Nurses"]})
        binding = "; ".join(f"{k}={v}" for k, v in start.cookies().items())
        done = http.request("POST", f"/sso/{CONNECTION}/mock/callback",
                            {"Cookie": binding} if binding else {},
                            form={"state": state, "assertion": assertion})
        if done.status != 303 or "jitprov_session" not in done.cookies():
            raise RuntimeError(f"login callback: HTTP {done.status}")


class PostgresBackends:
    """CPU seconds of the PostgreSQL backend processes serving one database, read from /proc
    (PostgreSQL on this machine only). A sampler thread follows backends that come and go
    (pool overflow connections): each pid counts from its first sample to its last.

    The same samples count the backends waiting for a lock (``pg_stat_activity``), by what
    they wait for: the tenant's audit chain head (``SELECT ... FROM audit_head ... FOR
    UPDATE``), an advisory lock (a login's identity or email lock), anything else. Waiting
    backends x the sampling interval estimates the lock wait (seconds summed over backends)."""

    def __init__(self, database_url: str, every: float = 0.05) -> None:
        self.engine = sa.create_engine(normalise_url(database_url), pool_size=1)
        self.every = every
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.own_pid: int | None = None
        self.running = False
        self.waits: dict[str, int] = {"audit_head": 0, "advisory": 0, "other": 0}
        self.samples = 0

    def available(self) -> bool:
        with self.engine.connect() as conn:
            self.own_pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        return Path(f"/proc/{self.own_pid}/stat").exists()

    def sample(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT pid, wait_event_type, wait_event, query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all()
        if self.running:
            self.samples += 1
            for row in rows:
                if row.wait_event_type != "Lock":
                    continue
                kind = ("audit_head" if "audit_head" in (row.query or "")
                        else "advisory" if row.wait_event == "advisory" else "other")
                self.waits[kind] += 1
        for pid in (row.pid for row in rows):
            cpu = proc_cpu(pid)
            if cpu is None:
                continue
            # a backend first seen after the start opened during the run: counts from zero
            self.first.setdefault(pid, 0.0 if self.running else cpu)
            self.last[pid] = cpu

    def _run(self) -> None:
        while not self.stop_event.wait(self.every):
            self.sample()

    def __enter__(self) -> PostgresBackends:
        self.sample()  # the backends already open: counted from here
        self.running = True
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        self.sample()
        self.engine.dispose()

    def cpu(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)

    def lock_wait_seconds(self) -> dict[str, float]:
        """Estimated seconds of lock wait, summed over backends, by what was waited for."""
        return {kind: count * self.every for kind, count in self.waits.items()}


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process in seconds, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signing_key(database_url: str) -> str:
    db = Database.connect(database_url, pool_size=1)
    try:
        ctx = build_context(Settings(database_url=database_url, secret_key=SECRET), db)
        return str(ctx.secretbox.open(ctx.connections.get(CONNECTION).secrets)["signing_key"])
    finally:
        db.dispose()


def surge(nodes: Sequence[Node], login: Login, users: Sequence[int],
          clients: int = CLIENTS) -> tuple[list[float], list[str], float]:
    """Every user logs in once, spread over the nodes by ``clients`` threads.
    Returns (latencies, errors, wall seconds)."""
    latencies: list[float] = []
    errors: list[str] = []
    local = threading.local()
    opened: list[KeptAlive] = []

    def one(user: int) -> None:
        node = nodes[user % len(nodes)]
        connections = getattr(local, "connections", None)
        if connections is None:
            connections = local.connections = {}
        http = connections.get(node.url)
        if http is None:
            http = connections[node.url] = KeptAlive(node.url)
            opened.append(http)
        t0 = time.perf_counter()
        try:
            login(http, user)
        except (OSError, RuntimeError) as exc:
            errors.append(f"user-{user}: {exc}")
            return
        latencies.append(time.perf_counter() - t0)

    wall0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, users))
    wall = time.perf_counter() - wall0
    for http in opened:
        http.close()
    return latencies, errors, wall


def same_user_on_both_nodes(nodes: Sequence[Node], login: Login, users: range) -> list[str]:
    """Each user logs in on every node at the same instant (a barrier per user)."""
    errors: list[str] = []
    for user in users:
        barrier = threading.Barrier(len(nodes))

        def go(node: Node, user: int = user, barrier: threading.Barrier = barrier) -> None:
            http = KeptAlive(node.url)
            barrier.wait()
            try:
                login(http, user)
            except (OSError, RuntimeError) as exc:
                errors.append(f"user-{user}: {exc}")
            finally:
                http.close()

        threads = [threading.Thread(target=go, args=(node,)) for node in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return errors


def check(database_url: str, expected: int,
          pair_users: range | None = None) -> dict[str, object]:
    """Accounts, duplicate identities, failed logins and the audit chain after a surge; with
    ``pair_users``, how many of the users who logged in on both nodes at once have exactly one
    account (the rest have none or several)."""
    engine = sa.create_engine(normalise_url(database_url))
    pairs: dict[str, object] = {}
    with engine.connect() as conn:
        if pair_users is not None:
            per_user: dict[str, int] = dict(conn.execute(sa.text(
                "SELECT email_lower, count(*) FROM account GROUP BY email_lower")).all())
            counts = [per_user.get(f"user{u}@hospital.example", 0) for u in pair_users]
            pairs = {"pair_users": len(pair_users),
                     "pair_users_with_one_account": sum(1 for c in counts if c == 1),
                     "pair_users_with_none": sum(1 for c in counts if c == 0),
                     "pair_users_with_several": sum(1 for c in counts if c > 1)}
        accounts = conn.execute(sa.text("SELECT count(*) FROM account")).scalar_one()
        duplicates = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT account.email_lower FROM account "
            "GROUP BY account.email_lower HAVING count(*) > 1) d")).scalar_one()
        orphans = conn.execute(sa.text(
            "SELECT count(*) FROM account WHERE NOT EXISTS (SELECT 1 FROM identity "
            "WHERE identity.account_id = account.id)")).scalar_one()
        created = conn.execute(sa.text(
            "SELECT count(*) FROM audit_event WHERE type = 'account.created'")).scalar_one()
    engine.dispose()
    db = Database.connect(database_url, pool_size=1)
    try:
        [report] = audit_export.verify(build_context(
            Settings(database_url=database_url, secret_key=SECRET), db), TENANT)
    finally:
        db.dispose()
    return {"accounts": accounts, "expected": expected, "duplicates": duplicates,
            "without_identity": orphans, "account_created_events": created,
            "audit_chain": "intact" if report.intact else f"BROKEN: {report.problems[:3]}",
            **pairs}


def run(*, ops: int, postgres_url: str, pairs: int = 50) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        if db_name != "postgresql":
            continue  # several nodes share one PostgreSQL; SQLite is one process's store
        try:
            with cluster(url) as nodes:
                login = Login(signing_key(url))
                surge(nodes, login, range(-20, 0))  # warm both nodes (not counted)
                analyze(url)  # the statistics a running deployment has (autovacuum's)
                backends = PostgresBackends(url)
                measure_pg = backends.available()
                cpu0 = [n.cpu() for n in nodes]
                gen0 = time.process_time()
                if measure_pg:
                    with backends:
                        latencies, errors, wall = surge(nodes, login, range(ops))
                else:
                    latencies, errors, wall = surge(nodes, login, range(ops))
                    backends.engine.dispose()
                gen = time.process_time() - gen0
                server = sum(n.cpu() for n in nodes) - sum(cpu0)
                pair_users = range(ops, ops + pairs)
                pair_errors = same_user_on_both_nodes(nodes, login, pair_users)
            checked = check(url, ops + 20 + pairs, pair_users)
        finally:
            cleanup()
        latencies.sort()
        n = max(len(latencies), 1)
        pg_cpu = backends.cpu() if measure_pg else None
        waits = backends.lock_wait_seconds() if measure_pg else {}
        rows.append({
            "scenario": f"surge: {ops} first logins, 2 nodes, {CLIENTS} clients",
            "db": db_name, "clients": CLIENTS, "ops": ops, "wall_s": wall,
            "ops_per_s": ops / wall,
            "cpu_ms_per_op": server / ops * 1000,
            "postgres_cpu_ms_per_op": None if pg_cpu is None else pg_cpu / ops * 1000,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
            "p99_ms": latencies[int(n * 0.99) - 1] * 1000 if latencies else 0.0,
            "errors": len(errors), "first_errors": errors[:3],
            "load_generator_cpu_ms_per_op": gen / ops * 1000,
            # estimated from pg_stat_activity samples every 50 ms: backends waiting x 50 ms
            "lock_wait_ms_per_op": {kind: seconds / ops * 1000
                                    for kind, seconds in waits.items()},
            "same_user_both_nodes_errors": len(pair_errors),
            "same_user_both_nodes_first_errors": pair_errors[:3], **checked})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The shift change over HTTP: 2 nodes, 1 "
                                     "PostgreSQL. Prints one JSON object.")
    parser.add_argument("--users", type=int, default=10_000,
                        help="distinct users, one first login each")
    parser.add_argument("--pairs", type=int, default=50,
                        help="users then logging in on both nodes at the same instant")
    parser.add_argument("--postgres", default=os.environ.get(
        "JITPROV_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args(argv)
    rows = run(ops=args.users, postgres_url=args.postgres, pairs=args.pairs)
    if not rows:
        raise SystemExit("surge: needs PostgreSQL (--postgres)")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
