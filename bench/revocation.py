"""Deprovisioning latency: from an admin's deactivation request (admin API) to the first
refused forward-auth request with the user's old cookie, in-process, SQLite."""

from __future__ import annotations

import statistics
import time

from bench.demo_app import demo_app, sign_in
from jitprov.services import admin


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    del postgres_url
    rounds = min(ops, 200)
    ctx, app = demo_app()
    _, token = admin.create_admin_token(ctx, "bench")
    auth = {"Authorization": f"Bearer {token}"}
    samples: list[float] = []
    with app as client:
        for n in range(rounds):
            sign_in(client, f"u{n}@b.example")
            account_id = client.get("/me").json()["id"]
            t0 = time.perf_counter()
            client.post(f"/api/accounts/{account_id}/status", headers=auth,
                        json={"status": "deactivated", "reason": "bench"})
            refused = client.get("/auth/verify").status_code == 401
            samples.append(time.perf_counter() - t0)
            assert refused
    ctx.db.dispose()
    samples.sort()
    return [{"scenario": "deactivate -> first refused request (same process)", "db": "sqlite",
             "clients": 1, "ops": rounds, "ops_per_s": rounds / sum(samples),
             "cpu_ms_per_op": float("nan"), "p50_ms": statistics.median(samples) * 1000,
             "p99_ms": samples[int(rounds * 0.99) - 1] * 1000}]
