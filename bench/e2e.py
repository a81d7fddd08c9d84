"""What a person's login costs end to end: HTTP through a real ``jitprov serve --workers 2``.

Targets (:data:`TARGETS`, checked in the report; this machine, server CPU per first login):
SAML <= 2.5 ms and OIDC <= 2.0 ms on SQLite; on PostgreSQL <= 4 ms in jitprov and <= 2 ms in
PostgreSQL; no growth of CPU per login from c=4 to c=16; p99 <= 5x p50 at c=16.

``python -m bench.e2e`` (N=300 logins per row, c=1/4/16, both databases) prints a markdown
table and writes ``bench/results/e2e.md`` and ``e2e.json``; ``--quick`` is a smoke run (few
logins, c=1/4, correctness checked, results not written unless ``--write``); ``--profile``
profiles the workers under load with py-spy and writes ``bench/results/e2e-profile.md``.

What runs, each in its own process:

- the server: ``jitprov serve --workers 2`` on a loopback port, on a fresh SQLite file or a
  fresh PostgreSQL database (migrated by ``jitprov db upgrade``), with connections to the
  IdP: ``saml`` (SP-initiated), ``oidc`` (code flow, claims from the ID token),
  ``oidc-ui`` (the same, plus a userinfo call) and ``saml-lean`` (``saml`` with
  ``sign_authn_requests: false``: flow ``saml-unsigned``, measured when asked). Its settings
  are production's, but for the per-address rate limits (one load generator is one address) and
  ``JITPROV_OUTBOUND_ALLOW=127.0.0.1/32`` (the IdP is on loopback). Logs at the default level
  (INFO, one JSON line per request) go to a file.
- the IdP (``bench/e2e_idp.py``): signs every SAML Response and ID token for real (RSA-2048),
  checks PKCE and the client secret; apart from the measured processes.
- the load generator (``bench/e2e_driver.py``): c browsers (threads), each person a fresh
  cookie jar; the SAML flow includes the ACS bounce a browser makes (see the driver). After
  the logins of a database, forward-auth's steady state: ``GET /auth/verify`` on 4 kept-alive
  connections, as a reverse proxy's subrequests, each with a signed-in person's cookie.

Before each row, the PostgreSQL database is ``VACUUM ANALYZE``d, as autovacuum keeps a
deployment's statistics (it is off on this machine's server, and a never-analysed database
gets plans that read every account of the tenant per login).

Measured per row, in one window around the N logins (after a warm-up):

- server CPU per login: utime + stime of the ``serve`` process and all its descendants (the
  supervisor, which also runs the background jobs, and the workers) from /proc, after minus
  before, over N;
- PostgreSQL CPU per login: the backends serving the bench database (processes whose title
  names it, read from /proc every 0.1 s; a backend counts from its first sample);
- p50 / p99 of a whole login as the browser sees it (IdP hops included), logins/s;
- correctness: accounts with the row's users' addresses after the row (first logins: N plus
  the warm-up's; returning logins: no new one), and ``GET /me`` right (email, subject,
  connection, the mapped ``nurse`` role) for a sample of about 10 people.

"first" rows sign in people never seen; "returning" rows sign the same people in again (a
new browser each, no change of claims). The machine is 2 shared cores: compare rows of one run
(and the in-process figures of the same run, ``--in-process``), not runs of different days.
Each row also reports a canary (fixed Python work timed in this process during the row) and
the supervisor's own CPU apart. To compare two versions of the code, run each from a source
snapshot (``--src DIR``, e.g. ``git archive HEAD src | tar -x -C DIR/..``), interleaved and
repeated: the working tree may change under a long run, and contention moves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.http_servers import free_port, tree_cpu

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results")
SECRET = "Qm9vdHN0cmFwLWUyZS1iZW5jaC1rZXktMDEyMzQ1Njc4OQ"  # noqa: S105 - throwaway databases
CLIENT_SECRET = "e2e-client-secret-0123456789"  # noqa: S105 - the stub IdP's client
TENANT = "hospital"
#: flow -> (connection slug, label)
FLOWS = {"saml": ("saml", "SAML SP-initiated"),
         "oidc": ("oidc", "OIDC code flow"),
         "oidc-userinfo": ("oidc-ui", "OIDC code flow + userinfo"),
         "saml-unsigned": ("saml-lean", "SAML SP-initiated, AuthnRequest unsigned")}
#: the flows a run measures unless told (``--flow``): the unsigned variant only when asked
DEFAULT_FLOWS = ["saml", "oidc", "oidc-userinfo"]
#: how the load generator signs in for a flow, when not as the flow's own name
DRIVER_FLOWS = {"saml-unsigned": "saml"}
SCOPES = ["openid", "email", "profile", "groups"]
#: single requests measured alone (bench/e2e_driver.py PROBES): name -> (flow, slug, label)
PROBES = {"healthz": ("healthz", "saml", "GET /healthz"),
          "start-saml": ("start", "saml", "GET /sso/saml/login (SAML login start)"),
          "start-oidc": ("start", "oidc", "GET /sso/oidc/login (OIDC login start)"),
          "bounce": ("bounce", "saml", "POST ACS without the cookie (bounce page)"),
          "me": ("me", "oidc", "GET /me, signed in"),
          "verify": ("verify", "oidc", "GET /auth/verify, signed in (forward-auth)")}
#: forward-auth requests per row: this many times the logins of a login row (a request costs
#: a tenth of a login: as many make a window as long and as steady)
FORWARD_AUTH_PER_LOGIN = 10


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


#: the jitprov source tree every process of the run imports (``--src``; None: the installed
#: one, i.e. the working tree of an editable install). A snapshot (``git archive HEAD src``)
#: keeps a run's code fixed while the working tree changes.
SOURCE: Path | None = None


def python_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: ``SOURCE`` first on the path, then this repo."""
    env = dict(os.environ if base is None else base)
    paths = [str(SOURCE)] if SOURCE is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the IdP ----------------------------------------------------------------------------------

class Idp:
    """``python -m bench.e2e_idp`` on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        clients = [f"{slug}:{CLIENT_SECRET}:http://127.0.0.1:" for slug in ("oidc", "oidc-ui")]
        self.log = (workdir / "idp.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.e2e_idp",
             *(arg for c in clients for arg in ("--client", c))],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True,
            start_new_session=True, env=python_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"the IdP did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- the server -------------------------------------------------------------------------------

def server_env(database_url: str, base_url: str) -> dict[str, str]:
    env = python_env({k: v for k, v in os.environ.items()
                      if not k.startswith("JITPROV_") and k != "WEB_CONCURRENCY"})
    env.update(JITPROV_DATABASE_URL=database_url, JITPROV_SECRET_KEY=SECRET,
               JITPROV_BASE_URL=base_url, JITPROV_OUTBOUND_ALLOW="127.0.0.1/32",
               # one load generator is one client address: the per-address limits would cap it
               JITPROV_RATE_LIMIT_LOGIN="off", JITPROV_RATE_LIMIT_PASSKEY="off",
               JITPROV_RATE_LIMIT_IDP_LOGOUT="off")
    return env


def prepare_database(url: str, idp: Idp) -> None:
    """Migrate with the CLI, then a tenant and the connections to the IdP (in a child
    process, which imports the run's jitprov source)."""
    subprocess.run([_bin("jitprov"), "db", "upgrade"], check=True, cwd=ROOT,
                   env=server_env(url, "http://127.0.0.1:1"), stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "bench.e2e", "--prepare", url, idp.url],
                   check=True, cwd=ROOT, env=server_env(url, "http://127.0.0.1:1"))


def _prepare(url: str, idp_url: str) -> None:
    from bench.provision import MAPPING as OIDC_MAPPING
    from bench.saml import MAPPING as SAML_MAPPING
    from jitprov.protocols.saml import SamlConfig
    from jitprov.services import admin
    from jitprov.services.context import build_context
    from jitprov.settings import Settings
    from jitprov.store.database import Database

    db = Database.connect(url, pool_size=1)
    try:
        ctx = build_context(Settings(database_url=url, secret_key=SECRET,
                                     outbound_allow=("127.0.0.1/32",)), db)
        admin.create_tenant(ctx, TENANT, "Bench Hospital", actor="bench")
        metadata = httpx.get(f"{idp_url}/saml/metadata", timeout=10).content
        lean = [] if "sign_authn_requests" not in SamlConfig.__dataclass_fields__ else [
            ("saml-lean", {"sign_authn_requests": False})]  # a source tree from before it
        for slug, options in [("saml", {}), *lean]:
            admin.add_saml_connection(ctx, tenant=TENANT, slug=slug, metadata_xml=metadata,
                                      metadata_url=None, mapping=SAML_MAPPING,
                                      mapping_source="saml.yaml", actor="bench",
                                      options=options)
        for slug, userinfo in (("oidc", False), ("oidc-ui", True)):
            admin.add_oidc_connection(
                ctx, tenant=TENANT, slug=slug,
                config={"issuer": idp_url, "client_id": slug, "scopes": SCOPES,
                        "userinfo": userinfo},
                client_secret=CLIENT_SECRET, mapping=OIDC_MAPPING,
                mapping_source="oidc.yaml", actor="bench")
        ctx.http.close()
    finally:
        db.dispose()


class Server:
    """``jitprov serve --workers N`` on a free loopback port, in its own session; with
    ``bare``, uvicorn serving ``bench/bare_asgi.py`` the same way (the HTTP floor)."""

    def __init__(self, database_url: str, workdir: Path, workers: int = 2,
                 env: dict[str, str] | None = None, *, bare: bool = False) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = (workdir / f"serve-{port}.log").open("w")
        command = ([sys.executable, "-m", "uvicorn", "bench.bare_asgi:app", "--workers",
                    str(workers), "--host", "127.0.0.1", "--port", str(port), "--log-level",
                    "warning", "--no-access-log"] if bare else
                   [_bin("jitprov"), "serve", "--workers", str(workers), "--host", "127.0.0.1",
                    "--port", str(port)])
        self.proc = subprocess.Popen(
            command, cwd=ROOT if bare else workdir,
            env={**server_env(database_url, self.url), **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300  # a loaded machine imports slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jitprov serve exited with {self.proc.returncode}: "
                                   f"see {self.log.name}")
            if len(self.workers()) == workers:
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        self.stop()
        tail = Path(self.log.name).read_text(errors="replace")[-2000:]
        raise RuntimeError(f"jitprov serve did not start (workers {self.workers()}):\n{tail}")

    def workers(self) -> list[int]:
        """The worker processes (the supervisor's children that serve requests)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == self.proc.pid and b"spawn_main" in cmdline \
                    and b"resource_tracker" not in cmdline:
                found.append(int(entry.name))
        return sorted(found)

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only its tree
                self.proc.wait()
        self.log.close()


# -- PostgreSQL's own CPU ---------------------------------------------------------------------

class PostgresCpu:
    """CPU seconds of the PostgreSQL backends serving one database: processes owned by the
    ``postgres`` user whose title (``postgres: USER DATABASE ...``) names it, sampled from
    /proc every ``every`` seconds between :meth:`start` and :meth:`stop`. A backend first seen
    after the start counts from zero; one that ends between two samples loses its last
    interval (``backends`` says how many were seen: a steady pool keeps it small)."""

    def __init__(self, database: str, every: float = 0.1) -> None:
        self.needle = f" {database} ".encode()
        self.every = every
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.started = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        import pwd
        try:
            self.uid = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            self.uid = -1

    def _sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != self.uid or self.needle not in \
                        (entry / "cmdline").read_bytes():
                    continue
            except OSError:
                continue
            cpu = proc_cpu(int(entry.name))
            if cpu is not None:
                self.first.setdefault(int(entry.name), 0.0 if self.started else cpu)
                self.last[int(entry.name)] = cpu

    def _loop(self) -> None:
        while not self.done.wait(self.every):
            self._sample()

    def start(self) -> None:
        self._sample()
        self.started = True
        self.thread.start()

    def stop(self) -> tuple[float, int]:
        """(CPU seconds, backends seen)."""
        self.done.set()
        self.thread.join()
        self._sample()
        return sum(self.last[p] - self.first[p] for p in self.last), len(self.last)


def analyze(url: str) -> None:
    """``VACUUM ANALYZE`` a PostgreSQL bench database, as autovacuum does in a deployment
    soon after its tables grow (it is off on this machine's server). A fresh database is
    never analysed otherwise, and the planner, with no statistics, can pick an index that
    matches the tenant only and read every account of it per login. SQLite: nothing, as in
    a deployment (its plans must not depend on statistics)."""
    if not url.startswith("postgresql"):  # a URL of databases() below or bench.provision's
        return
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def databases(postgres_url: str, workdir: Path
              ) -> Iterator[tuple[str, str, Callable[[], None]]]:
    """(name, SQLAlchemy URL, cleanup) of a fresh SQLite file, then of a fresh PostgreSQL
    database when ``postgres_url`` reaches a server (created here, dropped by cleanup)."""
    yield "sqlite", f"sqlite:///{workdir}/e2e-{uuid.uuid4().hex[:8]}.db", lambda: None
    url = sa.make_url(postgres_url)
    url = url.set(drivername="postgresql+psycopg") if url.drivername in (
        "postgres", "postgresql") else url
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"jitprov_e2e_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        print("e2e: PostgreSQL unreachable, SQLite only", file=sys.stderr)
        admin.dispose()
        return

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    yield "postgresql", url.set(database=name).render_as_string(hide_password=False), drop


class Canary:
    """A fixed piece of pure-Python work (about 5 ms on a quiet core), timed by this thread's
    own CPU clock every ``every`` seconds while a row runs. On a shared machine (and in a VM
    whose host preempts it) the same work costs more CPU time when the machine is busy: the
    median over the row says by how much, so rows measured at different loads can be
    compared (``cpu_scale``: the row's canary over the run's fastest)."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.samples: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def work() -> float:
        t0 = time.thread_time()
        total = 0
        for i in range(60_000):
            total += i * i % 7
        return time.thread_time() - t0

    def _loop(self) -> None:
        while not self.done.wait(self.every):
            self.samples.append(self.work())

    def __enter__(self) -> Canary:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()
        self.thread.join()

    def median_ms(self) -> float | None:
        return statistics.median(self.samples) * 1e3 if self.samples else None


def database_name(url: str) -> str | None:
    parsed = sa.make_url(url)
    return parsed.database if parsed.get_backend_name() == "postgresql" else None


# -- one row ----------------------------------------------------------------------------------

@contextmanager
def driver(spec: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.e2e_driver", json.dumps(spec)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=python_env())
    try:
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the load generator exited early")
    result: dict[str, Any] = json.loads(line)
    return result


def _say(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def accounts_of(url: str, tag: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM account WHERE email_lower LIKE :p"),
                {"p": f"{tag}-%@hospital.example"}).scalar_one())
    finally:
        engine.dispose()


def measure(server: Server, database_url: str, *, flow: str, kind: str, clients: int, n: int,
            tag: str, warm: int, bounce: bool,
            on_window: Any = None) -> dict[str, Any]:
    """One row: ``n`` logins by ``clients`` browsers, measured as the module says.
    ``on_window(start: bool)`` is called right before and after the window (the profiler)."""
    driver_flow, slug, label = ((DRIVER_FLOWS.get(flow, flow), *FLOWS[flow]) if flow in FLOWS
                                else PROBES[flow])
    spec = {"url": server.url, "flow": driver_flow, "slug": slug, "clients": clients, "n": n,
            "tag": tag, "warm": warm, "sample": 10, "bounce": bounce}
    before = accounts_of(database_url, tag)
    pg_name = database_name(database_url)
    with driver(spec) as gen:
        ready = _read(gen)
        pg = PostgresCpu(pg_name) if pg_name else None
        if on_window is not None:
            on_window(True)
        if pg is not None:
            pg.start()
        with Canary() as canary:
            cpu0, own0 = server.cpu(), proc_cpu(server.proc.pid) or 0.0
            _say(gen)
            timing = _read(gen)
            server_cpu = server.cpu() - cpu0
            supervisor_cpu = (proc_cpu(server.proc.pid) or 0.0) - own0
        pg_cpu, backends = pg.stop() if pg is not None else (None, 0)
        if on_window is not None:
            on_window(False)
        _say(gen)
        checks = _read(gen)
    after = accounts_of(database_url, tag)
    expected_new = n + warm if kind == "first" and flow in FLOWS else 0
    return {
        "flow": flow, "label": label, "kind": kind, "clients": clients, "n": n,
        "ok": timing["ok"], "errors": timing["errors"] + len(ready["warm_errors"]),
        "first_errors": timing["first_errors"] + ready["warm_errors"],
        "logins_per_s": timing["ok"] / timing["wall"],
        "server_cpu_ms": server_cpu / n * 1e3,
        # the supervising process alone: uvicorn's supervisor and the background jobs
        "supervisor_cpu_ms": supervisor_cpu / n * 1e3,
        "postgres_cpu_ms": None if pg_cpu is None else pg_cpu / n * 1e3,
        "postgres_backends": backends if pg is not None else None,
        "p50_ms": timing["p50"] * 1e3, "p99_ms": timing["p99"] * 1e3,
        "idp_p50_ms": timing["idp_p50"] * 1e3,
        "generator_cpu_ms": timing["cpu"] / n * 1e3,
        "canary_ms": canary.median_ms(),
        "accounts_new": after - before, "accounts_expected": expected_new,
        "accounts_ok": after - before == expected_new,
        "me_checked": checks["me_checked"], "me_wrong": checks["me_wrong"],
        "me_problems": checks["me_problems"]}


# -- the in-process figures of the same run ---------------------------------------------------

def in_process(n: int, postgres_url: str, dbs: Sequence[str]) -> list[dict[str, Any]]:
    """bench.saml and bench.oidc (the ACS and callback work without HTTP), ``n`` logins,
    in a child process that imports the run's jitprov source."""
    done = subprocess.run([sys.executable, "-m", "bench.e2e", "--in-process-only",
                           json.dumps([n, postgres_url, list(dbs)])], cwd=ROOT,
                          env=python_env(), check=True, capture_output=True, text=True)
    rows: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def _in_process(n: int, postgres_url: str, dbs: Sequence[str]) -> list[dict[str, Any]]:
    from bench import code_exchange, oidc, saml

    rows = []
    for module in (saml, oidc, code_exchange):
        for row in module.run(ops=n, postgres_url=postgres_url):
            if row["db"] in dbs and "only" not in str(row["scenario"]):
                rows.append({k: row[k] for k in ("scenario", "db", "cpu_ms_per_op",
                                                 "p50_ms")})
    return rows


# -- the whole run ----------------------------------------------------------------------------

def run(*, n: int, clients: Sequence[int], flows: Sequence[str], dbs: Sequence[str],
        postgres_url: str, bounce: bool = True, warm: int | None = None,
        log: Any = print) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="jitprov-e2e-"))
    rows: list[dict[str, Any]] = []
    idp = Idp(workdir)
    try:
        for db_name, url, cleanup in databases(postgres_url, workdir):
            if db_name not in dbs:
                cleanup()
                continue
            try:
                prepare_database(url, idp)
                server = Server(url, workdir)
                try:
                    for flow in flows:
                        for c in clients:
                            tag = f"{flow}-c{c}"
                            for kind in ("first", "returning"):
                                analyze(url)  # autovacuum's statistics, before each row
                                row = measure(server, url, flow=flow, kind=kind, clients=c,
                                              n=n, tag=tag, bounce=bounce,
                                              warm=warm if warm is not None
                                              else max(2 * c, 8))
                                row.update(db=db_name)
                                rows.append(row)
                                log(line_of(row))
                    # forward-auth in steady state: one signed-in browser per client, each
                    # asking again and again, as a proxy asks for every request of its app
                    analyze(url)
                    row = measure(server, url, flow="verify", kind="request", clients=4,
                                  n=n * FORWARD_AUTH_PER_LOGIN, tag="verify", bounce=bounce,
                                  warm=warm if warm is not None else 200)
                    row.update(db=db_name)
                    rows.append(row)
                    log(line_of(row))
                    cpu0 = server.cpu()  # warm and idle now: the jobs and the supervisor
                    time.sleep(3.0)
                    idle = (server.cpu() - cpu0) / 3.0
                    log(f"# {db_name}: server idle CPU {idle * 1e3:.1f} ms/s")
                    for row in rows:
                        if row["db"] == db_name:
                            row["idle_cpu_ms_per_s"] = idle * 1e3
                finally:
                    server.stop()
            finally:
                cleanup()
    finally:
        idp.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    scale_rows(rows)
    return rows


def scale_rows(rows: Sequence[dict[str, Any]], fastest: float | None = None) -> None:
    """``cpu_scale`` of each row (its canary over the run's fastest canary) and the CPU
    figures divided by it (``*_scaled``): what the row would have cost at the run's
    quietest moment."""
    canaries = [r["canary_ms"] for r in rows if r.get("canary_ms")]
    if fastest is None:
        fastest = min(canaries) if canaries else None
    for r in rows:
        scale = r["canary_ms"] / fastest if fastest and r.get("canary_ms") else 1.0
        r["cpu_scale"] = scale
        r["server_cpu_ms_scaled"] = r["server_cpu_ms"] / scale
        r["postgres_cpu_ms_scaled"] = (None if r.get("postgres_cpu_ms") is None
                                       else r["postgres_cpu_ms"] / scale)


def line_of(row: dict[str, Any]) -> str:
    pg = f" + PG {row['postgres_cpu_ms']:.2f}" if row.get("postgres_cpu_ms") is not None else ""
    return (f"{row['db']:10} {row['label']:28} {row['kind']:9} c={row['clients']:<2} "
            f"CPU {row['server_cpu_ms']:.2f} ms{pg}  p50 {row['p50_ms']:.1f} "
            f"p99 {row['p99_ms']:.1f} ms  {row['logins_per_s']:.0f}/s  errors {row['errors']} "
            f"accounts {row['accounts_new']}/{row['accounts_expected']} "
            f"/me {row['me_checked'] - row['me_wrong']}/{row['me_checked']}"
            f"  canary {row.get('canary_ms') or 0:.1f} ms"
            f"  supervisor {row.get('supervisor_cpu_ms') or 0:.2f} ms"
            + (f"\n    first errors: {row['first_errors']}" if row["errors"] else ""))


def correct(rows: Sequence[dict[str, Any]]) -> bool:
    """No error, the accounts expected, and ``/me`` checked and right after login rows (a
    probe row, forward-auth's, checks each answer itself: an error otherwise)."""
    return all(r["errors"] == 0 and r["accounts_ok"] and r["me_wrong"] == 0
               and (r["me_checked"] > 0 or r["flow"] not in FLOWS) and r["ok"] == r["n"]
               for r in rows)


def to_markdown(report: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = report["rows"]
    lines = [f"# jitprov end to end over HTTP, {report['date']}", "",
             f"`python -m bench.e2e {' '.join(report['argv'])}`: `jitprov serve --workers 2` "
             f"on loopback, N={report['n']} logins per row, the IdP (`bench/e2e_idp.py`, "
             "RSA-2048 signatures) and the load generator in other processes. Server CPU is "
             "the serve process tree's (supervisor with its jobs, and the workers) from "
             "/proc; PostgreSQL CPU is its backends' for the bench database. "
             f"Machine: {report['machine']}; {report['load_note']}", ""]
    idle = {r["db"]: r["idle_cpu_ms_per_s"] for r in rows}
    if report.get("note"):
        lines += [str(report["note"]), ""]
    lines.append("Idle server CPU (jobs, supervisor; measured after the rows): " + ", ".join(
        f"{db} {ms:.1f} ms/s" for db, ms in idle.items()) + ".")
    lines.append("")
    baseline = report.get("baseline")
    before = {_key(b): b for b in baseline["rows"]} if baseline else {}
    if baseline:
        lines += [f"Beside each row, the same row of a run of other code just before "
                  f"({baseline.get('date')}: `python -m bench.e2e "
                  f"{' '.join(baseline.get('argv') or [])}`; {baseline.get('note') or ''}), "
                  "and this run's figure over it.", ""]
    lines += ["| db | flow | login | c | server CPU ms/login | scaled | PostgreSQL CPU "
              "ms/login | scaled | p50 ms | p99 ms | logins/s | canary | correct |"
              + (" before: server CPU | ratio | before: PostgreSQL CPU | ratio |"
                 if baseline else ""),
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
              + ("---:|---:|---:|---:|" if baseline else "")]
    for r in rows:
        pg = (f"{r['postgres_cpu_ms']:.2f} | {r['postgres_cpu_ms_scaled']:.2f}"
              if r.get("postgres_cpu_ms") is not None else "- | -")
        ok = ("yes" if r["errors"] == 0 and r["accounts_ok"] and not r["me_wrong"]
              else f"NO ({r['errors']} errors, accounts {r['accounts_new']}/"
                   f"{r['accounts_expected']}, /me wrong {r['me_wrong']})")
        lines.append(f"| {r['db']} | {r['label']} | {r['kind']} | {r['clients']} | "
                     f"{r['server_cpu_ms']:.2f} | {r['server_cpu_ms_scaled']:.2f} | {pg} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['logins_per_s']:.0f} | "
                     f"{r['cpu_scale']:.2f}x | {ok} |" + _versus(r, before.get(_key(r))
                                                           if baseline else None, baseline))
    lines += ["", "Targets (see `TARGETS` in `bench/e2e.py`; CPU growth allows 10 % for "
              "noise):", "", *targets_markdown(rows)]
    if report.get("in_process"):
        lines += ["", "In-process figures of the same run (`bench.saml`, `bench.oidc`: the ACS "
                  "or callback work without HTTP, no code exchange; CPU ms per login, "
                  "1 caller; scaled with the canary like the rows), and the end-to-end login "
                  "at c=4 (scaled) as a multiple of them:", "",
                  "| in-process scenario | db | CPU ms | scaled | end to end, c=4, scaled | "
                  "ratio |", "|---|---|---:|---:|---:|---:|"]
        for p in report["in_process"]:
            if "ACS" not in p["scenario"] and "callback" not in p["scenario"]:
                continue
            flow = "saml" if "SAML" in p["scenario"] else "oidc"
            kind = "first" if "first" in p["scenario"] else "returning"
            e2e = [r for r in rows if r["db"] == p["db"] and r["flow"] == flow
                   and r["kind"] == kind and r["clients"] == 4]
            scaled = p["cpu_ms_per_op"] / p.get("cpu_scale", 1.0)
            ratio = (f"{e2e[0]['server_cpu_ms_scaled']:.2f} | "
                     f"{e2e[0]['server_cpu_ms_scaled'] / scaled:.1f}x" if e2e else "- | -")
            lines.append(f"| {p['scenario']} | {p['db']} | {p['cpu_ms_per_op']:.2f} | "
                         f"{scaled:.2f} | {ratio} |")
    lines += ["", "Scaled: the CPU figure divided by the row's canary factor (the same fixed "
              "pure-Python work, timed by its own CPU clock in the orchestrator every 0.5 s "
              "during the row, over its cost in the run's quietest row). It catches a slower "
              "machine for plain Python work (a busier or preempted VM), not all of what "
              "contention does to a server that switches threads and makes system calls all "
              "the time: on a shared machine, compare variants by interleaved, repeated runs "
              "(`--src` A, B, A, B), and read the figures as ratios within one run.", "",
              "Each row: a warm-up (not counted), then N logins; first = people never seen, "
              "returning = the same people again in a new browser. Correct = no error, "
              "the accounts created are exactly N (plus the warm-up's) for first logins and "
              "none for returning ones, and `GET /me` is right for a sample of about 10 "
              "people (email, subject, connection, the mapped role). The forward-auth row "
              f"(`request`): {FORWARD_AUTH_PER_LOGIN} x N `GET /auth/verify` on 4 kept-alive "
              "connections, as a proxy's subrequests (plain sockets: the load generator "
              "shares the cores), each with the cookie of a person signed in before the "
              "window; its figures are per request, and correct = every answer a 200 with "
              "the person's identity headers and token."]
    return "\n".join(lines) + "\n"


#: (what, db, flow, the row's figure -> measured, limit) for first logins at c=4, and for
#: forward-auth's steady state (its ``request`` row, c=4): on PostgreSQL the session cache
#: answers from memory, so the database does nothing (SQLite reads its change counter per
#: request, by design: another worker process may have revoked the session)
TARGETS: list[tuple[str, str, str, str, float]] = [
    ("SAML server CPU", "sqlite", "saml", "server_cpu_ms_scaled", 2.5),
    ("OIDC server CPU", "sqlite", "oidc", "server_cpu_ms_scaled", 2.0),
    ("SAML server CPU", "postgresql", "saml", "server_cpu_ms_scaled", 4.0),
    ("SAML PostgreSQL CPU", "postgresql", "saml", "postgres_cpu_ms_scaled", 2.0),
    ("OIDC server CPU", "postgresql", "oidc", "server_cpu_ms_scaled", 4.0),
    ("OIDC PostgreSQL CPU", "postgresql", "oidc", "postgres_cpu_ms_scaled", 2.0),
    ("forward-auth server CPU", "postgresql", "verify", "server_cpu_ms_scaled", 0.3),
    ("forward-auth PostgreSQL CPU", "postgresql", "verify", "postgres_cpu_ms_scaled", 0.01),
]


def targets_markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The targets against this run: first logins at c=4 (scaled), CPU growth from c=4 to
    c=16, p99 over p50 at c=16."""
    def row(db: str, flow: str, kind: str, clients: int) -> dict[str, Any] | None:
        found = [r for r in rows if (r["db"], r["flow"], r["kind"], r["clients"])
                 == (db, flow, kind, clients)]
        return found[0] if found else None

    lines = ["| target | db | limit | measured | met |", "|---|---|---:|---:|---|"]
    for what, db, flow, field, limit in TARGETS:
        kind, per = ("request", "per request") if flow == "verify" else ("first", "first login")
        r = row(db, flow, kind, 4)
        if r is None or r.get(field) is None:
            continue
        lines.append(f"| {what}, {per}, c=4 | {db} | {limit:g} ms | "
                     f"{r[field]:.2f} ms | {'yes' if r[field] <= limit else 'no'} |")
    for db, flow in sorted({(r["db"], r["flow"]) for r in rows}):
        at4, at16 = row(db, flow, "first", 4), row(db, flow, "first", 16)
        if at4 is None or at16 is None:
            continue
        growth = at16["server_cpu_ms_scaled"] / at4["server_cpu_ms_scaled"]
        spread = at16["p99_ms"] / at16["p50_ms"]
        lines.append(f"| {at4['label']}: CPU per login c=16 / c=4 | {db} | 1.10x | "
                     f"{growth:.2f}x | {'yes' if growth <= 1.10 else 'no'} |")
        lines.append(f"| {at4['label']}: p99 / p50 at c=16 | {db} | 5.0x | {spread:.1f}x | "
                     f"{'yes' if spread <= 5 else 'no'} |")
    return lines


def _key(row: dict[str, Any]) -> tuple[object, ...]:
    return (row["db"], row["flow"], row["kind"], row["clients"])


def _versus(row: dict[str, Any], old: dict[str, Any] | None,
            baseline: object) -> str:
    """The baseline's server and PostgreSQL CPU of the same row, and this row's over them."""
    if not baseline:
        return ""
    if old is None:
        return " - | - | - | - |"
    cells = f" {old['server_cpu_ms']:.2f} | {row['server_cpu_ms'] / old['server_cpu_ms']:.2f}x |"
    if row.get("postgres_cpu_ms") is not None and old.get("postgres_cpu_ms"):
        cells += (f" {old['postgres_cpu_ms']:.2f} | "
                  f"{row['postgres_cpu_ms'] / old['postgres_cpu_ms']:.2f}x |")
    else:
        cells += " - | - |"
    return cells


def machine_note() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} at the end "
            "(the cores are shared with other work: read the figures as ratios within this "
            "run)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--logins", type=int,
                        help="logins per row (default 300; 20 with --quick)")
    parser.add_argument("-c", "--clients", type=int, action="append",
                        help="concurrent browsers (repeatable; default 1, 4, 16)")
    parser.add_argument("--flow", action="append", choices=sorted(FLOWS),
                        help="flows (repeatable; default saml, oidc, oidc-userinfo)")
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"],
                        help="databases (repeatable; default both)")
    parser.add_argument("--postgres", default=os.environ.get(
        "JITPROV_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-bounce", action="store_true",
                        help="SAML: send the binding cookie with the IdP's POST (no bounce)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 20 logins, c=1 and 4, correctness; exits 1 if wrong")
    parser.add_argument("--in-process", action="store_true",
                        help="also run bench.saml and bench.oidc (N logins) for the ratios")
    parser.add_argument("--write", action="store_true",
                        help="write bench/results/e2e.md and e2e.json (default unless --quick)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the workers with py-spy instead (bench/e2e_profile.py)")
    parser.add_argument("--src", type=Path,
                        help="run this jitprov source tree (a `src` directory, e.g. from "
                             "`git archive HEAD src`) instead of the installed one")
    parser.add_argument("--note", help="a line for the report (which code was measured...)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write e2e.json and e2e.md (with --profile: e2e-profile.* and "
                             "profiles/) into this directory instead of bench/results (e.g. "
                             "a baseline run of older code)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="an e2e.json of a run of other code (e.g. --src of the previous "
                             "commit, run just before): the table gains its figures beside "
                             "each row, and the ratio")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite e2e.md from e2e.json (with --note: replace it)")
    parser.add_argument("--prepare", nargs=2, help=argparse.SUPPRESS)  # child: seed a database
    parser.add_argument("--in-process-only", help=argparse.SUPPRESS)  # child: in-process rows
    args = parser.parse_args(argv)
    if args.prepare:
        _prepare(*args.prepare)
        return
    if args.in_process_only:
        n, postgres_url, dbs = json.loads(args.in_process_only)
        print(json.dumps(_in_process(n, postgres_url, dbs)))
        return
    global SOURCE
    SOURCE = args.src.resolve() if args.src else None
    if args.render and args.profile:
        from bench import e2e_profile
        e2e_profile.render(args.note)
        return
    if args.render:
        saved = json.loads((RESULTS / "e2e.json").read_text())
        if args.note:
            saved["note"] = args.note
        (RESULTS / "e2e.json").write_text(json.dumps(saved, indent=2) + "\n")
        (RESULTS / "e2e.md").write_text(to_markdown(saved))
        return
    if args.profile:
        if set(args.flow or ()) - set(DEFAULT_FLOWS):
            parser.error(f"--profile decomposes only {', '.join(DEFAULT_FLOWS)}")
        from bench import e2e_profile
        e2e_profile.main(n=args.logins or 300, clients=(args.clients or [4])[0],
                         flows=args.flow or DEFAULT_FLOWS, postgres_url=args.postgres,
                         note=args.note, out=args.out)
        return
    n = args.logins or (20 if args.quick else 300)
    clients = args.clients or ([1, 4] if args.quick else [1, 4, 16])
    flows = args.flow or DEFAULT_FLOWS
    dbs = args.db or ["sqlite", "postgresql"]
    started = time.perf_counter()
    rows = run(n=n, clients=clients, flows=flows, dbs=dbs, postgres_url=args.postgres,
               bounce=not args.no_bounce, warm=4 if args.quick else None)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "n": n,
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "load_note": machine_note(), "wall_s": round(time.perf_counter() - started, 1),
        "note": args.note, "rows": rows}
    if args.baseline:
        before = json.loads(args.baseline.read_text())
        report["baseline"] = {"note": before.get("note"), "argv": before.get("argv"),
                              "date": before.get("date"), "rows": before["rows"]}
    if args.in_process:
        with Canary() as canary:
            report["in_process"] = in_process(n, args.postgres, [*dbs, "-"])
        fastest = min([r["canary_ms"] for r in rows if r.get("canary_ms")]
                      + [canary.median_ms() or 1e9])
        for p in report["in_process"]:
            p["canary_ms"] = canary.median_ms()
            p["cpu_scale"] = (canary.median_ms() or fastest) / fastest
        scale_rows(rows, fastest)
    markdown = to_markdown(report)
    print(markdown)
    if args.write or not args.quick:
        out = args.out or RESULTS
        out.mkdir(parents=True, exist_ok=True)
        (out / "e2e.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "e2e.md").write_text(markdown)
    if not correct(rows):
        print("e2e: INCORRECT results (see the rows above)", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
