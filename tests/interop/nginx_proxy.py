"""Forward-auth interop harness: real nginx in front of a real ``jitprov dev`` and a tiny app.

Three loopback servers, each a context manager that starts on a free port and stops for sure::

    ports = Ports.pick()                                   # nginx, jitprov and app ports
    with JitprovDev(workdir, port=ports.jitprov, base_url=ports.nginx_url) as jitprov, \\
         EchoApp(port=ports.app) as app, \\
         NginxProxy(workdir, listen_port=ports.nginx, jitprov_port=ports.jitprov,
                    app_port=ports.app) as nginx:
        httpx.get(nginx.url + "/app/page")  # -> 302 to jitprov's login, through nginx
        app.requests                        # what the protected app received (headers, path)

``NginxProxy`` runs the documented server block ``docs/forward-auth/nginx.conf`` as is, with only
its upstream addresses and ``listen`` replaced, inside a minimal main configuration whose every
path (pid, logs, temp directories) is in a private temporary directory. nginx runs in the
foreground (``daemon off``); stopping it is a SIGQUIT (graceful), then SIGKILL.

Without an nginx binary (with ngx_http_auth_request_module) the tests are skipped, unless
``JITPROV_REQUIRE_INTEROP=1`` (CI), where they fail: see :func:`require_nginx`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = REPO / "docs" / "forward-auth" / "nginx.conf"
START_TIMEOUT = 60.0  # `jitprov dev` migrates and seeds its demo: ~35 s on a loaded 2-core machine
STOP_TIMEOUT = 10.0
REQUIRE_INTEROP = os.environ.get("JITPROV_REQUIRE_INTEROP") == "1"

# The documented addresses, replaced by the harness (each must occur exactly once).
TEMPLATE_JITPROV = "server 127.0.0.1:8000;"
TEMPLATE_APP = "server 127.0.0.1:8080;"
TEMPLATE_LISTEN = "listen 80;"


class HarnessError(RuntimeError):
    """A server of the harness did not start, or the template is not what the harness expects."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nginx_binary() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a non-root PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def require_nginx() -> str:
    """The nginx binary; skip (or fail under JITPROV_REQUIRE_INTEROP=1) when it is unusable."""
    binary = nginx_binary()
    problem = None
    if binary is None:
        problem = "nginx is not installed (apt-get install nginx-light)"
    else:
        built = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10,
                               check=False)
        if "--with-http_auth_request_module" not in built.stderr + built.stdout:
            problem = f"{binary} lacks ngx_http_auth_request_module"
    if problem is not None:
        if REQUIRE_INTEROP:
            pytest.fail(f"{problem} (JITPROV_REQUIRE_INTEROP=1)")
        pytest.skip(problem)
    assert binary is not None
    return binary


@dataclass(frozen=True)
class Ports:
    nginx: int
    jitprov: int
    app: int

    @classmethod
    def pick(cls) -> Ports:
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        nginx, jitprov, app = sorted(ports)
        return cls(nginx=nginx, jitprov=jitprov, app=app)

    @property
    def nginx_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx}"


def wait_until_answering(url: str, proc: subprocess.Popen[bytes] | None, what: str,
                         log: Path | None = None, timeout: float = START_TIMEOUT) -> None:
    """Poll ``url`` until any HTTP answer; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise HarnessError(f"{what} did not answer {url} within {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path | None, chars: int = 4000) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text("utf-8", errors="replace")[-chars:]


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


# -- jitprov dev ----------------------------------------------------------------------------------

class JitprovDev:
    """``jitprov dev --port P`` as a subprocess, cwd ``workdir`` (it keeps var/secret.key there),
    on an SQLite file in ``workdir``. ``base_url`` is its public URL (the nginx host)."""

    def __init__(self, workdir: Path, *, port: int, base_url: str) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.database_url = f"sqlite:///{workdir}/jitprov.db"
        self.env = {**os.environ, "JITPROV_DATABASE_URL": self.database_url,
                    "JITPROV_BASE_URL": base_url}
        self.executable = str(Path(sys.executable).with_name("jitprov"))
        self.log = workdir / "jitprov.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with self.log.open("wb") as out:  # the child keeps its own descriptor
            self._proc = subprocess.Popen([self.executable, "dev", "--port", str(self.port)],
                                          cwd=self.workdir, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until_answering(self.url + "/healthz", self._proc, "jitprov dev", self.log)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc, signal.SIGTERM)
            self._proc = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``jitprov ARGS --database-url ...`` on the same database and key."""
        return subprocess.run([self.executable, *args, "--database-url", self.database_url],
                              cwd=self.workdir, env=self.env, capture_output=True, text=True,
                              timeout=START_TIMEOUT, check=False)


# -- the protected application ---------------------------------------------------------------------

@dataclass
class SeenRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class EchoApp:
    """A threaded ``http.server`` on loopback: answers every request with JSON of what it
    received (method, path, header list) and records it in ``requests``."""

    port: int
    requests: list[SeenRequest] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream keepalive expects
            # headers and body go out in two writes: without TCP_NODELAY, Nagle and the
            # client's delayed ACK add ~40 ms to every answer
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen = SeenRequest(self.command, self.path, list(self.headers.items()))
                app.requests.append(seen)
                body = json.dumps({"method": seen.method, "path": seen.path,
                                   "headers": seen.headers}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="echo-app",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT)
        self._server = self._thread = None


# -- nginx -----------------------------------------------------------------------------------------

def render_config(template: str, *, prefix: Path, listen_port: int, jitprov_port: int,
                  app_port: int, rename: Mapping[str, str] | None = None) -> str:
    """The documented server block with loopback ports, in a main config of temp paths.
    ``listen 80;`` may occur in several server blocks; ``rename`` replaces text everywhere
    (the documented host names by loopback ones)."""
    replacements = {
        TEMPLATE_JITPROV: f"server 127.0.0.1:{jitprov_port};",
        TEMPLATE_APP: f"server 127.0.0.1:{app_port};",
        TEMPLATE_LISTEN: f"listen 127.0.0.1:{listen_port};",
    }
    server_block = template
    for old, new in replacements.items():
        count = len(re.findall(re.escape(old), template))
        if count != 1 and not (old == TEMPLATE_LISTEN and count > 1):
            raise HarnessError(f"{NGINX_TEMPLATE.name}: expected {old!r} once, found {count}")
        server_block = server_block.replace(old, new)
    for old, new in (rename or {}).items():
        if old not in server_block:
            raise HarnessError(f"the template has no {old!r} to rename")
        server_block = server_block.replace(old, new)
    temp = {name: prefix / "temp" / name for name in
            ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers would run as `nobody`, which cannot enter this private directory.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"    client_body_temp_path {temp['client_body']};\n"
        f"    proxy_temp_path {temp['proxy']};\n"
        f"    fastcgi_temp_path {temp['fastcgi']};\n"
        f"    uwsgi_temp_path {temp['uwsgi']};\n"
        f"    scgi_temp_path {temp['scgi']};\n"
        "    default_type application/octet-stream;\n"
        f"{server_block}\n"
        "}\n")


class NginxProxy:
    """nginx in the foreground on ``127.0.0.1:listen_port`` with the documented server block."""

    def __init__(self, prefix: Path, *, listen_port: int, jitprov_port: int, app_port: int,
                 template: Path = NGINX_TEMPLATE,
                 rename: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self.url = f"http://127.0.0.1:{listen_port}"
        self.binary = require_nginx()
        self.conf = prefix / "nginx.conf"
        self.error_log = prefix / "error.log"
        self.conf.write_text(render_config(template.read_text("utf-8"), prefix=prefix,
                                           listen_port=listen_port, jitprov_port=jitprov_port,
                                           app_port=app_port, rename=rename), "utf-8")
        globals_ = f"daemon off; pid {prefix / 'nginx.pid'}; error_log {self.error_log} info;"
        # -e: the error log nginx opens before it reads the configuration (default is /var/log)
        self.argv = [self.binary, "-p", str(prefix), "-c", str(self.conf),
                     "-e", str(self.error_log), "-g", globals_]
        self._proc: subprocess.Popen[bytes] | None = None

    def check(self) -> None:
        """``nginx -t`` on the rendered configuration."""
        result = subprocess.run([*self.argv, "-t"], capture_output=True, text=True,
                                timeout=START_TIMEOUT, check=False)
        if result.returncode != 0:
            raise HarnessError(f"nginx -t failed:\n{result.stderr}{_tail(self.error_log)}")

    def __enter__(self) -> Self:
        self.check()
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_answering(self.url + "/me", self._proc, "nginx", self.error_log)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc, signal.SIGQUIT)  # graceful: workers finish, then exit
            self._proc = None

    def error_log_text(self) -> str:
        return _tail(self.error_log, chars=20000)
