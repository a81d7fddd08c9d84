"""``python -m bench.setup_time``: how long a fresh clone takes from ``make run`` to its first
200 (the demo answering ``/healthz``), the way a new user meets the project.

Clones this repository's committed HEAD (or ``--ref``) into a temporary directory (no virtualenv, no
``var/``), runs ``make run PORT=<free port>`` there and polls the port. Two runs by default:
the first may download wheels into uv's cache, the second shows the time a user with a warm
cache (a second clone, CI on the same machine) sees. Writes bench/results/setup_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GIT = shutil.which("git") or "git"
MAKE = shutil.which("make") or "make"
RESULTS = REPO / "bench" / "results" / "setup_time.json"
TARGET_SECONDS = 40.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def one_run(ref: str = "HEAD", timeout: float = 300.0) -> dict[str, float]:
    """Seconds from ``make run`` to the first 200, and to the end of the install."""
    with tempfile.TemporaryDirectory(prefix="jitprov-setup-") as scratch:
        clone = Path(scratch) / "jitprov"
        subprocess.run([GIT, "clone", "--quiet", str(REPO), str(clone)], check=True)
        subprocess.run([GIT, "-C", str(clone), "checkout", "--quiet",
                        subprocess.run([GIT, "-C", str(REPO), "rev-parse", ref], check=True,
                                       capture_output=True, text=True).stdout.strip()],
                       check=True)
        port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JITPROV_", "VIRTUAL_ENV"))}
        started = time.monotonic()
        proc = subprocess.Popen([MAKE, "run", f"PORT={port}"], cwd=clone, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        installed = None
        try:
            while time.monotonic() - started < timeout:
                if installed is None and (clone / ".venv" / ".installed").exists():
                    installed = time.monotonic() - started
                if _answers(port):
                    return {"first_200_s": round(time.monotonic() - started, 1),
                            "install_s": round(installed or 0.0, 1)}
                if proc.poll() is not None:
                    raise RuntimeError(f"make run exited with {proc.returncode}")
                time.sleep(0.2)
            raise RuntimeError(f"no answer within {timeout:.0f} s")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--ref", default="HEAD", help="the commit to clone (default: HEAD)")
    args = parser.parse_args()
    runs = [one_run(args.ref) for _ in range(args.runs)]
    report = {"target_s": TARGET_SECONDS, "runs": runs,
              "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
