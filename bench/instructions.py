"""Instructions per operation, counted by Valgrind's callgrind over the measured calls only.

On a shared machine CPU time moves 5-20 % from one minute to the next, which hides a change
worth 2-3 % of a login however the runs are interleaved. The number of instructions a hot
path executes hardly moves: runs of the same code give the same SCIM create and OIDC
callback counts to the thousand, a SAML ACS's within 1 %. Read it for what it is:
instructions executed in this process, in user space, by the thread that makes the calls
(the other threads' beside). The kernel's work (system calls, the loopback, waking another
process), what a cache miss or a lock wait costs, and SQLite's checkpoints (their thread is
stopped for the measured calls: it runs on a timer, so it made runs of the same code differ
by 1-2 %) are not in it; a change to those is measured by CPU time (``bench.e2e``, the
in-process benches), interleaved.

``python -m bench.instructions SCENARIO [-n N] [--src DIR ...]`` runs the scenario's setup
with callgrind's instrumentation off (faster than with it on), one warm-up call, then N calls
with it on (a marker library built from callgrind.h switches it), and prints the millions
of instructions per call. With several ``--src`` (source trees, as ``git archive <rev> src
| tar -x -C DIR`` makes them: pass ``DIR/src``), each runs in turn and the table gives each
as a ratio to the first; give each twice (A, B, A, B) to see the spread. A run of 20 SAML
logins takes about 25 s. Needs ``valgrind`` and a C compiler (Debian: ``apt-get install
valgrind gcc``).

Scenarios (SQLite, in process, no sockets): :data:`SCENARIOS`. Callgrind runs the code
50-100 times slower than real time, and the app's clock keeps real time: keep ``-n`` to a
few hundred calls (a SAML Response signed at setup is valid 5 minutes, a forward-auth token
is handed out again for 60 s). And :data:`SERVED`: whole
logins over HTTP into the app as ``jitprov serve`` runs it in a worker (uvicorn, one process,
under callgrind), from a browser and the IdP of ``bench.e2e`` in other processes; the
worker's instructions per login, between two signals around the measured logins.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import ctypes
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

#: what the measured calls are between: callgrind's client requests, as a shared library
_MARKER = """\
#include <valgrind/callgrind.h>
void measure_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void measure_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""
_TOTALS = re.compile(r"^totals: (\d+)", re.MULTILINE)


#: the scenario's databases, whose checkpoint threads stop before the measured calls
_DATABASES: list[Any] = []


def _database() -> Any:
    """A fresh SQLite database, migrated, removed at exit."""
    from jitprov.store.database import Database

    directory = tempfile.mkdtemp(prefix="jitprov-icount-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    db = Database.connect(f"sqlite:///{directory}/b.db", pool_size=4)
    db.upgrade()
    _DATABASES.append(db)
    return db


def _sqlite_context() -> Any:
    from jitprov.services.context import ServiceContext
    from jitprov.services.secretbox import SecretBox

    return ServiceContext(db=_database(), secretbox=SecretBox("bench"))


def saml_acs(n: int) -> Callable[[int], object]:
    """The SAML ACS of a first login (``complete_saml_login``: the login request opened from
    its cookie, the signed Response checked, the account provisioned, a session), as
    ``bench.saml`` times it; the Responses are signed before."""
    from bench.saml import acs, add_connection, prepare
    from jitprov.testing.saml_idp import FakeSamlIdp

    ctx, idp = _sqlite_context(), FakeSamlIdp()
    add_connection(ctx, idp)
    return acs(ctx, prepare(ctx, idp, range(n)))


def oidc_callback(n: int) -> Callable[[int], object]:
    """An OIDC first login's callback after its code exchange: the ID token verified (RS256,
    JWKS cached) and the account provisioned, as ``bench.oidc`` times it."""
    from bench.oidc import Provider, add_connection, callback

    ctx, provider = _sqlite_context(), Provider.make()
    add_connection(ctx)
    return callback(ctx, provider, provider.tokens(range(n)))


def scim_post(n: int) -> Callable[[int], object]:
    """``POST /scim/v2/{tenant}/Users`` through the ASGI app (middleware, routing, the SCIM
    parse, the create, the answer), as ``bench.scim`` times it."""
    from bench.scim import InProcess, user_body
    from jitprov.services import admin
    from jitprov.services.scim import tokens as scim_tokens
    from jitprov.settings import Settings
    from jitprov.web.app import create_app

    ctx = _sqlite_context()
    app = create_app(Settings(base_url="http://bench", secret_key="bench"), ctx=ctx)
    admin.create_tenant(ctx, "bench")
    client = InProcess(app, scim_tokens.create_token(ctx, "bench", "bench")[1])
    bodies = [user_body(i) for i in range(n)]
    loop = asyncio.new_event_loop()

    def one(i: int) -> object:
        status, out = loop.run_until_complete(client("POST", "/Users", bodies[i]))
        if status != 201:
            raise RuntimeError(f"POST /Users: {status} {out[:200]!r}")
        return status
    return one


def _keep_caches(ctx: Any) -> None:
    """What a worker keeps in memory for 2 s (a connection's record, the identity tokens'
    signing key), kept for the run instead (:func:`_served_app` says why)."""
    from datetime import timedelta

    from jitprov.services import identity_tokens
    from jitprov.services.context import ConnectionCache

    ctx.connections = ConnectionCache(ctx.db, ttl=timedelta(hours=1))
    identity_tokens.KEY_CACHE_SECONDS = 3600.0


def _served_app() -> tuple[Any, Any, asyncio.AbstractEventLoop]:
    """The app as a served worker builds it (its context from the settings, with the session
    cache the server's settings turn on; the request log line at INFO as ``jitprov serve``
    writes it; no rate limit, as in ``bench.e2e``), at ``bench.handoff``'s base URL, on
    SQLite; (app, context, loop).

    What a worker keeps in memory for 2 s (a connection's record, the identity tokens'
    signing key) is kept for the whole run: callgrind runs the code 50-100 times slower, and
    those 2 s would run out every few requests (each time a read, on a worker thread whose
    work the calling thread's count leaves out), where served in real time they run out
    once in hundreds of logins."""
    from bench.handoff import BASE_URL
    from jitprov.services import logs
    from jitprov.services.context import build_context
    from jitprov.settings import Operations, Settings
    from jitprov.web.app import create_app

    logs.configure("json", "INFO")
    settings = Settings(base_url=BASE_URL, secret_key="bench",
                        ops=Operations(session_cache=True))
    ctx = build_context(settings, _database())
    _keep_caches(ctx)
    app = create_app(settings, ctx=ctx)
    return app, ctx, asyncio.new_event_loop()


def _saml_logins(n: int) -> tuple[Any, asyncio.AbstractEventLoop]:
    """``bench.handoff``'s SAML logins on the served app: ``n`` started, the IdP's Responses
    signed, each bounced once; (the logins, their loop)."""
    from bench.handoff import SamlLogins
    from bench.saml import add_connection
    from jitprov.testing.saml_idp import FakeSamlIdp

    app, ctx, loop = _served_app()
    idp = FakeSamlIdp()
    add_connection(ctx, idp)
    logins = SamlLogins(app, ctx, idp)
    for i in range(n):
        loop.run_until_complete(logins.start(i))
    logins.sign()
    for i in range(n):
        loop.run_until_complete(logins.bounce(i))
    logins.read_bounces()
    return logins, loop


def http_saml_login(n: int) -> Callable[[int], object]:
    """A whole SAML first login through the ASGI app, as a browser makes it after a
    cross-site POST (``bench.handoff``'s requests: middleware, routing, cookies, pages, the
    log lines): ``GET /sso/{c}/login`` (the AuthnRequest signed), the ACS without the
    cookie (the bounce page), the ACS with it (a first login). The IdP's Responses answer
    logins started before the measured calls; each call also starts a login of its own,
    as costly as theirs."""
    logins, loop = _saml_logins(n)

    async def login(i: int) -> None:
        await logins.start(i)
        await logins.bounce(i)
        await logins.acs(i)

    return lambda i: loop.run_until_complete(login(i))


def http_verify(_n: int) -> Callable[[int], object]:
    """``GET /auth/verify`` with the session cookie of a person signed in by SAML before
    (forward-auth, as a proxy asks for every request of its app): the session from the
    worker's cache, the identity headers and the token signed for them before, the log
    line."""
    from bench.handoff import _FORM, call

    logins, loop = _saml_logins(1)
    form, cookie = logins.bounced[0]
    _, headers, _ = loop.run_until_complete(call(
        logins.app, "POST", "/sso/bench/saml/acs", [*_FORM, (b"cookie", cookie.encode())],
        form))
    session = next(line.split(";", 1)[0] for line in headers.get("set-cookie", [])
                   if line.startswith("jitprov_session="))
    asked = [(b"cookie", session.encode())]

    def one(_i: int) -> object:
        status, answer, _ = loop.run_until_complete(call(logins.app, "GET", "/auth/verify",
                                                         asked))
        if status != 200 or not any(name.endswith("-email") for name in answer):
            raise RuntimeError(f"GET /auth/verify: {status}")
        return status
    return one


def http_healthz(_n: int) -> Callable[[int], object]:
    """``GET /healthz`` through the ASGI app: what every request pays at jitprov's edge
    (middleware, routing, the response, the log line) beside the endpoint's own work."""
    from bench.handoff import call

    app, _, loop = _served_app()

    def one(_i: int) -> object:
        status, _, _ = loop.run_until_complete(call(app, "GET", "/healthz", []))
        if status != 200:
            raise RuntimeError(f"GET /healthz: {status}")
        return status
    return one


SCENARIOS: dict[str, Callable[[int], Callable[[int], object]]] = {
    "saml-acs": saml_acs, "oidc-callback": oidc_callback, "scim-post": scim_post,
    "http-saml-login": http_saml_login, "http-healthz": http_healthz,
    "http-verify": http_verify}


#: logins over HTTP into a served worker: scenario -> ``bench.e2e_driver`` flow
SERVED = {"served-saml": "saml", "served-oidc": "oidc"}


def _serve(port: int, marker: str, flag: str) -> None:
    """Under callgrind: the app as a ``jitprov serve`` worker builds it, served by uvicorn
    with ``serve``'s options; SIGUSR1 starts the count (SQLite's checkpoint thread stopped,
    the heap collected and frozen, as in :func:`_child`), SIGUSR2 stops it; each writes
    ``flag`` once done, for the driver to wait on. What the worker keeps in memory for 2 s
    is kept for the run, as in :func:`_served_app`."""
    import signal

    import uvicorn

    from jitprov.web.asgi import app_from_environment

    lib = ctypes.CDLL(marker)
    app = app_from_environment()
    _keep_caches(app.state.ctx)

    def start(*_: object) -> None:
        checkpointer = app.state.ctx.db.checkpointer
        if checkpointer is not None:
            checkpointer.stop()
        gc.collect()
        gc.freeze()
        lib.measure_start()
        Path(flag).write_text("on")

    def stop(*_: object) -> None:
        lib.measure_stop()
        Path(flag).write_text("off")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="info",
                proxy_headers=False, access_log=False, log_config=None)


def served(scenario: str, n: int, src: Path, marker: Path) -> tuple[int, int]:
    """Instructions of ``n`` whole logins over HTTP into one served worker (``src`` first on
    its path): (the worker's main thread's, its other threads' together)."""
    import signal
    import time

    import httpx

    from bench import e2e
    from bench.e2e_driver import login, new_client
    from bench.http_servers import free_port

    flow = SERVED[scenario]
    e2e.SOURCE = src
    workdir = Path(tempfile.mkdtemp(prefix="jitprov-icount-"))
    idp: e2e.Idp | None = None
    proc: subprocess.Popen[bytes] | None = None
    out, flag = marker.with_name(f"served.{os.getpid()}.out"), workdir / "measuring"
    try:
        idp = e2e.Idp(workdir)
        url = f"sqlite:///{workdir}/served.db"
        e2e.prepare_database(url, idp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (workdir / "serve.log").open("w") as log:
            proc = subprocess.Popen(
                [shutil.which("valgrind") or "valgrind", "--tool=callgrind",
                 "--instr-atstart=no", "--separate-threads=yes",
                 f"--callgrind-out-file={out}", sys.executable, "-m", "bench.instructions",
                 scenario, "--serve", str(port), "--marker", str(marker), "--flag", str(flag)],
                env={**e2e.server_env(url, base), "PYTHONHASHSEED": "0"}, cwd=workdir,
                stdout=log, stderr=subprocess.STDOUT)

        def wait(what: Callable[[], bool], doing: str) -> None:
            deadline = time.monotonic() + 300  # valgrind starts a worker in about a minute
            while not what():
                if proc is None or proc.poll() is not None or time.monotonic() > deadline:
                    tail = (workdir / "serve.log").read_text(errors="replace")[-1500:]
                    sys.exit(f"bench.instructions: {scenario}: {doing} failed:\n{tail}")
                time.sleep(0.2)

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait(up, "the served worker's start")
        with new_client() as http:
            for i in range(3):  # warm: caches, the pool, the IdP's keys, first-call imports
                login(http, base, flow, flow, f"warm-{i}")
            for sig, state, people in ((signal.SIGUSR1, "on", range(n)),
                                       (signal.SIGUSR2, "off", range(0))):
                proc.send_signal(sig)
                wait(partial(_flag_says, flag, state), f"switching the count {state}")
                for i in people:
                    login(http, base, flow, flow, f"person-{i}")
        proc.terminate()  # callgrind writes its counts as the worker exits
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            sys.exit(f"bench.instructions: {scenario}: the served worker did not stop")
        return _totals(out, scenario)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if idp is not None:
            idp.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _flag_says(flag: Path, state: str) -> bool:
    return flag.exists() and flag.read_text() == state


def _child(scenario: str, n: int, marker: str) -> None:
    """Under callgrind: set up, warm up, then the N measured calls between the markers."""
    lib = ctypes.CDLL(marker)
    one = SCENARIOS[scenario](n + 1)
    one(n)  # warm: caches, the pool, the policy, first-call imports
    for db in _DATABASES:  # SQLite's checkpoints run on a timer: a last one, then none
        if db.checkpointer is not None:
            db.checkpointer.stop()
    # the collector's counters start from zero and the setup's heap is out of its passes:
    # the collections in the measured calls are theirs, not the setup's
    gc.collect()
    gc.freeze()
    lib.measure_start()
    for i in range(n):
        one(i)
    lib.measure_stop()


def _marker(directory: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or shutil.which("valgrind") is None:
        sys.exit("bench.instructions needs valgrind and a C compiler "
                 "(apt-get install valgrind gcc)")
    source, library = directory / "marker.c", directory / "marker.so"
    source.write_text(_MARKER)
    built = subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(library), str(source)],
                           capture_output=True, text=True, check=False)
    if built.returncode != 0:
        sys.exit(f"bench.instructions: the marker did not build: {built.stderr.strip()}")
    return library


def count(scenario: str, n: int, src: Path, marker: Path) -> tuple[int, int]:
    """Instructions of the N measured calls of ``scenario``, with ``src`` first on the path:
    (the calling thread's, the other threads' together)."""
    valgrind = shutil.which("valgrind") or "valgrind"
    env = {**os.environ, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join([str(src), str(Path(__file__).parents[1])])}
    out = marker.with_name(f"callgrind.{os.getpid()}.out")
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
         f"--callgrind-out-file={out}", sys.executable, "-m", "bench.instructions",
         "--child", scenario, "-n", str(n), "--marker", str(marker)],
        capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        sys.exit(f"bench.instructions: {scenario} failed under valgrind:\n{tail}")
    return _totals(out, scenario)


def _totals(out: Path, scenario: str) -> tuple[int, int]:
    """Callgrind's counts per thread (its files ``out-01``, ``out-02``...; removed once
    read): (the main thread's, the others' together)."""
    totals = []
    for thread in sorted(out.parent.glob(f"{out.name}-*")):
        found = _TOTALS.search(thread.read_text(errors="replace"))
        totals.append(int(found.group(1)) if found else 0)
        thread.unlink()
    if not totals or not totals[0]:
        sys.exit(f"bench.instructions: {scenario}: callgrind counted nothing")
    return totals[0], sum(totals[1:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted([*SCENARIOS, *SERVED]))
    parser.add_argument("-n", type=int, default=20, help="measured calls (default 20)")
    parser.add_argument("--src", type=Path, action="append",
                        help="a source tree (its src/ or the folder holding jitprov); "
                             "repeat to compare")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--marker", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--flag", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.marker, args.flag)
        return
    if args.child:
        _child(args.scenario, args.n, args.marker)
        return
    if args.n < 1:
        parser.error("-n: at least one measured call")
    sources = args.src or [Path(__file__).parents[1] / "src"]
    for src in sources:
        if not (src / "jitprov").is_dir():  # else the installed jitprov would be measured
            parser.error(f"--src {src}: no jitprov package in it (give the tree's src/)")
    with tempfile.TemporaryDirectory(prefix="jitprov-icount-") as tmp:
        marker = _marker(Path(tmp))
        measure = served if args.scenario in SERVED else count
        counts = [measure(args.scenario, args.n, src.resolve(), marker) for src in sources]
    print(f"{args.scenario}: millions of instructions per call (callgrind, n={args.n}), in the "
          "calling thread; other threads beside")
    print("| source | per call | ratio | other threads, per call |")
    print("|---|---:|---:|---:|")
    for src, (calling, others) in zip(sources, counts, strict=True):
        print(f"| {src} | {calling / args.n / 1e6:.3f} | {calling / counts[0][0]:.3f} "
              f"| {others / args.n / 1e6:.3f} |")

if __name__ == "__main__":
    main()
