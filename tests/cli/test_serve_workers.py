"""``jitprov serve --workers N``: N worker processes behind one port, jobs in the supervisor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


METRICS_TOKEN = "m" * 24


def frozen_objects(port: int) -> float:
    """``jitprov_gc_frozen_objects`` of whichever process answers ``/metrics``."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics",
                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    line = next(x for x in text.splitlines() if x.startswith("jitprov_gc_frozen_objects "))
    return float(line.split()[1])


def test_serve_runs_the_requested_number_of_workers(tmp_path: Path) -> None:
    jitprov = str(Path(sys.executable).with_name("jitprov"))
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{tmp_path}/j.db",
           "JITPROV_SECRET_KEY": TEST_SECRET_KEY, "JITPROV_METRICS_TOKEN": METRICS_TOKEN}
    env.pop("JITPROV_BASE_URL", None)
    subprocess.run([jitprov, "db", "upgrade"], env=env, cwd=tmp_path, check=True,
                   capture_output=True)
    port = free_port()
    proc = subprocess.Popen([jitprov, "serve", "--port", str(port), "--workers", "2"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        # uvicorn's supervisor holds the workers (and a resource tracker, sometimes)
        workers = [pid for pid in children_of(proc.pid)
                   if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        assert all(httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                   for _ in range(10))
        # each worker left what it built at start out of Python's full collections
        assert min(frozen_objects(port) for _ in range(6)) > 50_000
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "2 workers" in out


def test_serve_ignores_web_concurrency_from_the_environment(tmp_path: Path) -> None:
    # hosting platforms set WEB_CONCURRENCY; uvicorn would read it and fail to start an app
    # object in several workers: one process serves unless --workers says otherwise
    jitprov = str(Path(sys.executable).with_name("jitprov"))
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{tmp_path}/j.db",
           "JITPROV_SECRET_KEY": TEST_SECRET_KEY, "WEB_CONCURRENCY": "3",
           "JITPROV_METRICS_TOKEN": METRICS_TOKEN}
    env.pop("JITPROV_BASE_URL", None)
    subprocess.run([jitprov, "db", "upgrade"], env=env, cwd=tmp_path, check=True,
                   capture_output=True)
    port = free_port()
    proc = subprocess.Popen([jitprov, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        answered = False
        while time.monotonic() < deadline and not answered:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                answered = httpx.get(f"http://127.0.0.1:{port}/healthz",
                                     timeout=1).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        assert answered
        assert children_of(proc.pid) == set()
        assert frozen_objects(port) > 50_000  # one process: frozen where it serves
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
