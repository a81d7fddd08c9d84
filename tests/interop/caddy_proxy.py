"""Forward-auth interop harness: real Caddy (Debian's ``caddy``) running the documented
``docs/forward-auth/Caddyfile``, as a child process on loopback::

    with CaddyProxy(workdir, listen_port=p, jitprov_port=j, app_port=a,
                    domain="jitprov.localhost") as caddy:
        ...  # http://app1.jitprov.localhost:p/ -> forward_auth -> jitprov, then the app

The Caddyfile is used as written, except: its upstream addresses (``127.0.0.1:8000`` jitprov,
``127.0.0.1:8080`` the application) get the test's ports, and each site address
(``app1.example.org``) becomes ``http://app1.<domain>:<listen_port>``. A global options block
is put in front: no admin endpoint, no automatic HTTPS (no certificate is asked for from
anyone), listening on 127.0.0.1 only, and every file Caddy keeps in the private directory.
No system service is involved; stopping is SIGTERM, then SIGKILL.

Without a ``caddy`` binary the tests are skipped, unless ``JITPROV_REQUIRE_INTEROP=1`` (CI),
where they fail (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from tests.interop.nginx_proxy import (
    REPO,
    REQUIRE_INTEROP,
    START_TIMEOUT,
    HarnessError,
    _stop,
    _tail,
    wait_until_answering,
)

CADDY_TEMPLATE = REPO / "docs" / "forward-auth" / "Caddyfile"
TEMPLATE_JITPROV = "127.0.0.1:8000"
TEMPLATE_APP = "127.0.0.1:8080"
TEMPLATE_DOMAIN = "example.org"
#: a site block's first line: addresses, then ``{``
_SITE_LINE = re.compile(r"^([A-Za-z0-9.,\- ]+) \{$", re.MULTILINE)


def require_caddy() -> str:
    """The caddy binary; skip (or fail under JITPROV_REQUIRE_INTEROP=1) when it is missing."""
    binary = shutil.which("caddy")
    if binary is None:
        problem = "caddy is not installed (apt-get install caddy)"
        if REQUIRE_INTEROP:
            pytest.fail(f"{problem} (JITPROV_REQUIRE_INTEROP=1)")
        pytest.skip(problem)
    return binary


def render_caddyfile(template: str, *, prefix: Path, listen_port: int, jitprov_port: int,
                     app_port: int, domain: str) -> str:
    """The documented Caddyfile on loopback (see the module docstring)."""
    for old in (TEMPLATE_JITPROV, TEMPLATE_APP):
        if old not in template:
            raise HarnessError(f"{CADDY_TEMPLATE.name}: no {old!r} to replace")
    body = (template.replace(TEMPLATE_JITPROV, f"127.0.0.1:{jitprov_port}")
            .replace(TEMPLATE_APP, f"127.0.0.1:{app_port}"))

    def site(match: re.Match[str]) -> str:
        addresses = [a.strip() for a in match.group(1).split(",")]
        if not all(a.endswith("." + TEMPLATE_DOMAIN) for a in addresses):
            raise HarnessError(f"{CADDY_TEMPLATE.name}: unexpected site address {match[0]!r}")
        local = [f"http://{a.removesuffix(TEMPLATE_DOMAIN)}{domain}:{listen_port}"
                 for a in addresses]
        return ", ".join(local) + " {"

    body, sites = _SITE_LINE.subn(site, body)
    if sites == 0:
        raise HarnessError(f"{CADDY_TEMPLATE.name}: no site block found")
    return ("{\n"
            "\tadmin off\n"
            "\tauto_https off\n"
            "\tdefault_bind 127.0.0.1\n"
            f"\tstorage file_system {prefix / 'data'}\n"
            "}\n\n" + body)


class CaddyProxy:
    """``caddy run`` in the foreground with the rendered Caddyfile."""

    def __init__(self, prefix: Path, *, listen_port: int, jitprov_port: int, app_port: int,
                 domain: str, template: Path = CADDY_TEMPLATE) -> None:
        self.binary = require_caddy()
        self.prefix = prefix
        self.port = listen_port
        self.conf = prefix / "Caddyfile"
        self.log = prefix / "caddy.log"
        self.conf.write_text(render_caddyfile(template.read_text("utf-8"), prefix=prefix,
                                              listen_port=listen_port,
                                              jitprov_port=jitprov_port, app_port=app_port,
                                              domain=domain), "utf-8")
        # Caddy keeps its state under $HOME / XDG directories: all of them here
        self.env = {**os.environ, "HOME": str(prefix), "XDG_DATA_HOME": str(prefix / "data"),
                    "XDG_CONFIG_HOME": str(prefix / "config")}
        self.argv = [self.binary, "run", "--config", str(self.conf), "--adapter", "caddyfile"]
        self._proc: subprocess.Popen[bytes] | None = None

    def check(self) -> None:
        """``caddy validate`` on the rendered Caddyfile."""
        result = subprocess.run([self.binary, "validate", "--config", str(self.conf),
                                 "--adapter", "caddyfile"], env=self.env, capture_output=True,
                                text=True, timeout=START_TIMEOUT, check=False)
        if result.returncode != 0:
            raise HarnessError(f"caddy validate failed:\n{result.stderr[-4000:]}")

    def __enter__(self) -> Self:
        self.check()
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(self.argv, env=self.env, cwd=self.prefix,
                                          stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT)
        try:
            wait_until_answering(f"http://127.0.0.1:{self.port}/", self._proc, "caddy",
                                 self.log)
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

    def log_text(self) -> str:
        return _tail(self.log, chars=20000)
