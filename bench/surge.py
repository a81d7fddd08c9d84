"""The shift change over HTTP: distinct users' first logins through 2 jitprov nodes (separate
processes, uvicorn) on one PostgreSQL, as fast as the box sustains.

Each node is a real `jitprov dev` process (the demo IdP's signed assertions stand in for an
IdP, so the IdP is not what is measured). The load generator runs in this process, apart from
the nodes, and its CPU is reported apart. Checked after the surge: 0 errors, one account per
user, no duplicate identity, the audit chain verifies; then the same users log in on both
nodes at the same instant and must still have one account each.

``python -m bench --only surge --ops 10000``
"""

from __future__ import annotations

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

from bench.provision import databases
from jitprov.protocols import mock
from jitprov.services import audit_export
from jitprov.services.context import build_context
from jitprov.settings import Settings
from jitprov.store.database import Database

CONNECTION = "demo"  # the demo tenant's mock connection that `jitprov dev` seeds
TENANT = "demo"
SECRET = "surge-bench-secret-key"  # noqa: S105 - the nodes' key, throwaway databases only
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
               "JITPROV_SECRET_KEY": SECRET, "JITPROV_BASE_URL": PUBLIC_URL}
        jitprov = str(Path(sys.executable).with_name("jitprov"))
        self.proc = subprocess.Popen([jitprov, "dev", "--port", str(self.port)],  # noqa: S603
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
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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
    """One user's SP-initiated login through a node: start, the demo IdP's assertion, callback."""

    def __init__(self, signing_key: str) -> None:
        self.key = signing_key
        self.issuer = mock.issuer_for(PUBLIC_URL, CONNECTION)

    def __call__(self, http: httpx.Client, node: Node, user: int) -> None:
        http.cookies.clear()  # each user is a browser of their own
        start = http.get(f"{node.url}/sso/{CONNECTION}/login", params={"return_to": "/me"})
        if start.status_code != 303:
            raise RuntimeError(f"login start: HTTP {start.status_code}")
        state = httpx.URL(start.headers["location"]).params["state"]
        assertion = mock.sign_assertion(
            key=self.key, issuer=self.issuer, audience=CONNECTION, subject=f"user-{user}",
            state=state, claims={"email": f"user{user}@hospital.example",
                                 "email_verified": True, "name": f"User {user}",
                                 "department": "Ward 3", "groups": ["Nurses"]})
        done = http.post(f"{node.url}/sso/{CONNECTION}/mock/callback",
                         data={"state": state, "assertion": assertion})  # + binding cookie
        if done.status_code != 303 or "jitprov_session" not in done.cookies:
            raise RuntimeError(f"login callback: HTTP {done.status_code}")


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
    opened: list[httpx.Client] = []

    def one(user: int) -> None:
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(timeout=30)
            opened.append(http)
        t0 = time.perf_counter()
        try:
            login(http, nodes[user % len(nodes)], user)
        except (httpx.HTTPError, RuntimeError) as exc:
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
            with httpx.Client(timeout=30) as http:
                barrier.wait()
                try:
                    login(http, node, user)
                except (httpx.HTTPError, RuntimeError) as exc:
                    errors.append(f"user-{user}: {exc}")

        threads = [threading.Thread(target=go, args=(node,)) for node in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return errors


def check(database_url: str, expected: int) -> dict[str, object]:
    """Accounts, duplicate identities, failed logins and the audit chain after a surge."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
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
            "audit_chain": "intact" if report.intact else f"BROKEN: {report.problems[:3]}"}


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        if db_name != "postgresql":
            continue  # several nodes share one PostgreSQL; SQLite is one process's store
        try:
            with cluster(url) as nodes:
                login = Login(signing_key(url))
                surge(nodes, login, range(-20, 0))  # warm both nodes (not counted)
                cpu0 = [n.cpu() for n in nodes]
                gen0 = time.process_time()
                latencies, errors, wall = surge(nodes, login, range(ops))
                gen = time.process_time() - gen0
                server = sum(n.cpu() for n in nodes) - sum(cpu0)
                pairs = same_user_on_both_nodes(nodes, login, range(ops, ops + 50))
            checked = check(url, ops + 20 + 50)
        finally:
            cleanup()
        latencies.sort()
        n = max(len(latencies), 1)
        rows.append({
            "scenario": f"surge: {ops} first logins, 2 nodes, {CLIENTS} clients",
            "db": db_name, "clients": CLIENTS, "ops": ops, "ops_per_s": ops / wall,
            "cpu_ms_per_op": server / ops * 1000,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
            "p99_ms": latencies[int(n * 0.99) - 1] * 1000 if latencies else 0.0,
            "errors": len(errors), "first_errors": errors[:3],
            "load_generator_cpu_ms_per_op": gen / ops * 1000,
            "same_user_both_nodes_errors": len(pairs), **checked})
    return rows
