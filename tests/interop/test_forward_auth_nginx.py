"""Forward-auth through a real nginx: the documented ``docs/forward-auth/nginx.conf`` protects a
small app with jitprov's ``GET /auth/verify`` (``auth_request``), ``jitprov dev`` behind it.

Every request goes through nginx with an httpx client that keeps cookies and does not follow
redirects: the login is driven by hand (nginx -> jitprov login -> demo IdP -> callback).
Skipped without nginx, unless ``JITPROV_REQUIRE_INTEROP=1``.
"""

from __future__ import annotations

import html
import math
import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from tests.interop.nginx_proxy import (
    EchoApp,
    JitprovDev,
    NginxProxy,
    Ports,
    SeenRequest,
    require_nginx,
)

pytestmark = pytest.mark.slow

HIDDEN_INPUT = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')
IDENTITY_HEADERS = ("X-Jitprov-User", "X-Jitprov-Email", "X-Jitprov-Name", "X-Jitprov-Roles",
                    "X-Jitprov-Groups", "X-Jitprov-Tenant")
FORGED = {"X-Jitprov-Roles": "admin", "X-Jitprov-User": "someone-else",
          "X-Jitprov-Email": "boss@demo.hospital", "X-Jitprov-Tenant": "other"}


@dataclass(frozen=True)
class Stack:
    nginx: NginxProxy
    jitprov: JitprovDev
    app: EchoApp


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_nginx()
    ports = Ports.pick()
    jitprov_dir = tmp_path_factory.mktemp("jitprov")
    nginx_dir = tmp_path_factory.mktemp("nginx")
    with (JitprovDev(jitprov_dir, port=ports.jitprov, base_url=ports.nginx_url) as jitprov,
          EchoApp(port=ports.app) as app,
          NginxProxy(nginx_dir, listen_port=ports.nginx, jitprov_port=ports.jitprov,
                     app_port=ports.app) as nginx):
        yield Stack(nginx=nginx, jitprov=jitprov, app=app)


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.nginx.url, follow_redirects=False, timeout=10.0) as c:
        yield c


def new_client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.nginx.url, follow_redirects=False, timeout=10.0)


def login_location(path: str) -> str:
    return f"/sso/demo/login?return_to={path}"


def sign_in(client: httpx.Client, path: str, *, email: str, name: str, groups: str,
            department: str = "Ward 3") -> httpx.Response:
    """From a protected page to signed in, by hand; returns the callback's answer."""
    start = client.get(path)
    assert start.status_code == 302, start.text
    assert start.headers["location"] == login_location(path)
    login = client.get(start.headers["location"])
    assert login.status_code == 303, login.text
    idp = urlsplit(login.headers["location"])
    assert idp.path == "/dev/idp/demo"
    state = parse_qs(idp.query)["state"][0]
    assert client.get(login.headers["location"]).status_code == 200  # the demo IdP page
    autopost = client.post("/dev/idp/demo/authorize", data={
        "state": state, "email": email, "email_verified": "on", "name": name,
        "department": department, "groups": groups})
    assert autopost.status_code == 200, autopost.text
    fields = {k: html.unescape(v) for k, v in HIDDEN_INPUT.findall(autopost.text)}
    assert set(fields) == {"assertion", "state"}
    return client.post("/sso/demo/mock/callback", data=fields)


def account_id(client: httpx.Client) -> str:
    me = client.get("/me")
    assert me.status_code == 200, me.text
    return str(me.json()["id"])


def last_request(app: EchoApp, path: str) -> SeenRequest:
    seen = [r for r in app.requests if r.path == path]
    assert seen, f"the app never received {path}"
    return seen[-1]


def only_value(seen: SeenRequest, name: str) -> str:
    values = seen.values(name)
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def test_login_through_nginx_provisions_and_passes_identity(
        stack: Stack, client: httpx.Client) -> None:
    before = len(stack.app.requests)
    callback = sign_in(client, "/app/page", email="ana.lima@demo.hospital", name="Ana Lima",
                       groups="Nurses")
    assert callback.status_code == 303, callback.text
    assert callback.headers["location"] == "/app/page"
    assert "jitprov_session" in client.cookies
    assert len(stack.app.requests) == before, "the app was reached before sign-in"

    page = client.get(callback.headers["location"])
    assert page.status_code == 200, page.text
    assert page.json()["path"] == "/app/page"
    seen = last_request(stack.app, "/app/page")
    got = {name: only_value(seen, name) for name in IDENTITY_HEADERS}
    assert got == {
        "X-Jitprov-User": account_id(client),
        "X-Jitprov-Email": "ana.lima@demo.hospital",
        "X-Jitprov-Name": "Ana Lima",
        "X-Jitprov-Roles": "nurse,staff",
        "X-Jitprov-Groups": "Nurses",
        "X-Jitprov-Tenant": "demo",
    }
    token = only_value(seen, "X-Jitprov-Token")
    assert token.count(".") == 2  # the signed copy reaches the app too


def test_a_query_string_survives_the_login(stack: Stack, client: httpx.Client) -> None:
    callback = sign_in(client, "/app/search?q=ward", email="ana.lima@demo.hospital",
                       name="Ana Lima", groups="Nurses")
    assert callback.headers["location"] == "/app/search?q=ward"


def test_non_ascii_name_arrives_percent_encoded(stack: Stack, client: httpx.Client) -> None:
    sign_in(client, "/app/hello", email="jose.nandu@demo.hospital", name="José Ñandú",
            groups="Nurses")
    assert client.get("/app/hello").status_code == 200
    name = only_value(last_request(stack.app, "/app/hello"), "X-Jitprov-Name")
    assert name.isascii()
    assert unquote(name, encoding="utf-8", errors="strict") == "José Ñandú"


def test_client_sent_identity_headers_never_reach_the_app_signed_in(
        stack: Stack, client: httpx.Client) -> None:
    sign_in(client, "/app/forged", email="ana.lima@demo.hospital", name="Ana Lima",
            groups="Nurses")
    page = client.get("/app/forged", headers=FORGED)
    assert page.status_code == 200
    seen = last_request(stack.app, "/app/forged")
    assert only_value(seen, "X-Jitprov-Roles") == "nurse,staff"
    assert only_value(seen, "X-Jitprov-Email") == "ana.lima@demo.hospital"
    assert only_value(seen, "X-Jitprov-Tenant") == "demo"
    assert only_value(seen, "X-Jitprov-User") == account_id(client)
    # a forged role does not open a role-protected location either
    assert client.get("/pharmacy/stock", headers=FORGED).status_code == 403


def test_client_sent_identity_headers_do_not_get_an_anonymous_client_in(
        stack: Stack, client: httpx.Client) -> None:
    before = len(stack.app.requests)
    for path in ("/app/forged-anonymous", "/pharmacy/forged-anonymous"):
        answer = client.get(path, headers=FORGED)
        assert answer.status_code == 302
        assert answer.headers["location"] == login_location(path)
    assert len(stack.app.requests) == before, "the app was reached without a session"


def test_identity_headers_are_not_sent_to_jitprovs_own_pages(
        stack: Stack, client: httpx.Client) -> None:
    # /me is jitprov's: nginx clears the X-Jitprov-* a client sent, and jitprov ignores them
    assert client.get("/me", headers=FORGED).status_code == 401


def test_pharmacy_needs_the_pharmacist_role(stack: Stack) -> None:
    with new_client(stack) as nurse, new_client(stack) as pharmacist:
        sign_in(nurse, "/pharmacy/stock", email="ana.lima@demo.hospital", name="Ana Lima",
                groups="Nurses")
        assert nurse.get("/app/page").status_code == 200
        before = len(stack.app.requests)
        refused = nurse.get("/pharmacy/stock")
        assert refused.status_code == 403
        assert len(stack.app.requests) == before

        callback = sign_in(pharmacist, "/pharmacy/stock", email="chen.wei@demo.hospital",
                           name="Chen Wei", groups="Pharmacists,admin", department="Pharmacy")
        assert callback.headers["location"] == "/pharmacy/stock"
        allowed = pharmacist.get("/pharmacy/stock")
        assert allowed.status_code == 200, allowed.text
        seen = last_request(stack.app, "/pharmacy/stock")
        assert only_value(seen, "X-Jitprov-Roles") == "pharmacist,staff"  # IdP 'admin': no role
        assert set(only_value(seen, "X-Jitprov-Groups").split(",")) == {"Pharmacists", "admin"}


def test_deactivation_refuses_the_very_next_request(stack: Stack, client: httpx.Client) -> None:
    sign_in(client, "/app/page", email="leaver@demo.hospital", name="Lee Leaver",
            groups="Nurses")
    assert client.get("/app/page").status_code == 200
    account = account_id(client)
    cookie = client.cookies["jitprov_session"]

    result = stack.jitprov.cli("users", "deactivate", account, "--reason", "left the hospital")
    assert result.returncode == 0, result.stdout + result.stderr
    assert client.cookies["jitprov_session"] == cookie  # the same cookie is sent again

    before = len(stack.app.requests)
    refused = client.get("/app/page")
    assert refused.status_code == 302
    assert refused.headers["location"] == login_location("/app/page")
    assert len(stack.app.requests) == before
    assert client.get("/me").status_code == 401


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def timed_gets(client: httpx.Client, path: str, count: int) -> list[float]:
    for _ in range(10):  # warm up connections on every hop
        assert client.get(path).status_code == 200
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200
    return samples


def test_measure_latency_through_nginx_against_direct(
        stack: Stack, client: httpx.Client, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """Reports, never asserts, timings: this is a shared machine."""
    sign_in(client, "/app/timed", email="ana.lima@demo.hospital", name="Ana Lima",
            groups="Nurses")
    proxied = timed_gets(client, "/app/timed", 200)
    with httpx.Client(base_url=stack.app.url, timeout=10.0) as direct_client:
        direct = timed_gets(direct_client, "/app/timed", 200)
    lines = [f"{label}: median {statistics.median(s):.2f} ms, p99 {percentile(s, 0.99):.2f} ms "
             f"(n={len(s)})"
             for label, s in (("nginx + /auth/verify, signed in", proxied),
                              ("direct to the app", direct))]
    (tmp_path / "latency.txt").write_text("\n".join(lines) + "\n", "utf-8")
    with capsys.disabled():
        print("\nforward-auth latency: " + "; ".join(lines))


def test_a_role_waiting_for_approval_is_not_passed_on(stack: Stack, client: httpx.Client) -> None:
    sign_in(client, "/app/ward", email="ben.okafor@demo.hospital", name="Ben Okafor",
            groups="Nurses,Charge Nurses")
    assert client.get("/app/ward").status_code == 200
    assert only_value(last_request(stack.app, "/app/ward"), "X-Jitprov-Roles") == "nurse,staff"


def test_redirect_mode_as_traefik_and_caddy_call_it(stack: Stack) -> None:
    """docs/forward-auth/traefik.yml and Caddyfile are not run here; what they rely on is: the
    302 of ``mode=redirect&login=demo`` to the login, with X-Forwarded-Uri as return_to."""
    verify = stack.jitprov.url + "/auth/verify"
    original = "/app/search?q=ward&page=2"
    with httpx.Client(follow_redirects=False, timeout=10.0) as proxy:
        answer = proxy.get(verify, params={"mode": "redirect", "login": "demo"},
                           headers={"X-Forwarded-Uri": original})
        assert answer.status_code == 302
        target = urlsplit(answer.headers["location"])
        assert (target.scheme, target.netloc, target.path) == ("", "", "/sso/demo/login")
        assert parse_qs(target.query) == {"return_to": [original]}
        # an absolute URL is not a local path: the login comes back to /
        answer = proxy.get(verify, params={"mode": "redirect", "login": "demo"},
                           headers={"X-Forwarded-Uri": "//evil.example/x"})
        assert parse_qs(urlsplit(answer.headers["location"]).query) == {"return_to": ["/"]}
        # default mode: 401, never a redirect (nginx's auth_request only knows 2xx/401/403)
        assert proxy.get(verify, headers={"X-Original-URI": original}).status_code == 401


def test_one_of_several_required_roles_is_enough(stack: Stack, client: httpx.Client) -> None:
    """What a proxy sends for ``?role=a&role=b``, straight to jitprov with the session cookie."""
    sign_in(client, "/app/page", email="ana.lima@demo.hospital", name="Ana Lima",
            groups="Nurses")
    cookie = {"Cookie": f"jitprov_session={client.cookies['jitprov_session']}"}
    verify = stack.jitprov.url + "/auth/verify"
    with httpx.Client(follow_redirects=False, timeout=10.0) as proxy:
        either = proxy.get(verify, params=[("role", "pharmacist"), ("role", "nurse")],
                           headers=cookie)
        assert either.status_code == 200
        assert either.headers["X-Jitprov-Roles"] == "nurse,staff"
        neither = proxy.get(verify, params=[("role", "pharmacist"), ("role", "admin")],
                            headers=cookie)
        assert neither.status_code == 403
        assert not [h for h in neither.headers if h.lower().startswith("x-jitprov-")]
