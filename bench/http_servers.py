"""Which HTTP server in production: the same app under uvicorn (h11 + asyncio, the
pure-Python baseline), uvicorn (httptools + uvloop) and granian (ASGI, 1 worker), each a
separate process on a loopback port serving an import-string factory on a migrated SQLite file.

Scenarios: ``GET /auth/verify`` with a signed-in session cookie (forward-auth: every request of
every app behind the proxy), ``GET /healthz`` (the server's own floor) and a demo-IdP first
login (``GET /sso/demo/login``, the demo IdP's signed assertion, ``POST`` callback: 2 requests,
a distinct new user each; one op is one login).

The figure that decides is the SERVER CPU time per request: utime + stime of the server
process and all its descendants (granian runs its worker as a child) read from /proc before and
after the measured window; on a noisy shared machine it moves much less than req/s. The load
generator is a separate process (``python -m bench.http_servers --generate``, httpx sync
clients with keep-alive, one per thread), identical for every server; its CPU is reported
apart. Servers run interleaved ``--reps`` times (a fresh copy of the seeded database each
start); every figure is the median over the reps.

The servers run the app in dev mode (``bench.http_servers:app_factory``) only so that the demo
IdP's mock connection may sign users in; forward-auth and /healthz do not look at dev mode.

``python -m bench.http_servers --ops 1200 --reps 3`` prints one JSON object (granian must be
installed for its rows: ``pip install granian``; missing servers are skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FACTORY = "bench.http_servers:app_factory"
SECRET = "RtHNO9asCZ1_UaH6x2_YU_rqI5NxLSpCZO3vUl7r_Nk"  # noqa: S105 - throwaway databases
PUBLIC_URL = "http://jitprov.bench"
TENANT = CONNECTION = "demo"
MAPPING = "profile: {email: email, name: name}\ngroups: groups\nroles: {default: [staff]}\n"
LOGIN_SHARE = 4  # a login scenario runs ops // LOGIN_SHARE logins (each is 2 requests + JWT)


def app_factory() -> object:
    """What each server imports: the app from the environment, in dev mode (demo IdP)."""
    from jitprov.settings import load_settings
    from jitprov.web.app import create_app

    return create_app(load_settings(dev_mode=True))


# -- servers ----------------------------------------------------------------------------------

def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _uvicorn(loop: str, http: str) -> Callable[[int], list[str]]:
    # as `jitprov serve`: proxy headers on (uvicorn's CLI default), no access log
    return lambda port: [sys.executable, "-m", "uvicorn", FACTORY, "--factory", "--host",
                         "127.0.0.1", "--port", str(port), "--workers", "1", "--loop", loop,
                         "--http", http, "--log-level", "warning", "--no-access-log"]


def _granian(port: int) -> list[str]:
    return [_bin("granian"), "--interface", "asgi", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--loop", "uvloop", "--log-level",
            "warning", "--no-access-log", FACTORY]


SERVERS: dict[str, tuple[Callable[[int], list[str]], tuple[str, ...]]] = {
    "uvicorn h11+asyncio": (_uvicorn("asyncio", "h11"), ("uvicorn", "h11")),
    "uvicorn httptools+uvloop": (_uvicorn("uvloop", "httptools"),
                                 ("uvicorn", "httptools", "uvloop")),
    "granian asgi (uvloop)": (_granian, ("granian", "uvloop")),
}


def available(server: str) -> bool:
    return all(find_spec(module) is not None for module in SERVERS[server][1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its live descendants (utime + stime + the waited-for
    children's cutime + cstime, so a child reaped during the window is not lost)."""
    parent: dict[int, int] = {}
    fields: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parent[int(entry.name)] = int(stat[1])
            fields[int(entry.name)] = stat
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    ticks = sum(sum(int(f) for f in fields[pid][11:15]) for pid in tree if pid in fields)
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, name: str, database_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "JITPROV_DATABASE_URL": database_url,
               "JITPROV_SECRET_KEY": SECRET, "JITPROV_BASE_URL": PUBLIC_URL,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        env.pop("WEB_CONCURRENCY", None)
        # one load generator is one client address: the per-address limits would cap it
        env.update(JITPROV_RATE_LIMIT_LOGIN="off", JITPROV_RATE_LIMIT_PASSKEY="off",
                   JITPROV_LOG_LEVEL="WARNING")
        self.proc = subprocess.Popen(SERVERS[name][0](self.port), cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name} did not start")

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server's tree
                self.proc.wait()


# -- the database -----------------------------------------------------------------------------

def seeded_database(workdir: Path) -> tuple[Path, str]:
    """A SQLite file migrated by `jitprov db upgrade`, with the demo tenant and its mock
    connection; returns (path, the connection's signing key)."""
    from jitprov.services import admin
    from jitprov.services.context import build_context
    from jitprov.settings import Settings
    from jitprov.store.database import Database

    path = workdir / "template.db"
    url = f"sqlite:///{path}"
    subprocess.run([_bin("jitprov"), "db", "upgrade"], check=True, cwd=workdir,
                   env={**os.environ, "JITPROV_DATABASE_URL": url,
                        "JITPROV_SECRET_KEY": SECRET}, stdout=subprocess.DEVNULL)
    db = Database.connect(url, pool_size=1)
    try:
        ctx = build_context(Settings(database_url=url, secret_key=SECRET), db)
        admin.create_tenant(ctx, TENANT, "Bench Hospital", actor="bench")
        conn = admin.add_mock_connection(ctx, tenant=TENANT, slug=CONNECTION, mapping=MAPPING,
                                         mapping_source="bench.yaml", actor="bench")
        key = str(ctx.secretbox.open(conn.secrets)["signing_key"])
    finally:
        db.dispose()
    return path, key


# -- the load generator (a separate process) --------------------------------------------------

def _login(http: httpx.Client, base: str, key: str, user: str) -> None:
    from jitprov.protocols import mock

    http.cookies.clear()  # each user is a browser of their own
    start = http.get(f"{base}/sso/{CONNECTION}/login", params={"return_to": "/me"})
    if start.status_code != 303:
        raise RuntimeError(f"login start: HTTP {start.status_code}")
    state = httpx.URL(start.headers["location"]).params["state"]
    assertion = mock.sign_assertion(
        key=key, issuer=mock.issuer_for(PUBLIC_URL, CONNECTION), audience=CONNECTION,
        subject=user, state=state, claims={"email": f"{user}@hospital.example",
                                           "email_verified": True, "name": user,
                                           "groups": ["Nurses", "Ward 3"]})
    done = http.post(f"{base}/sso/{CONNECTION}/mock/callback",
                     data={"state": state, "assertion": assertion})
    if done.status_code != 303 or "jitprov_session" not in done.cookies:
        raise RuntimeError(f"login callback: HTTP {done.status_code}")


def generate(spec: dict[str, object]) -> None:
    """Set up ``clients`` threads (one keep-alive client each), warm up, print ``ready``, wait
    for a line on stdin, run ``ops`` operations split over the threads, print the result."""
    base, kind, key = str(spec["url"]), str(spec["kind"]), str(spec["key"])
    clients, ops, tag = int(spec["clients"]), int(spec["ops"]), str(spec["tag"])  # type: ignore[call-overload]
    https = [httpx.Client(timeout=30) for _ in range(clients)]

    def op_for(i: int) -> Callable[[int], None]:
        http = https[i]
        if kind == "login":
            return lambda n: _login(http, base, key, f"{tag}-{i}-{n}")
        path = "/auth/verify" if kind == "verify" else "/healthz"

        def get(n: int) -> None:
            status = http.get(f"{base}{path}").status_code
            if status != 200:
                raise RuntimeError(f"GET {path}: HTTP {status}")
        return get

    if kind == "verify":
        for i, http in enumerate(https):
            _login(http, base, key, f"{tag}-reader-{i}")  # a session per client
    operations = [op_for(i) for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def worker(i: int, count: int, record: bool) -> None:
        op, mine = operations[i], latencies[i]
        for n in range(count):
            t0 = time.perf_counter()
            try:
                op(n if record else -1 - n)
            except (httpx.HTTPError, RuntimeError) as exc:
                errors.append(str(exc))
                continue
            if record:
                mine.append(time.perf_counter() - t0)

    def run_all(per_client: list[int], record: bool) -> None:
        threads = [threading.Thread(target=worker, args=(i, per_client[i], record))
                   for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run_all([max(5, ops // clients // 10)] * clients, record=False)  # warm-up, not counted
    errors.clear()
    print("ready", flush=True)
    sys.stdin.readline()
    share = [ops // clients + (1 if i < ops % clients else 0) for i in range(clients)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run_all(share, record=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    for http in https:
        http.close()
    done = sorted(x for mine in latencies for x in mine)
    print(json.dumps({"wall": wall, "cpu": cpu, "ok": len(done), "errors": len(errors),
                      "first_errors": errors[:3],
                      "p50": statistics.median(done) if done else 0.0,
                      "p99": done[max(0, int(len(done) * 0.99) - 1)] if done else 0.0}),
          flush=True)


def measure(server: Server, spec: dict[str, object]) -> dict[str, float]:
    """One scenario against a running server, the generator in its own process."""
    gen = subprocess.Popen([sys.executable, "-m", "bench.http_servers", "--generate",
                            json.dumps({**spec, "url": server.url})], cwd=ROOT,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert gen.stdin is not None and gen.stdout is not None
    try:
        if gen.stdout.readline().strip() != "ready":
            raise RuntimeError("the load generator failed to start")
        cpu0 = server.cpu()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        result = json.loads(gen.stdout.readline())
        server_cpu = server.cpu() - cpu0
    finally:
        gen.stdin.close()
        gen.wait(timeout=30)
    ops = int(spec["ops"])  # type: ignore[call-overload]
    return {"ops_per_s": result["ok"] / result["wall"], "cpu_ms_per_op": server_cpu / ops * 1e3,
            "p50_ms": result["p50"] * 1e3, "p99_ms": result["p99"] * 1e3,
            "load_generator_cpu_ms_per_op": result["cpu"] / ops * 1e3,
            "errors": result["errors"]}


# -- the benchmark ----------------------------------------------------------------------------

SCENARIOS = [  # (kind, label, clients)
    ("verify", "GET /auth/verify, signed in (200 + token)", 1),
    ("verify", "GET /auth/verify, signed in (200 + token)", 8),
    ("healthz", "GET /healthz", 1),
    ("healthz", "GET /healthz", 8),
    ("login", "demo-IdP first login (2 requests + JWT)", 1),
    ("login", "demo-IdP first login (2 requests + JWT)", 4),
]


def run(*, ops: int, postgres_url: str, reps: int = 3,
        servers: Sequence[str] | None = None) -> list[dict[str, object]]:
    del postgres_url  # one process's HTTP layer: SQLite is enough, and the same for all
    names = [s for s in (servers or SERVERS) if available(s)]
    workdir = Path(tempfile.mkdtemp(prefix="jitprov-http-servers-"))
    samples: dict[tuple[str, int, int], list[dict[str, float]]] = {}
    try:
        template, key = seeded_database(workdir)
        for rep in range(reps):  # interleaved: every server once per rep
            for s, name in enumerate(names):
                db = workdir / f"rep{rep}-{s}.db"
                shutil.copyfile(template, db)
                server = Server(name, f"sqlite:///{db}")
                try:
                    for k, (kind, _label, clients) in enumerate(SCENARIOS):
                        n = max(20, ops // LOGIN_SHARE) if kind == "login" else ops
                        spec = {"kind": kind, "clients": clients, "ops": n, "key": key,
                                "tag": f"r{rep}s{s}k{k}"}
                        samples.setdefault((name, k, n), []).append(measure(server, spec))
                finally:
                    server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows: list[dict[str, object]] = []
    for k, (_kind, label, clients) in enumerate(SCENARIOS):
        for name in names:
            [(n, runs)] = [(n, r) for (sn, sk, n), r in samples.items() if (sn, sk) == (name, k)]
            row: dict[str, object] = {"scenario": f"{label} | {name}", "db": "sqlite",
                                      "clients": clients, "ops": n, "server": name}
            for field in ("ops_per_s", "cpu_ms_per_op", "p50_ms", "p99_ms",
                          "load_generator_cpu_ms_per_op"):
                row[field] = statistics.median(r[field] for r in runs)
            row["cpu_ms_per_op_runs"] = [round(r["cpu_ms_per_op"], 3) for r in runs]
            row["errors"] = sum(int(r["errors"]) for r in runs)
            rows.append(row)
    return rows


def versions() -> dict[str, str]:
    found = {}
    for package in ("uvicorn", "h11", "httptools", "uvloop", "granian", "starlette", "httpx"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def to_markdown(rows: Sequence[dict[str, object]]) -> str:
    lines = ["| scenario | server | clients | ops | req or op/s | server CPU ms/op | p50 ms | "
             "p99 ms | generator CPU ms/op | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {str(r['scenario']).split(' | ')[0]} | {r['server']} | {r['clients']} | "
              f"{r['ops']} | {r['ops_per_s']:.0f} | {r['cpu_ms_per_op']:.3f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['load_generator_cpu_ms_per_op']:.3f} | {r['errors']} |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="uvicorn (h11/asyncio, httptools/uvloop) vs "
                                     "granian on the same app. Prints one JSON object.")
    parser.add_argument("--ops", type=int, default=1200,
                        help="requests per GET scenario (logins: ops // 4)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved runs per server")
    parser.add_argument("--server", action="append", choices=sorted(SERVERS),
                        help="only these servers (repeatable)")
    parser.add_argument("--markdown", action="store_true", help="a table, not JSON")
    parser.add_argument("--generate", help=argparse.SUPPRESS)  # the load generator process
    args = parser.parse_args(argv)
    if args.generate:
        generate(json.loads(args.generate))
        return
    started = time.perf_counter()
    rows = run(ops=args.ops, postgres_url="", reps=args.reps, servers=args.server)
    if args.markdown:
        print(to_markdown(rows))
        return
    print(json.dumps({"versions": versions(), "cpus": os.cpu_count(), "reps": args.reps,
                      "wall_s": round(time.perf_counter() - started, 1), "results": rows},
                     indent=2))


if __name__ == "__main__":
    main()
