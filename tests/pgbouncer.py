"""A real PgBouncer in transaction mode on loopback, in front of the test PostgreSQL.

Debian's ``pgbouncer`` (``.ci/run`` installs it). Started in the foreground as a child of the
test session; as root it drops to the ``postgres`` user (PgBouncer refuses to run as root), so
its configuration lives in a directory that user can read. ``auth_type = trust`` like the test
server; every database name is passed through to the same name on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

EXECUTABLES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def executable() -> str | None:
    found = shutil.which("pgbouncer")
    return found or next((path for path in EXECUTABLES if os.path.exists(path)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """``start()`` it, ``url_for(postgres_url)`` gives the same database through it."""

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.port = _free_port()
        self.upstream = (upstream_host, upstream_port)
        self.directory = Path(tempfile.mkdtemp(prefix="jitprov-pgbouncer-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> None:
        self.directory.chmod(0o755)
        users = self.directory / "users.txt"
        users.write_text('"postgres" ""\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.upstream[0]} port={self.upstream[1]}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"auth_type = trust\nauth_file = {users}\n"
            "pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 500\n"
            "unix_socket_dir =\nserver_reset_query =\n")
        for path in (users, config):
            path.chmod(0o644)
        argv = [binary, str(config)]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "postgres"]
        self._log = (self.directory / "pgbouncer.log").open("wb")
        self._proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError("pgbouncer exited: "
                                   + (self.directory / "pgbouncer.log").read_text()[-500:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pgbouncer did not listen within 15 s")

    def url_for(self, postgres_url: str) -> str:
        return sa.make_url(postgres_url).set(host="127.0.0.1", port=self.port).render_as_string(
            hide_password=False)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)
