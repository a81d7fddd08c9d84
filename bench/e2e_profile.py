"""Where a login's CPU goes in the workers of ``jitprov serve``: py-spy on each under load.

``python -m bench.e2e --profile [-n 600] [-c 4] [--flow saml --flow oidc]`` starts the same
stack as ``bench.e2e`` (SQLite), and for each flow records both workers, each with
``py-spy record --pid W --function --nonblocking --format raw`` (all threads, idle samples
left out), during N first logins at c browsers. It writes the collapsed stacks of both to
``bench/results/profiles/e2e-<flow>.txt`` (flamegraph.pl or speedscope read them) and a
summary to ``bench/results/e2e-profile.md``: the share of the workers' samples spent under
each step of the request path, converted to CPU microseconds per login with the workers' CPU
per login measured from /proc in the same window. It also measures single requests alone,
``GET /healthz`` of a bare ASGI app on the same uvicorn among them (``bench/bare_asgi.py``:
uvicorn's and the kernel's share of every request).

py-spy is not a dependency of jitprov: ``pip install py-spy`` (anywhere; ``--py-spy PATH``
or ``$PY_SPY`` names the binary). It needs ptrace rights on the worker (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import e2e

RATE = int(os.environ.get("E2E_PYSPY_RATE", "400"))  # samples per second and thread
MODE = os.environ.get("E2E_PYSPY_MODE", "--function --nonblocking --gil").split()

#: (step, frames that mark it), a frame being "function (file:line)" as py-spy prints it,
#: matched by substring. A sample goes to the step of the INNERMOST frame that marks one of
#: these login steps; failing that, to the layer (below) of its innermost frame that marks one.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("SAML Response verification (validate_response)", ("validate_response (",)),
    ("ID token verification (validate_id_token)", ("validate_id_token (",)),
    ("token and userinfo requests, client side (httpx, the outbound guard)",
     ("send_async (", "_send (jitprov/services/login/oidc.py", "token_request (",
      "read_token_response (", "userinfo_request (", "read_userinfo (", "exchange_code (",
      "fetch_userinfo (")),
    ("provisioning transaction (provision_on_login)", ("provision_on_login (",)),
    ("login request opened from its cookie (open_login_request, opened_login_request)",
     ("open_login_request (", "opened_login_request (", "consume_login_request (",
      "read_login_request (")),
    ("connection lookup and its config parsed (connections.get, *_config)",
     ("ConnectionCache", "connection_config (", "SamlConfig.parse (", "OidcConfig.parse (")),
    ("AuthnRequest built and RSA-signed (build_authn_request)", ("build_authn_request (",)),
    ("OIDC authorization request built", ("build_authorization_request (",)),
    ("login start, the rest: state, login request sealed (start_login)", ("start_login (",)),
    ("session read (current_session, /me)", ("current_session (",)),
    ("bounce page rendered (Jinja2)", ("TemplateResponse (", "jinja2/")),
    ("ACS form read and parsed (_read_form)", ("_read_form (",)),
    ("cookies (set_cookie, delete_cookie, login_cookie_name)",
     ("set_cookie (", "delete_cookie (", "login_cookie_name (", "set_login_cookie (",
      "set_session_cookie (", "clear_login_cookie (")),
]
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("request context: log line, metrics, request id (web/observability)",
     ("observability.py",)),
    ("logging (structlog, stdlib logging)", ("structlog/", "logging/__init__")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("rate-limit middleware", ("RateLimit", "ratelimit.py", "limits/")),
    ("text guard middleware (web/text_guard)", ("text_guard.py",)),
    ("anti-framing middleware (web/framing)", ("framing.py",)),
    ("OpenTelemetry", ("opentelemetry/",)),
    ("SQLAlchemy and the unit of work outside the steps", ("sqlalchemy/", "jitprov/store/")),
    ("thread pool hand-off (anyio, run_in_threadpool, threading)",
     ("anyio/", "concurrent/futures", "threading.py", "starlette/concurrency")),
    ("Starlette and FastAPI (routing, Request, Response, middleware)", ("starlette/",
                                                                         "fastapi/")),
    ("uvicorn and its HTTP parser (httptools/h11)", ("uvicorn/", "httptools", "h11/")),
    ("asyncio / uvloop event loop", ("asyncio/", "uvloop")),
]
OTHER = "other (no step or layer on the stack)"


def _frames(stack: str) -> list[str]:
    return stack.split(";")


def classify(stack: str) -> str:
    frames = _frames(stack)
    for table in (STEPS, LAYERS):
        for frame in reversed(frames):
            for step, marks in table:
                if any(mark in frame for mark in marks):
                    return step
    return OTHER


def read_collapsed(path: Path) -> Counter[str]:
    """{stack: samples} from py-spy's raw (collapsed) output."""
    stacks: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def self_time(stacks: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for stack, count in stacks.items():
        out[_frames(stack)[-1]] += count
    return out


def inclusive(stacks: Counter[str], needle: str) -> int:
    return sum(c for s, c in stacks.items() if needle in s)


def summarise(stacks: Counter[str], us_per_sample: float) -> dict[str, Any]:
    total = sum(stacks.values())
    steps: Counter[str] = Counter()
    for stack, count in stacks.items():
        steps[classify(stack)] += count
    return {
        "samples": total,
        "steps": [(step, count / total, count * us_per_sample)
                  for step, count in sorted(steps.items(), key=lambda kv: -kv[1])],
        "self": [(frame, count / total, count * us_per_sample)
                 for frame, count in self_time(stacks).most_common(30)],
    }


def py_spy_binary(given: str | None = None) -> str:
    for candidate in (given, os.environ.get("PY_SPY"), shutil.which("py-spy")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("py-spy not found: pip install py-spy (or set PY_SPY=/path/to/py-spy)")


class Recorder:
    """py-spy on each worker between :meth:`start` and :meth:`stop` (the kernel hands a
    connection to whichever worker accepts first: one worker may serve most of a row's
    logins), the stacks merged into ``out``; CPU of the workers read from /proc over the
    same window."""

    def __init__(self, binary: str, workers: Sequence[int], out: Path) -> None:
        self.binary, self.workers, self.out = binary, list(workers), out
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.cpu0: dict[int, float] = {}
        self.cpu: dict[int, float] = {}

    def _part(self, pid: int) -> Path:
        return self.out.with_name(f"{self.out.stem}.{pid}.part")

    def __call__(self, starting: bool) -> None:
        if starting:
            self.procs = {pid: subprocess.Popen(
                [self.binary, "record", "--pid", str(pid), "--rate", str(RATE),
                 *MODE, "--format", "raw", "--output", str(self._part(pid))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for pid in self.workers}
            self.cpu0 = {w: e2e.proc_cpu(w) or 0.0 for w in self.workers}
            return
        self.cpu = {w: (e2e.proc_cpu(w) or 0.0) - self.cpu0[w] for w in self.workers}
        merged: list[str] = []
        for pid, proc in self.procs.items():
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            part = self._part(pid)
            if not part.exists():
                raise RuntimeError(f"py-spy wrote nothing for worker {pid}: "
                                   f"{err.decode(errors='replace')}")
            merged.append(part.read_text(errors="replace"))
            part.unlink()
        self.out.write_text("".join(merged))


def render(note: str | None = None) -> None:
    """Rewrite e2e-profile.md from e2e-profile.json (``note`` replaces its note)."""
    saved = json.loads((e2e.RESULTS / "e2e-profile.json").read_text())
    if note:
        saved["note"] = note
        (e2e.RESULTS / "e2e-profile.json").write_text(json.dumps(saved, indent=2) + "\n")
    rows = saved["rows"]
    profiles = [{**p, "row": rows.get(f"{p['flow']}-profiled", rows[p["flow"]])}
                for p in saved["profiles"]]
    (e2e.RESULTS / "e2e-profile.md").write_text(to_markdown(
        profiles, saved["rows"], saved["in_process"], n=saved.get("n", 300),
        clients=saved.get("clients", 4), note=saved.get("note"), date=saved.get("date"),
        load=saved.get("load")))


def main(*, n: int, clients: int, flows: Sequence[str], postgres_url: str,
         py_spy: str | None = None, note: str | None = None, out: Path | None = None) -> None:
    """The decomposition (probes, logins with and without the request log, the in-process
    figures), then py-spy on the workers during each flow's logins; writes the summary and
    the stacks into ``out`` (default bench/results, the stacks under ``profiles/``)."""
    del postgres_url  # SQLite: the server's own work, without the database server's
    binary = py_spy_binary(py_spy)
    results = out or e2e.RESULTS
    stacks_dir = results / "profiles"
    stacks_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="jitprov-e2e-profile-"))
    idp = e2e.Idp(workdir)
    profiles: list[dict[str, Any]] = []
    rows: dict[str, dict[str, Any]] = {}
    warm = max(2 * clients, 8)

    def probe(server: e2e.Server, name: str, key: str, **kwargs: Any) -> dict[str, Any]:
        row = e2e.measure(server, url, flow=name, kind="first" if name in e2e.FLOWS
                          else "probe", clients=clients, n=n, tag=f"{key}", warm=warm,
                          bounce=True, **kwargs)
        print(e2e.line_of({**row, "db": "sqlite"}), flush=True)
        rows[key] = row
        return row

    try:
        url = f"sqlite:///{workdir}/profile.db"
        e2e.prepare_database(url, idp)
        server = e2e.Server(url, workdir)
        try:
            for name in e2e.PROBES:
                probe(server, name, name)
            workers = server.workers()
            for flow in flows:
                collapsed = stacks_dir / f"e2e-{flow}.txt"
                probe(server, flow, flow)  # the whole, without py-spy on the cores
                recorder = Recorder(binary, workers, collapsed)
                row = probe(server, flow, f"{flow}-profiled", on_window=recorder)
                stacks = read_collapsed(collapsed)
                samples = sum(stacks.values())
                # the workers' samples stand for their CPU, which served the n logins
                worker_cpu = sum(recorder.cpu.values())
                us_per_sample = worker_cpu / max(samples, 1) / n * 1e6
                profiles.append({
                    "flow": flow, "row": row, "samples": samples,
                    "sampled_s": samples / RATE, "worker_cpu_s": worker_cpu,
                    "workers_cpu_ms_per_login": sum(recorder.cpu.values()) / n * 1e3,
                    **summarise(stacks, us_per_sample)})
        finally:
            server.stop()
        bare = e2e.Server(url, workdir, bare=True)
        try:
            probe(bare, "healthz", "healthz-bare")
        finally:
            bare.stop()
        quiet = e2e.Server(url, workdir, env={"JITPROV_LOG_LEVEL": "WARNING"})
        try:
            for flow in flows:
                probe(quiet, flow, f"{flow}-quiet")
        finally:
            quiet.stop()
    finally:
        idp.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    # SQLite only: an address where no PostgreSQL listens
    inproc = e2e.in_process(n, "postgresql://postgres@127.0.0.1:9/none", ["sqlite", "-"])
    date, load = datetime.now(UTC).isoformat(timespec="seconds"), e2e.machine_note()
    text = to_markdown(profiles, rows, inproc, n=n, clients=clients, note=note, date=date,
                       load=load)
    (results / "e2e-profile.md").write_text(text)
    (results / "e2e-profile.json").write_text(json.dumps(
        {"n": n, "clients": clients, "note": note, "date": date, "load": load,
         "rows": rows, "in_process": inproc,
         "profiles": [{k: v for k, v in p.items() if k != "row"} for p in profiles]},
        indent=2) + "\n")
    print(text)


def _ms(rows: dict[str, dict[str, Any]], key: str) -> float | None:
    row = rows.get(key)
    return None if row is None else float(row["server_cpu_ms"])


def _inproc(inproc: Sequence[dict[str, Any]], needle: str) -> float | None:
    found = [r["cpu_ms_per_op"] for r in inproc if needle in r["scenario"]]
    return float(found[0]) if found else None


def decomposition(rows: dict[str, dict[str, Any]], inproc: Sequence[dict[str, Any]],
                  flow: str) -> list[tuple[str, float | None, str]]:
    """(part, ms per login, how it is measured) of one flow's first login."""
    full, quiet = _ms(rows, flow), _ms(rows, f"{flow}-quiet")
    floor = _ms(rows, "healthz")
    out: list[tuple[str, float | None, str]] = [
        ("whole first login, server CPU", full, "e2e, this run")]
    if flow == "saml":
        start, bounce = _ms(rows, "start-saml"), _ms(rows, "bounce")
        acs_core = _inproc(inproc, "SAML ACS, first login")
        acs = None if None in (full, start, bounce) else full - start - bounce  # type: ignore[operator]
        out += [("GET /sso/saml/login (login start, AuthnRequest signed)", start, "probe"),
                ("POST ACS without the cookie (bounce page)", bounce, "probe"),
                ("POST ACS with the cookie (validation, provisioning, session)", acs,
                 "whole - start - bounce"),
                ("  of which the in-process ACS (bench.saml, first login)", acs_core,
                 "in-process, this run"),
                ("  of which the rest (HTTP, form, cookies, thread hand-off)",
                 None if None in (acs, acs_core) else acs - acs_core,  # type: ignore[operator]
                 "difference")]
        requests = 3
    else:
        start = _ms(rows, "start-oidc")
        core = _inproc(inproc, "OIDC callback, first login")
        exchange = _inproc(inproc, "client_secret_basic")
        callback = None if None in (full, start) else full - start  # type: ignore[operator]
        out += [("GET /sso/oidc/login (login start)", start, "probe"),
                ("GET callback (code exchange, ID token, provisioning, session)", callback,
                 "whole - start"),
                ("  of which the in-process callback (bench.oidc, no exchange)", core,
                 "in-process, this run"),
                ("  of which the code exchange, client side (bench.code_exchange)", exchange,
                 "in-process, this run"),
                ("  of which the rest (HTTP, cookies, thread hand-off)",
                 None if None in (callback, core, exchange)
                 else callback - core - exchange,  # type: ignore[operator]
                 "difference")]
        if flow == "oidc-userinfo":
            out.append(("  of which userinfo (vs the oidc row)",
                        None if None in (full, _ms(rows, "oidc"))
                        else full - _ms(rows, "oidc"), "difference"))  # type: ignore[operator]
        requests = 2
    bare = _ms(rows, "healthz-bare")
    out += [(f"the HTTP floor, {requests} requests x GET /healthz", None if floor is None
             else requests * floor, "probe (included in the parts above)"),
            (f"  of which uvicorn, the kernel and the loopback ({requests} x GET /healthz of "
             "a bare ASGI app, bench/bare_asgi.py)", None if bare is None else requests * bare,
             "probe"),
            ("  of which jitprov's edge (middleware, routing, the log line)",
             None if None in (floor, bare) else requests * (floor - bare),  # type: ignore[operator]
             "difference"),
            ("the request log lines at INFO (vs JITPROV_LOG_LEVEL=WARNING)",
             None if None in (full, quiet) else full - quiet,  # type: ignore[operator]
             "difference (included in the parts above)")]
    return out


def to_markdown(profiles: Sequence[dict[str, Any]], rows: dict[str, dict[str, Any]],
                inproc: Sequence[dict[str, Any]], *, n: int, clients: int,
                note: str | None = None, date: str | None = None,
                load: str | None = None) -> str:
    lines = [f"# Where a login's server CPU goes over HTTP, "
             f"{date or datetime.now(UTC).isoformat(timespec='seconds')}", "",
             f"`python -m bench.e2e --profile -n {n} -c {clients}`: `jitprov serve --workers 2`"
             f" on SQLite, the IdP stub and the load generator in other processes, c={clients},"
             f" N={n} per row. {load or e2e.machine_note()}.", "",
             *([note, ""] if note else []),
             "## The parts of a first login, each measured (server CPU per login, /proc)", "",
             "Single requests measured alone like the logins (N each, server CPU per "
             "request):", ""]
    lines += [f"- {rows[k]['label']}: {rows[k]['server_cpu_ms']:.2f} ms"
              for k in e2e.PROBES if k in rows]
    if "healthz-bare" in rows:
        lines.append(f"- GET /healthz of a bare ASGI app on the same uvicorn "
                     f"(`bench/bare_asgi.py`, 2 workers): "
                     f"{rows['healthz-bare']['server_cpu_ms']:.2f} ms")
    for flow in [p["flow"] for p in profiles]:
        lines += ["", f"### {e2e.FLOWS[flow][1]}", "", "| part | ms per login | measured as |",
                  "|---|---:|---|"]
        lines += [f"| {part} | {'-' if ms is None else f'{ms:.2f}'} | {how} |"
                  for part, ms, how in decomposition(rows, inproc, flow)]
    lines += ["", "## py-spy: the workers during the logins", "",
              f"py-spy {RATE} Hz, `{' '.join(MODE)}`: only the thread holding the GIL is "
              "sampled, so time in C code that releases it (SQLite's statements, socket "
              "writes, `cryptography`'s RSA signature of the AuthnRequest: 0.5-1 ms of the "
              "login start, which shows here as ~0.1) and in the kernel is not seen; on a "
              "loaded machine a thread preempted while it holds the GIL is still sampled, "
              "which inflates the points where a "
              "thread wakes another (a socket write to the client, a thread-pool hand-off). "
              "µs per login = share of samples x the workers' CPU per login in the same "
              "window: read them as shares, the parts above as the totals. uvicorn's "
              "`RequestResponseCycle.send` is the frame that writes to the socket: its "
              "samples hold the write's system call (on loopback the kernel delivers to the "
              "reader inside it) and the time a thread preempted there kept the GIL; what "
              "uvicorn and the kernel cost per request is the bare app's `GET /healthz` "
              "above.", ""]
    for r in profiles:
        row = r["row"]
        lines += [f"### {row['label']}", "",
                  f"Server CPU per login under py-spy (whole tree; its own row, after the "
                  f"one measured above) {row['server_cpu_ms']:.2f} ms, the workers "
                  f"{r['workers_cpu_ms_per_login']:.2f} ms; {r['samples']} samples "
                  f"({r['sampled_s']:.1f} s sampled for {r['worker_cpu_s']:.1f} s of the "
                  f"workers' CPU). Collapsed stacks: "
                  f"`bench/results/profiles/e2e-{r['flow']}.txt`.", "",
                  "| step or layer (`STEPS`, `LAYERS` in `bench/e2e_profile.py`: the "
                  "innermost step on a sample's stack, else its innermost layer) | share | "
                  "µs per login |",
                  "|---|---:|---:|"]
        lines += [f"| {step} | {share * 100:.1f} % | {us:.0f} |"
                  for step, share, us in r["steps"]]
        lines += ["", "Top functions by self time:", "", "| function | share | µs per login |",
                  "|---|---:|---:|"]
        lines += [f"| `{frame.replace('|', '/')}` | {share * 100:.1f} % | {us:.0f} |"
                  for frame, share, us in r["self"][:20]]
        lines.append("")
    return "\n".join(lines)
