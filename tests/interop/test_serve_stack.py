"""The production stack as an operator runs it, checked end to end: ``jitprov serve --workers 2``
on PostgreSQL (directly, then through PgBouncer in transaction mode) behind the compose
deployment's nginx (``deploy/nginx.conf``, rendered with loopback addresses), a real OpenID
Provider (npm oidc-provider) and the machine's Redis for the shared rate limits.

Through nginx: an OIDC login (the OP's redirect, the callback, ``/me``), a SCIM burst past its
limit (429 with ``Retry-After`` and a SCIM error body, never a 5xx), five ``/metrics`` scrapes
(every counter only grows and the request counters equal the requests sent), ``/readyz``. Then
the JSON log of it all: every request nginx forwarded is one log line, found by the request id
nginx generated and jitprov echoed, and none of the secrets of the login, the SCIM client or
the scrapes is in it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from jitprov.services import admin
from jitprov.services.context import build_context
from jitprov.services.scim import tokens as scim_tokens
from jitprov.settings import load_settings
from jitprov.store.database import Database
from jitprov.testing.builders import HOSPITAL
from tests.cli.test_serve_observability import value
from tests.conftest import TEST_SECRET_KEY, fresh_database_url
from tests.interop.nginx_proxy import (
    START_TIMEOUT,
    HarnessError,
    _stop,
    free_port,
    require_nginx,
    wait_until_answering,
)
from tests.interop.oidc_op import OpenIdProvider, complete_login

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("oidc_op_available")]

REPO = Path(__file__).resolve().parents[2]
COMPOSE_NGINX = REPO / "deploy" / "nginx.conf"
JITPROV = str(Path(sys.executable).with_name("jitprov"))
METRICS_TOKEN = "scrape-" + "5b1e0c9d7a3f4e21"
CLIENT_SECRET = "op-client-secret-" + "8d41c7e2a9f0"
SCIM_LIMIT = 12
SCIM_BURST = 20
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
ANA = {"email": "ana.stackclaim@hospital.example", "email_verified": True,
       "name": "Ana Stackclaim", "department": "Ward 3", "groups": ["Nurses"]}


def render_compose_nginx(prefix: Path, *, listen_port: int, jitprov_port: int) -> str:
    """``deploy/nginx.conf`` with its two nodes replaced by one loopback ``serve``, its
    ``listen`` by a loopback port, and its logs, pid and temporary files in ``prefix``."""
    text = COMPOSE_NGINX.read_text("utf-8")
    replacements = [
        (r"server jitprov-1:8000 [^;]*;", f"server 127.0.0.1:{jitprov_port};"),
        (r"\n\s*server jitprov-2:8000 [^;]*;", ""),
        (r"listen 8080;", f"listen 127.0.0.1:{listen_port};"),
        (r"worker_processes auto;", "worker_processes 1;"),
        (r"error_log /dev/stderr warn;", f"error_log {prefix / 'error.log'} warn;"),
        (r"access_log /dev/stdout jitprov;", f"access_log {prefix / 'access.log'} jitprov;"),
    ]
    for pattern, new in replacements:
        text, count = re.subn(pattern, new, text, count=1)
        if count != 1:
            raise HarnessError(f"{COMPOSE_NGINX}: {pattern!r} not found")
    temp = "\n".join(f"    {name}_temp_path {prefix / name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
    text = text.replace("http {\n", "http {\n" + temp + "\n", 1)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"{user}pid {prefix / 'nginx.pid'};\n{text}"


class ComposeNginx:
    """nginx in the foreground with the rendered compose configuration."""

    def __init__(self, prefix: Path, *, listen_port: int, jitprov_port: int) -> None:
        binary = require_nginx()
        self.prefix = prefix
        self.url = f"http://127.0.0.1:{listen_port}"
        conf = prefix / "nginx.conf"
        conf.write_text(render_compose_nginx(prefix, listen_port=listen_port,
                                             jitprov_port=jitprov_port), "utf-8")
        self.argv = [binary, "-p", str(prefix), "-c", str(conf),
                     "-e", str(prefix / "error.log"), "-g", "daemon off;"]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ComposeNginx:
        checked = subprocess.run([*self.argv, "-t"], capture_output=True, text=True,
                                 timeout=START_TIMEOUT, check=False)
        if checked.returncode != 0:
            raise HarnessError(f"nginx -t failed:\n{checked.stderr}")
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_answering(self.url + "/healthz", self._proc, "nginx",
                             self.prefix / "error.log")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            _stop(self._proc, signal.SIGQUIT)
            self._proc = None

    def access_log(self) -> list[str]:
        return (self.prefix / "access.log").read_text("utf-8").splitlines()


@pytest.fixture
def op() -> Iterator[OpenIdProvider]:
    """The OP's only client redirects to a port picked now: nginx listens there later."""
    port = free_port()
    client = {"client_id": "okta", "client_secret": CLIENT_SECRET,
              "redirect_uris": [f"http://127.0.0.1:{port}/sso/okta/oidc/callback"],
              "grant_types": ["authorization_code"], "response_types": ["code"],
              "token_endpoint_auth_method": "client_secret_basic"}
    with OpenIdProvider(clients=[client], accounts={"ana": ANA}) as provider:
        provider.nginx_port = port  # type: ignore[attr-defined]
        yield provider


@pytest.mark.parametrize("kind", ["postgresql", "pgbouncer"])
@pytest.mark.postgres
def test_serve_two_workers_behind_the_compose_nginx(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path,
        op: OpenIdProvider, redis_url: str) -> None:
    database_url = fresh_database_url(kind, request, tmp_path, sqlite_template)
    nginx_port: int = op.nginx_port  # type: ignore[attr-defined]
    base_url = f"http://127.0.0.1:{nginx_port}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("JITPROV_")},
           "JITPROV_DATABASE_URL": database_url, "JITPROV_SECRET_KEY": TEST_SECRET_KEY,
           "JITPROV_BASE_URL": base_url, "JITPROV_TRUSTED_PROXIES": "127.0.0.1",
           "JITPROV_METRICS_TOKEN": METRICS_TOKEN, "JITPROV_REDIS_URL": redis_url,
           "JITPROV_RATE_LIMIT_SCIM": f"{SCIM_LIMIT}/hour",
           "JITPROV_OUTBOUND_ALLOW": "127.0.0.1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)

    settings = load_settings({k: v for k, v in env.items() if k.startswith("JITPROV_")})
    db = Database.connect(database_url, pool_size=1)
    ctx = build_context(settings, db)
    admin.create_tenant(ctx, "hospital")
    admin.add_oidc_connection(
        ctx, tenant="hospital", slug="okta",
        config={"issuer": op.issuer, "client_id": "okta",
                "scopes": ["openid", "email", "profile", "groups"]},
        client_secret=CLIENT_SECRET, mapping=HOSPITAL.format(linking="never"),
        mapping_source="hospital.yaml")
    scim_token = scim_tokens.create_token(ctx, "hospital", "entra")[1]
    ctx.http.close()
    db.dispose()

    port = free_port()
    (tmp_path / "nginx").mkdir()
    secrets = [CLIENT_SECRET, METRICS_TOKEN, scim_token]
    request_ids: list[str] = []
    statuses: list[int] = []
    log_file = tmp_path / "serve.log"
    with log_file.open("wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([JITPROV, "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", "2"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=out,
                                start_new_session=True)  # its workers stop with it, always
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/healthz", proc, "jitprov serve",
                             log_file, timeout=120)
        with ComposeNginx(tmp_path / "nginx", listen_port=nginx_port,
                          jitprov_port=port) as nginx, \
                httpx.Client(base_url=nginx.url, trust_env=False, timeout=20) as client:

            def sent(response: httpx.Response) -> httpx.Response:
                request_ids.append(response.headers["x-request-id"])
                statuses.append(response.status_code)
                return response

            # /readyz: the database answers through the stack
            ready = sent(client.get("/readyz"))
            assert ready.status_code == 200, ready.text

            # an OIDC login: the OP's page, its redirect to the callback, /me
            start = sent(client.get("/sso/okta/login", params={"return_to": "/me"}))
            assert start.status_code in (302, 303), start.text
            callback = complete_login(start.headers["location"], "ana")
            assert callback.startswith(base_url + "/sso/okta/oidc/callback?")
            query = urlsplit(callback).query
            secrets += [v for part in query.split("&") for v in part.split("=")[1:]
                        if len(v) >= 16]  # the code and the state
            landed = sent(client.get(callback.removeprefix(base_url)))
            assert landed.status_code in (302, 303), landed.text
            assert landed.headers["location"] == "/me"
            secrets += [v for v in client.cookies.values() if len(v) >= 16]
            me = sent(client.get("/me"))
            assert me.status_code == 200, me.text
            assert me.json()["email"] == ANA["email"]
            assert me.json()["roles"]  # the mapping granted the nurse her role

            scim = {"Authorization": f"Bearer {scim_token}",
                    "Content-Type": "application/scim+json"}
            created = refused = 0
            previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for round_ in range(5):
                for i in range(SCIM_BURST // 5):
                    r = sent(client.post("/scim/v2/hospital/Users", headers=scim, json={
                        "schemas": [SCIM_USER], "active": True,
                        "userName": f"scim{round_}-{i}@hospital.example"}))
                    if r.status_code == 201:
                        created += 1
                    else:
                        assert r.status_code == 429, r.text
                        assert int(r.headers["retry-after"]) >= 1
                        assert r.json()["schemas"] == [SCIM_ERROR]
                        assert r.json()["status"] == "429"
                        refused += 1
                # a scrape through nginx: counters only grow and equal the work done
                metrics = client.get("/metrics", headers={
                    "Authorization": f"Bearer {METRICS_TOKEN}"})
                request_ids.append(metrics.headers["x-request-id"])
                statuses.append(metrics.status_code)
                samples = scrape_text(metrics)
                assert value(samples, "jitprov_http_requests_total", method="POST",
                             route="/scim/v2/{tenant}/Users", status="201") == created
                assert value(samples, "jitprov_http_requests_total", method="POST",
                             route="/scim/v2/{tenant}/Users", status="429") == refused
                assert value(samples, "jitprov_scim_operations_total", resource="User",
                             operation="create", outcome="ok") == created
                assert value(samples, "jitprov_http_requests_total", method="GET",
                             route="/me", status="200") == 1
                assert value(samples, "jitprov_http_requests_total", method="GET",
                             route="/metrics", status="200") == round_
                for key, old in previous.items():
                    assert samples.get(key, 0.0) >= old, key
                previous = samples
            assert (created, refused) == (SCIM_LIMIT, SCIM_BURST - SCIM_LIMIT)
        # read once nginx has stopped: it writes a request's line after sending the response
        access = nginx.access_log()
    finally:
        _stop(proc, signal.SIGTERM)
        try:  # a worker still starting when the supervisor went: not left behind
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log = log_file.read_text("utf-8")

    assert all(status < 500 for status in statuses), statuses
    assert not [line for line in access if re.search(r'" 5\d\d ', line)], access
    forwarded = [line for line in access if '"GET /healthz"' not in line]  # its start probe
    assert len(forwarded) == len(request_ids)  # nginx forwarded exactly what was sent
    assert "Traceback" not in log
    assert [line for line in log.splitlines() if not line.startswith("{")] == []
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # all JSON
    served = [e for e in lines if e.get("event") == "request"]
    for request_id in request_ids:  # one line per request, under nginx's request id
        assert [e["request_id"] for e in served].count(request_id) == 1, request_id
    assert {e["request_id"] for e in served} - set(request_ids) <= {
        e["request_id"] for e in served if e["route"] == "/healthz"}
    decisions = [e for e in lines if e.get("event") == "login_decision"]
    assert [d["outcome"] for d in decisions] == ["create"]
    assert len(secrets) >= 6
    for secret in secrets:
        assert secret not in log
    for claim in ("stackclaim", "Stackclaim"):
        assert claim not in log
    cache_off = [e for e in lines if e.get("event") == "session_cache_off"]
    if kind == "pgbouncer":  # the fast path and the session cache off, each said so
        assert any("transaction pooler" in str(e.get("event")) for e in lines), lines[:20]
        assert cache_off and all("transaction pooler" in e["reason"] for e in cache_off)
    else:
        assert cache_off == []  # the workers listen for the database's notifications


def scrape_text(response: httpx.Response) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                   float]:
    assert response.status_code == 200, response.text
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(response.text):
        if family.type in ("counter", "histogram"):
            for s in family.samples:
                if s.name.endswith(("_total", "_count", "_sum", "_bucket")):
                    samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples

