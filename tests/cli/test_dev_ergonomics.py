"""Running the server from the command line: a busy port is said before anything else, the
links other commands print on the same database follow the server's base URL, and the passkey
pages work from the URL ``dev`` prints."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jitprov.cli.main import main
from tests.cli.test_serve_workers import METRICS_TOKEN, frozen_objects
from tests.conftest import TEST_SECRET_KEY

JITPROV = str(Path(sys.executable).with_name("jitprov"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_busy_port_is_one_line_before_any_banner(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   busy_port: int, command: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    with pytest.raises(SystemExit) as exited:
        main([command, "--port", str(busy_port),
              "--database-url", f"sqlite:///{tmp_path}/jitprov.db"])
    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert out == ""  # no banner, no links
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{busy_port}: ")
    assert err.rstrip().endswith("choose another with --port")
    assert not (tmp_path / "jitprov.db").exists()  # nothing started


def test_commands_print_links_for_the_port_dev_runs_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jitprov.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITPROV_")}
    env.update(JITPROV_DATABASE_URL=url, JITPROV_SECRET_KEY=TEST_SECRET_KEY,
               JITPROV_METRICS_TOKEN=METRICS_TOKEN)
    port = _free_port()
    proc = subprocess.Popen([JITPROV, "dev", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "dev did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        # dev, like serve, leaves what it built at start out of Python's full collections
        assert frozen_objects(port) > 50_000

        def cli(*argv: str, **extra: str) -> str:
            done = subprocess.run([JITPROV, *argv], env={**env, **extra}, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert f"http://localhost:{port}/admin/bootstrap" in cli("admin", "bootstrap")
        assert f"http://localhost:{port}/device/enrol?code=" in cli(
            "device", "register", "--tenant", "demo", "--name", "Ward 9", "--location", "W9")
        assert "https://id.hospital.example/admin/bootstrap" in cli(
            "admin", "bootstrap", JITPROV_BASE_URL="https://id.hospital.example")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_passkey_pages_work_from_the_url_dev_prints(tmp_path: Path) -> None:
    """WebAuthn needs a domain name, so ``dev`` prints (and builds every link from)
    ``http://localhost:PORT``: signed in there, ``/passkeys`` is the page itself, not a
    redirect to another host name where the session cookie is not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITPROV_")}
    env.update(JITPROV_DATABASE_URL=f"sqlite:///{tmp_path}/jitprov.db",
               JITPROV_SECRET_KEY=TEST_SECRET_KEY)
    port = _free_port()
    banner = tmp_path / "banner.txt"
    with banner.open("w") as out:
        proc = subprocess.Popen([JITPROV, "dev", "--port", str(port)], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while f"is running at http://localhost:{port}/" not in banner.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, banner.read_text()
            time.sleep(0.2)
        printed = banner.read_text().split("is running at ", 1)[1].split()[0].rstrip("/")
        assert printed == f"http://localhost:{port}"
        assert f"open http://localhost:{port}/device/enrol?code=" in banner.read_text()
        with httpx.Client(base_url=printed, timeout=10) as browser:
            while True:  # (the banner comes just before the server listens)
                try:
                    browser.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            start = browser.get("/sso/demo/login", params={"return_to": "/passkeys"})
            state = start.headers["location"].split("state=", 1)[1]
            page = browser.post("/dev/idp/demo/authorize", data={
                "state": state, "email": "ana@hospital.example", "email_verified": "on",
                "name": "Ana Lima", "groups": "Nurses"})
            fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"',
                                     page.text))
            landed = browser.post("/sso/demo/mock/callback", data=fields)
            assert landed.status_code == 303 and landed.headers["location"] == "/passkeys"
            passkeys = browser.get("/passkeys")
            assert passkeys.status_code == 200, passkeys.headers.get("location")
            assert 'id="passkeys"' in passkeys.text  # the page itself, signed in
    finally:
        proc.terminate()
        proc.wait(timeout=20)
