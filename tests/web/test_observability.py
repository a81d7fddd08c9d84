"""The edge of every request through HTTP: request ids, client addresses behind proxies,
rate limits (429 with Retry-After on each limited path, shared through Redis, unlimited when
Redis is down), the metrics token, and the audit log searched by request id."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from starlette.testclient import TestClient

from jitprov.cli.main import main
from jitprov.services import metrics
from jitprov.services.context import ServiceContext
from jitprov.settings import Settings, load_operations
from jitprov.testing.builders import setup_connection
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY, Clock
from tests.web.console.test_console import bootstrap_sign_in
from tests.web.helpers import hidden_fields
from tests.web.scim_helpers import ERROR_SCHEMA, SCIM_JSON, auth, scim_token, user


def client_with(ctx: ServiceContext, peer: str = "testclient", **env: str) -> TestClient:
    """An app whose operations settings are read from ``env`` as the server reads them,
    called from the address ``peer``."""
    settings = Settings(base_url="http://testserver", secret_key=TEST_SECRET_KEY,
                        dev_mode=True, ops=load_operations(env, dev_mode=True))
    return TestClient(create_app(settings, ctx=ctx), base_url="http://testserver",
                      raise_server_exceptions=False, follow_redirects=False,
                      client=(peer, 50000))


def an_address() -> str:
    """A client address of its own for one test (the counters of Redis outlive a test)."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


@pytest.fixture
def hospital(ctx: ServiceContext) -> Iterator[ServiceContext]:
    setup_connection(ctx)
    yield ctx


@pytest.fixture
def mid_minute() -> Iterator[None]:
    """Time (ticking) at second 5 of the current minute: the in-memory limits count in
    minute windows, and a test that straddles a boundary sees the previous window weigh less
    (a small limit lets one more through). 55 seconds is more than any test here takes."""
    now = time.time()
    with time_machine.travel(now - now % 60 + 5, tick=True):
        yield


# -- request ids ------------------------------------------------------------------------------

def test_request_id_of_a_trusted_proxy_is_echoed_and_shown_on_the_error_page(
        hospital: ServiceContext) -> None:
    with client_with(hospital, JITPROV_TRUSTED_PROXIES="*") as client:
        r = client.get("/sso/no-such-connection/login", headers={"X-Request-Id": "lb-7f3a9c"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "lb-7f3a9c"
    assert "lb-7f3a9c" in r.text


def test_request_id_of_an_untrusted_peer_is_replaced(hospital: ServiceContext) -> None:
    # the test client's peer is not an address of JITPROV_TRUSTED_PROXIES (loopback)
    with client_with(hospital) as client:
        r = client.get("/healthz", headers={"X-Request-Id": "forged-by-client"})
        other = client.get("/healthz")
    assert r.headers["x-request-id"] != "forged-by-client"
    assert len(r.headers["x-request-id"]) == 16
    assert r.headers["x-request-id"] != other.headers["x-request-id"]


def test_a_malformed_request_id_of_a_trusted_proxy_is_replaced(
        hospital: ServiceContext) -> None:
    with client_with(hospital, JITPROV_TRUSTED_PROXIES="*") as client:
        r = client.get("/healthz", headers={"X-Request-Id": "a b<script>" + "x" * 80})
    assert len(r.headers["x-request-id"]) == 16


def test_login_request_id_is_searchable_in_the_console_and_the_cli(
        hospital: ServiceContext, database_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    rid = "proxy-" + secrets.token_hex(6)
    with client_with(hospital, JITPROV_TRUSTED_PROXIES="*") as client:
        r = client.get("/sso/idp/login", params={"return_to": "/me"})
        state = r.headers["location"].split("state=", 1)[1]
        form = {"state": state, "email": "ana@hospital.example", "email_verified": "on",
                "name": "Ana Lima", "department": "Ward 3", "groups": "Nurses"}
        page = client.post("/dev/idp/idp/authorize", data=form)
        r = client.post("/sso/idp/mock/callback", data=hidden_fields(page.text),
                        headers={"X-Request-Id": rid})
        assert r.status_code == 303, r.text
        client.cookies.clear()
        bootstrap_sign_in(client, hospital)
        found = client.get("/admin/audit", params={"tenant": "hospital", "request": rid})
        none = client.get("/admin/audit", params={"tenant": "hospital", "request": "nope"})
    assert found.status_code == 200
    assert "account.created" in found.text and f"request {rid}" in found.text
    assert f'name="request" value="{rid}"' in found.text
    assert "No event matches." in none.text

    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    with pytest.raises(SystemExit) as exited:
        main(["audit", "search", "--request-id", rid])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert len(out.splitlines()) == 1
    assert "account.created" in out and f"request={rid}" in out
    with pytest.raises(SystemExit):
        main(["audit", "search", "--request-id", "nope"])
    assert capsys.readouterr().out == "none\n"


# -- client address ---------------------------------------------------------------------------

@pytest.mark.usefixtures("mid_minute")
def test_forwarded_for_counts_only_through_a_trusted_hop(hospital: ServiceContext) -> None:
    limits = {"JITPROV_RATE_LIMIT_LOGIN": "1/minute"}
    with client_with(hospital, JITPROV_TRUSTED_PROXIES="*", **limits) as client:
        first = client.get("/sso/idp/login", headers={"X-Forwarded-For": an_address()})
        second = client.get("/sso/idp/login", headers={"X-Forwarded-For": an_address()})
    assert (first.status_code, second.status_code) == (303, 303)  # two clients
    with client_with(hospital, **limits) as client:  # the peer is not trusted
        first = client.get("/sso/idp/login", headers={"X-Forwarded-For": an_address()})
        second = client.get("/sso/idp/login", headers={"X-Forwarded-For": an_address()})
    assert (first.status_code, second.status_code) == (303, 429)  # one client, the peer


@pytest.mark.usefixtures("mid_minute")
def test_the_client_is_the_rightmost_address_not_a_trusted_hop(
        hospital: ServiceContext) -> None:
    # the edge proxy 10.0.0.5 appends what it saw (the client), after what the client sent;
    # an inner proxy 10.0.0.7 appends the edge proxy
    limits = {"JITPROV_RATE_LIMIT_LOGIN": "1/minute"}
    client_address = an_address()
    with client_with(hospital, peer="10.0.0.7", JITPROV_TRUSTED_PROXIES="10.0.0.0/24",
                     **limits) as client:
        r = client.get("/sso/idp/login", headers={
            "X-Forwarded-For": f"{an_address()}, {client_address}, 10.0.0.5"})
        assert r.status_code == 303
        # a forged left-most entry does not make a new client
        r = client.get("/sso/idp/login", headers={
            "X-Forwarded-For": f"{an_address()}, {client_address}, 10.0.0.5"})
        assert r.status_code == 429
        other = client.get("/sso/idp/login", headers={
            "X-Forwarded-For": f"{an_address()}, 10.0.0.5"})
    assert other.status_code == 303


# -- rate limits, each limited path -----------------------------------------------------------

def _assert_429(r: Any) -> None:
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "x-request-id" in r.headers


@pytest.mark.usefixtures("mid_minute")
def test_login_starts_are_limited_per_client_address(hospital: ServiceContext) -> None:
    with client_with(hospital, JITPROV_RATE_LIMIT_LOGIN="3/minute",
                     JITPROV_TRUSTED_PROXIES="*") as client:
        me = {"X-Forwarded-For": an_address()}
        answers = [client.get("/sso/idp/login", headers=me).status_code for _ in range(3)]
        r = client.get("/sso/idp/login", headers=me)
        other = client.get("/sso/idp/login", headers={"X-Forwarded-For": an_address()})
    assert answers == [303, 303, 303]
    _assert_429(r)
    assert "Too many attempts" in r.text and "try again in" in r.text  # a readable page
    assert other.status_code == 303


@pytest.mark.usefixtures("mid_minute")
def test_scim_is_limited_per_token_with_a_scim_error_body(hospital: ServiceContext) -> None:
    first, second = scim_token(hospital), scim_token(hospital, name="okta")
    labels = {"method": "GET", "route": "/scim/v2/{tenant}/Users", "status": "429"}
    counted = metrics.REGISTRY.get_sample_value("jitprov_http_requests_total", labels) or 0.0
    with client_with(hospital, JITPROV_RATE_LIMIT_SCIM="2/minute") as client:
        answers = [client.get("/scim/v2/hospital/Users", headers=auth(first)).status_code,
                   client.post("/scim/v2/hospital/Users", headers=auth(first),
                               json=user()).status_code]
        r = client.get("/scim/v2/hospital/Users", headers=auth(first))
        other = client.get("/scim/v2/hospital/Users", headers=auth(second))
    assert answers == [200, 201]
    _assert_429(r)
    assert r.headers["content-type"].startswith(SCIM_JSON)
    body = r.json()
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "429"
    assert "try again in" in body["detail"]
    assert other.status_code == 200
    # refused before the router, still counted under the route it asked for
    assert metrics.REGISTRY.get_sample_value("jitprov_http_requests_total",
                                             labels) == counted + 1


@pytest.mark.usefixtures("mid_minute")
@pytest.mark.parametrize(("method", "path", "limit"), [
    ("POST", "/passkeys/sign-in/options", "PASSKEY"),
    ("POST", "/passkeys/sign-in", "PASSKEY"),
    ("POST", "/device/passkey/options", "PASSKEY"),
    ("POST", "/device/passkey", "PASSKEY"),
    ("POST", "/break-glass", "BREAK_GLASS"),
    ("POST", "/admin/bootstrap", "CONSOLE"),
    ("POST", "/admin/sign-in/sso", "CONSOLE"),
    ("POST", "/sso/idp/backchannel-logout", "IDP_LOGOUT"),
    ("GET", "/sso/idp/saml/slo", "IDP_LOGOUT"),
])
def test_attempts_are_limited_per_client_address(hospital: ServiceContext, method: str,
                                                 path: str, limit: str) -> None:
    with client_with(hospital, **{f"JITPROV_RATE_LIMIT_{limit}": "2/minute"}) as client:
        answers = [client.request(method, path, data={"token": "x"}).status_code
                   for _ in range(2)]
        r = client.request(method, path, data={"token": "x"})
    assert 429 not in answers
    _assert_429(r)


def test_forward_auth_is_never_limited(hospital: ServiceContext) -> None:
    everything = {f"JITPROV_RATE_LIMIT_{name}": "1/minute"
                  for name in ("LOGIN", "SCIM", "PASSKEY", "BREAK_GLASS", "CONSOLE")}
    with client_with(hospital, **everything) as client:
        answers = {client.get("/auth/verify").status_code for _ in range(30)}
    assert 429 not in answers


@pytest.mark.usefixtures("mid_minute")
def test_a_limit_set_to_off_never_refuses(hospital: ServiceContext) -> None:
    with client_with(hospital, JITPROV_RATE_LIMIT_LOGIN="off") as client:
        answers = {client.get("/sso/idp/login").status_code for _ in range(150)}
    assert answers == {303}


@pytest.mark.usefixtures("mid_minute")
def test_the_server_defaults_limit_login_starts(hospital: ServiceContext) -> None:
    # 120 a minute per address unless configured: the 121st start is refused (a few more
    # may pass when the requests straddle a minute: the sliding window's previous minute
    # weighs less as the new one goes on)
    with client_with(hospital) as client:
        answers = [client.get("/sso/idp/login").status_code for _ in range(140)]
    assert answers[:120] == [303] * 120
    assert answers[120:].count(429) >= 5 and set(answers[120:]) <= {303, 429}


# -- Redis ------------------------------------------------------------------------------------

def test_limits_are_shared_by_two_instances_through_redis(hospital: ServiceContext,
                                                           redis_url: str) -> None:
    env = {"JITPROV_REDIS_URL": redis_url, "JITPROV_RATE_LIMIT_LOGIN": "3/minute",
           "JITPROV_TRUSTED_PROXIES": "*"}
    me = {"X-Forwarded-For": an_address()}
    with client_with(hospital, **env) as node_a, client_with(hospital, **env) as node_b:
        answers = [node_a.get("/sso/idp/login", headers=me).status_code,
                   node_b.get("/sso/idp/login", headers=me).status_code,
                   node_a.get("/sso/idp/login", headers=me).status_code]
        r = node_b.get("/sso/idp/login", headers=me)
    assert answers == [303, 303, 303]
    _assert_429(r)


def test_scim_limits_are_shared_through_redis(hospital: ServiceContext,
                                              redis_url: str) -> None:
    token = scim_token(hospital)
    env = {"JITPROV_REDIS_URL": redis_url, "JITPROV_RATE_LIMIT_SCIM": "2/minute"}
    with client_with(hospital, **env) as node_a, client_with(hospital, **env) as node_b:
        answers = [node_a.get("/scim/v2/hospital/Users", headers=auth(token)).status_code,
                   node_b.get("/scim/v2/hospital/Users", headers=auth(token)).status_code]
        r = node_a.get("/scim/v2/hospital/Users", headers=auth(token))
    assert answers == [200, 200]
    _assert_429(r)
    assert r.json()["status"] == "429"


def test_with_redis_down_requests_go_on_unlimited_with_one_log_line(
        hospital: ServiceContext, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    caplog.set_level(logging.INFO)
    with client_with(hospital, JITPROV_REDIS_URL=dead,
                     JITPROV_RATE_LIMIT_LOGIN="2/minute") as client:
        answers = {client.get("/sso/idp/login").status_code for _ in range(10)}
    assert answers == {303}
    warnings = [r for r in caplog.records if r.name == "jitprov.ratelimit"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "rate_limits_off" in str(warnings[0].msg)


# -- the metrics token ------------------------------------------------------------------------

def test_metrics_token_opens_metrics_and_nothing_else(hospital: ServiceContext) -> None:
    token = secrets.token_hex(16)
    with client_with(hospital, JITPROV_METRICS_TOKEN=token) as client:
        client.get("/healthz")
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        wrong = client.get("/metrics", headers={"Authorization": f"Bearer {token[:-1]}x"})
        none = client.get("/metrics")
        api = client.get("/api/tenants", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200
    assert 'jitprov_http_requests_total{method="GET",route="/healthz",status="200"}' \
        in scraped.text
    assert (wrong.status_code, none.status_code, api.status_code) == (401, 401, 401)


def test_a_short_metrics_token_is_refused_at_start() -> None:
    from jitprov.settings import SettingsError

    with pytest.raises(SettingsError, match="JITPROV_METRICS_TOKEN"):
        load_operations({"JITPROV_METRICS_TOKEN": "short"})


@pytest.mark.parametrize(("variable", "value"), [
    ("JITPROV_RATE_LIMIT_LOGIN", "lots"), ("JITPROV_RATE_LIMIT_SCIM", "0/minute"),
    ("JITPROV_TRUSTED_PROXIES", "10.0.0.0/33"), ("JITPROV_LOG_FORMAT", "xml"),
    ("JITPROV_LOG_LEVEL", "LOUD"), ("JITPROV_REDIS_URL", "http://127.0.0.1:6379"),
    ("JITPROV_SESSION_CACHE", "sometimes"),
])
def test_bad_operations_settings_are_refused_naming_the_variable(variable: str,
                                                                 value: str) -> None:
    from jitprov.settings import SettingsError

    with pytest.raises(SettingsError, match=variable):
        load_operations({variable: value})


# -- the host people use ----------------------------------------------------------------------

def _host_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "host_differs_from_base_url" in r.getMessage()]


def test_a_page_reached_by_another_host_is_logged_once(hospital: ServiceContext,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with client_with(hospital) as client:
        assert client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
        assert client.get("/", headers={"Host": "testserver:80"}).status_code == 200
        assert _host_warnings(caplog) == []  # probes, and the base URL's own host
        for _ in range(3):
            client.get("/", headers={"Host": "sso.other.example"})
    [warning] = _host_warnings(caplog)
    assert "sso.other.example" in warning and "http://testserver" in warning


def test_metrics_carry_idp_health_outbox_age_and_the_pool(hospital: ServiceContext,
                                                          clock: Clock) -> None:
    from jitprov.services import passkeys
    from jitprov.services.login.flow import provision_on_login
    from jitprov.testing.builders import nurse

    token = secrets.token_hex(16)
    with client_with(hospital, JITPROV_METRICS_TOKEN=token) as client:
        def scrape() -> str:
            answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200
            return answer.text

        first = scrape()
        assert 'jitprov_idp_up{connection="idp"} 1.0' in first
        assert "jitprov_outbox_oldest_age_seconds 0.0" in first
        assert "jitprov_db_pool_size " in first and "jitprov_db_pool_checked_out " in first
        assert "jitprov_gc_frozen_objects " in first
        passkeys.record_idp_health(hospital, "idp", ok=False, error="timeout", actor="test")
        provision_on_login(hospital, "idp", nurse())  # account.created waits in the outbox
        clock.advance(seconds=42)
        second = scrape()
    assert 'jitprov_idp_up{connection="idp"} 0.0' in second
    assert "jitprov_outbox_oldest_age_seconds 42.0" in second


def test_a_stalled_event_loop_shows_in_the_lag_histogram(ctx: ServiceContext) -> None:
    token = secrets.token_hex(16)

    def stalls_over_a_quarter_second(client: TestClient) -> float:
        text = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines()
                       if line.startswith("jitprov_event_loop_lag_seconds_"))
        return (float(samples["jitprov_event_loop_lag_seconds_count"])
                - float(samples['jitprov_event_loop_lag_seconds_bucket{le="0.25"}']))

    with client_with(ctx, JITPROV_METRICS_TOKEN=token) as client:
        before = stalls_over_a_quarter_second(client)
        assert client.portal is not None
        # blocks the server's event loop itself, longer than the watcher's period: a timer
        # falls due inside, and runs at least 0.3 s late
        client.portal.call(time.sleep, 0.8)
        deadline = time.monotonic() + 5
        while (stalls_over_a_quarter_second(client) == before
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert stalls_over_a_quarter_second(client) >= before + 1
