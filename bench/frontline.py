"""Shared-device switch-user with a passkey, in-process: the server side of one tap
(request options -> verify the assertion -> end the previous user's session, open the new
one, audit ``session.switched`` and ``login.passkey``). Two nurses alternate on one kiosk, so
every round is a real switch. The software authenticator's signing is left out of the time.

Scenarios: the services alone (SQLite, and PostgreSQL when reachable), and the same through
the HTTP routes (Starlette TestClient, SQLite).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from jitprov.protocols.webauthn import RelyingParty
from jitprov.services import devices, passkeys
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database, normalise_url
from jitprov.testing.authenticator import SoftAuthenticator
from jitprov.testing.builders import nurse, setup_connection
from jitprov.web.app import create_app

RP = RelyingParty.from_base_url("http://testserver")


def _setup(db: Database) -> tuple[ServiceContext, Any, list[SoftAuthenticator], str]:
    ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
    setup_connection(ctx)
    keys = []
    for n in range(2):
        token = provision_on_login(ctx, "idp", nurse(f"n{n}", email=f"n{n}@h.example")
                                   ).session_token
        key = SoftAuthenticator()
        options = passkeys.begin_registration(ctx, RP, token)
        passkeys.finish_registration(ctx, RP, token, key.register(options))
        keys.append(key)
    registered = devices.register_device(ctx, "hospital", name="Bench kiosk", location="B")
    device, credential = devices.enrol_device(ctx, registered.code)
    return ctx, device, keys, credential


def _row(scenario: str, db: str, samples: list[float], cpu: float) -> dict[str, object]:
    samples.sort()
    n = len(samples)
    return {"scenario": scenario, "db": db, "clients": 1, "ops": n,
            "ops_per_s": n / sum(samples), "cpu_ms_per_op": cpu / n * 1000,
            "p50_ms": statistics.median(samples) * 1000,
            "p99_ms": samples[max(0, int(n * 0.99) - 1)] * 1000}


def _services(db: Database, label: str, rounds: int) -> dict[str, object]:
    ctx, device, keys, _ = _setup(db)
    token: str | None = None
    samples: list[float] = []
    cpu = 0.0
    for n in range(rounds):
        key = keys[n % 2]
        t0, c0 = time.perf_counter(), time.process_time()
        options = passkeys.begin_authentication(ctx, RP, device)
        t1, c1 = time.perf_counter(), time.process_time()
        answer = key.authenticate(options)  # the authenticator's part: not ours
        t2, c2 = time.perf_counter(), time.process_time()
        login = passkeys.finish_authentication(ctx, RP, answer, device=device,
                                               previous_session=token)
        t3, c3 = time.perf_counter(), time.process_time()
        assert login.token is not None and (n == 0 or login.switched_from)
        token = login.token
        samples.append((t1 - t0) + (t3 - t2))
        cpu += (c1 - c0) + (c3 - c2)
    return _row("passkey switch-user: options + verify + switch (services)", label, samples,
                cpu)


def _http(rounds: int) -> dict[str, object]:
    from starlette.testclient import TestClient

    tmp = tempfile.mkdtemp(prefix="jitprov-bench-")
    db = Database.connect(f"sqlite:///{tmp}/bench.db", pool_size=4)
    db.upgrade()
    ctx, _device, keys, credential = _setup(db)
    settings = Settings(base_url="http://testserver", secret_key="bench", dev_mode=True)
    client = TestClient(create_app(settings, ctx=ctx), follow_redirects=False)
    client.cookies.set("jitprov_device", credential, path="/device")
    headers = {"Accept": "application/json"}
    samples: list[float] = []
    cpu = 0.0
    with client:
        for n in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            options = client.post("/device/passkey/options", json={}, headers=headers).json()
            t1, c1 = time.perf_counter(), time.process_time()
            answer = keys[n % 2].authenticate(options)
            t2, c2 = time.perf_counter(), time.process_time()
            r = client.post("/device/passkey", json={"credential": answer}, headers=headers)
            t3, c3 = time.perf_counter(), time.process_time()
            assert r.status_code == 200, r.text
            samples.append((t1 - t0) + (t3 - t2))
            cpu += (c1 - c0) + (c3 - c2)
    db.dispose()
    return _row("passkey switch-user: 2 HTTP requests (TestClient, in-process)", "sqlite",
                samples, cpu)


def _with_sqlite(fn: Callable[[Database], dict[str, object]]) -> dict[str, object]:
    tmp = tempfile.mkdtemp(prefix="jitprov-bench-")
    db = Database.connect(f"sqlite:///{tmp}/bench.db", pool_size=4)
    db.upgrade()
    try:
        return fn(db)
    finally:
        db.dispose()


def _with_postgres(url: str, fn: Callable[[Database], dict[str, object]],
                   ) -> dict[str, object] | None:
    try:
        admin_engine = sa.create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS jitprov_bench_frontline WITH (FORCE)"))
            conn.execute(sa.text("CREATE DATABASE jitprov_bench_frontline"))
    except sa.exc.OperationalError:
        return None
    bench_url = sa.make_url(normalise_url(url)).set(database="jitprov_bench_frontline")
    db = Database.connect(bench_url.render_as_string(hide_password=False), pool_size=4)
    try:
        db.upgrade()
        return fn(db)
    finally:
        db.dispose()
        with admin_engine.connect() as conn:
            conn.execute(sa.text("DROP DATABASE IF EXISTS jitprov_bench_frontline WITH (FORCE)"))
        admin_engine.dispose()


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    rounds = min(ops, 500)
    rows = [_with_sqlite(lambda db: _services(db, "sqlite", rounds))]
    pg = _with_postgres(postgres_url, lambda db: _services(db, "postgresql", rounds))
    if pg is not None:
        rows.append(pg)
    rows.append(_http(rounds))
    return rows


if __name__ == "__main__":
    import os

    for row in run(ops=300, postgres_url=os.environ.get(
            "JITPROV_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")):
        print(row)
