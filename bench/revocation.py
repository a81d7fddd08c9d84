"""Deprovisioning latency: from an admin's deactivation request (admin API) to the first
refused forward-auth request with the user's old cookie, in-process, SQLite."""

from __future__ import annotations

import re
import statistics
import tempfile
import time

from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app

MAPPING = "profile: {email: email}\nroles: {default: [staff]}\n"


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    del postgres_url
    rounds = min(ops, 200)
    tmp = tempfile.mkdtemp(prefix="jitprov-bench-rev-")
    db = Database.connect(f"sqlite:///{tmp}/rev.db", pool_size=4)
    db.upgrade()
    ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
    admin.create_tenant(ctx, "bench")
    admin.add_mock_connection(ctx, tenant="bench", slug="demo", mapping=MAPPING,
                              mapping_source="bench.yaml")
    _, token = admin.create_admin_token(ctx, "bench")
    auth = {"Authorization": f"Bearer {token}"}
    settings = Settings(base_url="http://testserver", secret_key="bench", dev_mode=True)
    samples: list[float] = []
    with TestClient(create_app(settings, ctx=ctx), follow_redirects=False) as client:
        for n in range(rounds):
            client.cookies.clear()
            state = client.get("/sso/demo/login").headers["location"].split("state=")[1]
            page = client.post("/dev/idp/demo/authorize", data={
                "state": state, "email": f"u{n}@b.example", "email_verified": "on"}).text
            client.post("/sso/demo/mock/callback",
                        data=dict(re.findall(r'name="(\w+)" value="([^"]*)"', page)))
            account_id = client.get("/me").json()["id"]
            t0 = time.perf_counter()
            client.post(f"/api/accounts/{account_id}/status", headers=auth,
                        json={"status": "deactivated", "reason": "bench"})
            refused = client.get("/auth/verify").status_code == 401
            samples.append(time.perf_counter() - t0)
            assert refused
    db.dispose()
    samples.sort()
    return [{"scenario": "deactivate -> first refused request (same process)", "db": "sqlite",
             "clients": 1, "ops": rounds, "ops_per_s": rounds / sum(samples),
             "cpu_ms_per_op": float("nan"), "p50_ms": statistics.median(samples) * 1000,
             "p99_ms": samples[int(rounds * 0.99) - 1] * 1000}]
