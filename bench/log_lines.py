"""What a request's log line costs the server, written to a pipe as a container runtime or
journald reads it, one line at a time or in batches (``jitprov.services.logs``).

A child process configured as ``jitprov serve`` (JSON at INFO) writes a request line after
each stretch of busy work standing in for a request (300 µs: a server at ~3,000 requests per
second per worker), its stderr a pipe the parent reads. CPU is the child's per line, the busy
work taken out; the two ways alternate in blocks of 500 lines, so a slower stretch of the
machine hits both. A file takes the same line without waking a reader: its row is the floor.

``python -m bench --only log_lines`` (report.md), or ``python -m bench.log_lines [N]``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

GAP_US = 300
BLOCK = 500
FIELDS = {"method": "GET", "route": "/auth/verify", "path": "/auth/verify", "status": 200,
          "duration_ms": 0.212, "request_id": "5f1c2a9e0b7d4c33", "client": "10.0.3.17",
          "tenant": "hospital"}


def _busy(us: float) -> float:
    """Spin for ``us`` microseconds; returns the CPU it took."""
    cpu = time.process_time()
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass
    return time.process_time() - cpu


def _child(n: int) -> None:
    from jitprov.services import logs

    logs.configure("json", "INFO")
    batches = logs._batches  # None when stderr is not a pipe (the file row)
    log = logs.get_logger("jitprov.request")
    ways = {"in batches": batches, "one write each": None} if batches else {"file": None}
    per_line: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(max(1, n // BLOCK)):
        for way, sink in ways.items():
            logs._batches = sink
            busy = 0.0
            cpu = time.process_time()
            for _ in range(BLOCK):
                busy += _busy(GAP_US)
                log.info("request", **FIELDS)
            if batches is not None:
                batches.flush()
            per_line[way].append((time.process_time() - cpu - busy) / BLOCK * 1000)
    logs._batches = batches
    print(json.dumps({way: figures for way, figures in per_line.items()}), file=sys.__stdout__,
          flush=True)


def run(*, ops: int, postgres_url: str = "") -> list[dict[str, Any]]:
    del postgres_url
    n = max(16 * BLOCK, min(ops, 20_000))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryFile("w+") as file:
        for stderr in (subprocess.PIPE, file):
            done = subprocess.run([sys.executable, "-m", "bench.log_lines", "--child", str(n)],
                                  check=True, stdout=subprocess.PIPE, stderr=stderr, text=True)
            for way, figures in json.loads(done.stdout.strip().splitlines()[-1]).items():
                where = "a file" if way == "file" else f"a pipe, {way}"
                cpu = statistics.median(figures)
                rows.append({"scenario": f"request log line to {where} (CPU per line, "
                                         f"{GAP_US} µs apart)",
                             "db": "-", "clients": 1, "ops": len(figures) * BLOCK,
                             "ops_per_s": 1000 / (cpu + GAP_US / 1000), "cpu_ms_per_op": cpu,
                             "p50_ms": cpu, "p99_ms": max(figures)})
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]))
    else:
        for row in run(ops=int(sys.argv[1]) if len(sys.argv) > 1 else 8000):
            print(f"{row['scenario']:<75} {row['cpu_ms_per_op'] * 1000:.1f} µs CPU per line")
