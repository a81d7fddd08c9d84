"""Deprovisioning latency: from a deactivation request to the first refused forward-auth
request with the user's old cookie, in-process, SQLite. Two triggers: the admin API
(``POST /api/accounts/{id}/status``) and SCIM (``PATCH /scim/v2/{tenant}/Users/{id}`` with
``active: false``, the IdP's deprovisioning; the account was signed in through SSO first and
is found by the IdP with ``userName eq``, as Okta and Entra do)."""

from __future__ import annotations

import statistics
import time

from bench.demo_app import demo_app, sign_in
from jitprov.services import admin
from jitprov.services.scim import tokens as scim_tokens


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
    return [_row("admin API deactivate -> first refused request", samples),
            _row("SCIM active:false -> first refused request", _scim(rounds))]


PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _scim(rounds: int) -> list[float]:
    ctx, app = demo_app()
    _, token = scim_tokens.create_token(ctx, "bench", "bench", connection="demo")
    scim = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    samples: list[float] = []
    with app as client:
        for n in range(rounds):
            email = f"s{n}@b.example"
            sign_in(client, email)
            found = client.get("/scim/v2/bench/Users", headers=scim,
                               params={"filter": f'userName eq "{email}"'}).json()
            user_id = found["Resources"][0]["id"]
            t0 = time.perf_counter()
            patched = client.patch(f"/scim/v2/bench/Users/{user_id}", headers=scim, json={
                "schemas": [PATCH],
                "Operations": [{"op": "replace", "path": "active", "value": False}]})
            refused = client.get("/auth/verify").status_code == 401
            samples.append(time.perf_counter() - t0)
            assert patched.status_code in (200, 204), patched.text
            assert refused
    ctx.db.dispose()
    return samples


def _row(scenario: str, samples: list[float]) -> dict[str, object]:
    samples = sorted(samples)
    return {"scenario": f"{scenario} (same process)", "db": "sqlite", "clients": 1,
            "ops": len(samples), "ops_per_s": len(samples) / sum(samples),
            "cpu_ms_per_op": float("nan"), "p50_ms": statistics.median(samples) * 1000,
            "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1000}
