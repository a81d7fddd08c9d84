"""What an operator sees of a real server: the metrics of ``serve --workers 2`` (scraped
several times: every counter only grows and equals the work done, the webhook job's included)
and the JSON log of ``dev`` (one line per request and per login decision, and none of the
secrets a login, a SCIM client and a console session used)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from tempfile import gettempdir
from typing import ClassVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jitprov.services import admin, webhooks
from jitprov.services.context import build_context
from jitprov.services.scim import tokens as scim_tokens
from jitprov.settings import load_settings
from jitprov.store.database import Database
from tests.cli.test_serve_workers import free_port
from tests.conftest import TEST_SECRET_KEY

JITPROV = str(Path(sys.executable).with_name("jitprov"))
METRICS_TOKEN = "scrape-" + "0123456789abcdef"
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"

pytestmark = pytest.mark.slow


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint on loopback that counts what it receives."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        Receiver.received.append(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def wait_until_up(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the server did not start")


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return out, err


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    samples = {}
    for family in text_string_to_metric_families(r.text):
        if family.type in ("counter", "histogram"):
            for s in family.samples:
                if s.name.endswith(("_total", "_count", "_sum", "_bucket")):
                    samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_two_workers_metrics_add_up_and_only_grow(tmp_path: Path, receiver: str) -> None:
    url_db = f"sqlite:///{tmp_path}/j.db"
    env = {**os.environ, "JITPROV_DATABASE_URL": url_db, "JITPROV_SECRET_KEY": TEST_SECRET_KEY,
           "JITPROV_METRICS_TOKEN": METRICS_TOKEN, "JITPROV_WEBHOOK_ALLOW_PRIVATE": "1"}
    for name in ("JITPROV_BASE_URL", "PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
        env.pop(name, None)
    subprocess.run([JITPROV, "db", "upgrade"], env=env, cwd=tmp_path, check=True,
                   capture_output=True)
    settings = load_settings({k: v for k, v in env.items() if k.startswith("JITPROV_")})
    db = Database.connect(url_db, pool_size=1)
    ctx = build_context(settings, db)
    admin.create_tenant(ctx, "hospital")
    # a secret in the endpoint's query string (some receivers authenticate so): never logged
    webhooks.add_endpoint(ctx, "hospital", receiver + "?key=hook-secret-4f2a9c",
                          ["account.created"])
    token = scim_tokens.create_token(ctx, "hospital", "entra")[1]
    db.dispose()
    before = set(Path(gettempdir()).glob("jitprov-metrics-*"))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([JITPROV, "serve", "--port", str(port), "--workers", "2"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(proc, url)
        scim = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        healthz_before = None
        scraped: list[int] = []
        previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for round_ in range(1, 6):
            for _ in range(3):
                assert httpx.get(url + "/healthz").status_code == 200
            body = {"schemas": [SCIM_USER], "userName": f"nurse{round_}@hospital.example",
                    "active": True}
            assert httpx.post(url + "/scim/v2/hospital/Users", headers=scim,
                              json=body).status_code == 201
            deadline = time.monotonic() + 20  # the supervisor's webhook job: once a second
            while len(Receiver.received) < round_ and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(Receiver.received) == round_
            while True:  # the delivery is counted right after the receiver answered
                samples = scrape(url)
                scraped.append(round_)
                delivered = value(samples, "jitprov_webhook_attempts_total",
                                  result="delivered")
                if delivered == round_ or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if healthz_before is None:  # the startup probe's /healthz calls
                healthz_before = value(samples, "jitprov_http_requests_total", method="GET",
                                       route="/healthz", status="200") - 3
            assert value(samples, "jitprov_http_requests_total", method="GET",
                         route="/healthz", status="200") == healthz_before + 3 * round_
            assert value(samples, "jitprov_http_requests_total", method="POST",
                         route="/scim/v2/{tenant}/Users", status="201") == round_
            assert value(samples, "jitprov_scim_operations_total", resource="User",
                         operation="create", outcome="ok") == round_
            assert value(samples, "jitprov_http_request_duration_seconds_count",
                         method="POST", route="/scim/v2/{tenant}/Users") == round_
            assert delivered == round_
            for key, old in previous.items():  # every counter, bucket and sum only grows
                assert samples.get(key, 0.0) >= old, key
            previous = samples
    finally:
        _, err = stop(proc)
    assert set(Path(gettempdir()).glob("jitprov-metrics-*")) == before, err  # its directory removed
    assert "Traceback" not in err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # JSON, all
    assert sum(1 for e in lines if e.get("event") == "request") >= 5 * 5
    # stderr is a pipe: request lines go out in batches, and SIGTERM loses none of them (the
    # last scrape's, answered just before the signal) nor a worker's last words
    assert sum(1 for e in lines if e.get("event") == "request"
               and e.get("route") == "/metrics") == len(scraped)
    assert sum(1 for e in lines if str(e.get("event", "")).startswith(
        "Finished server process")) == 2
    assert "hook-secret-4f2a9c" not in err and token not in err
    assert "\\u001b" not in err  # no terminal colour codes in a log file


def test_dev_json_log_has_a_line_per_request_and_no_secret(tmp_path: Path) -> None:
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{tmp_path}/j.db",
           "JITPROV_LOG_FORMAT": "json", "JITPROV_SECRET_KEY": TEST_SECRET_KEY}
    env.pop("JITPROV_BASE_URL", None)
    port = free_port()
    url = f"http://localhost:{port}"  # the URL dev prints
    proc = subprocess.Popen([JITPROV, "dev", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    secrets: list[str] = []
    requests = 0
    try:
        wait_until_up(proc, url)
        requests += 1  # (at least one probe answered 200; the others are counted from the log)
        settings = load_settings({"JITPROV_DATABASE_URL": f"sqlite:///{tmp_path}/j.db",
                                  "JITPROV_SECRET_KEY": TEST_SECRET_KEY})
        db = Database.connect(settings.database_url, pool_size=1)
        ctx = build_context(settings, db)
        scim_token = scim_tokens.create_token(ctx, "demo", "entra")[1]
        from jitprov.services import console

        bootstrap = console.create_bootstrap_link(ctx, url).url.split("#", 1)[1]
        db.dispose()
        secrets += [scim_token, bootstrap]

        with httpx.Client(base_url=url) as user:  # a full demo login
            r = user.get("/sso/demo/login", params={"return_to": "/me"})
            state = r.headers["location"].split("state=", 1)[1]
            secrets.append(state)
            form = {"state": state, "email": "olga.secretclaim@hospital.example",
                    "email_verified": "on", "name": "Olga Claimvalue", "groups": "Nurses"}
            page = user.post("/dev/idp/demo/authorize", data=form)
            fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"',
                                     page.text))
            secrets += [v for v in fields.values() if len(v) >= 16]
            r = user.post("/sso/demo/mock/callback", data=fields)
            assert r.status_code == 303, r.text
            secrets += [v for v in user.cookies.values() if len(v) >= 16]
            assert user.get("/me").status_code == 200
            requests += 4
        scim = {"Authorization": f"Bearer {scim_token}", "Content-Type": "application/scim+json"}
        assert httpx.get(url + "/scim/v2/demo/Users?filter=userName%20eq%20%22x%22",
                         headers=scim).status_code == 200
        assert httpx.post(url + "/scim/v2/demo/Users", headers=scim, json={
            "schemas": [SCIM_USER], "userName": "scim.person@hospital.example"}
        ).status_code == 201
        requests += 2
        with httpx.Client(base_url=url) as admin_browser:  # a console session
            r = admin_browser.post("/admin/bootstrap", data={"token": bootstrap})
            assert r.status_code == 303
            secrets += [v for v in admin_browser.cookies.values() if len(v) >= 16]
            page = admin_browser.get("/admin/audit", params={"tenant": "demo"})
            assert page.status_code == 200
            secrets += re.findall(r'name="csrf_token" value="([^"]+)"', page.text)
            requests += 2
    finally:
        _, log = stop(proc)

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # all JSON
    served = [e for e in lines if e.get("event") == "request"]
    assert len(served) >= requests
    assert len([e for e in served if e["route"] != "/healthz"]) == requests - 1
    for entry in served:
        assert {"request_id", "method", "route", "path", "status", "duration_ms", "time",
                "level"} <= entry.keys()
        assert "?" not in entry["path"]
    callback = next(e for e in served if e["route"] == "/sso/{connection}/mock/callback")
    assert (callback["tenant"], callback["connection"], callback["status"]) == \
        ("demo", "demo", 303)
    decisions = [e for e in lines if e.get("event") == "login_decision"]
    assert len(decisions) == 1
    assert decisions[0]["outcome"] == "create" and decisions[0]["account_id"]
    assert decisions[0]["request_id"] == callback["request_id"]
    assert isinstance(decisions[0]["rules"], list) and decisions[0]["rules"]
    assert len(secrets) >= 8
    for secret in secrets:
        assert secret not in log
    for claim in ("olga.secretclaim", "Claimvalue", "scim.person", "userName%20eq"):
        assert claim not in log
