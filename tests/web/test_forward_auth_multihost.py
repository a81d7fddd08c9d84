"""Forward-auth for many apps, in-process: ``JITPROV_COOKIE_DOMAIN`` (the session cookie shared
by a parent domain) and ``JITPROV_ALLOWED_RETURN_HOSTS`` (an absolute ``return_to`` only to
those hosts), through HTTP: the login's return, the discovery form, the passkey sign-in and the
redirect of ``/auth/verify``. Hostile values never leave the site; the real browser and proxies
are in ``tests/interop/test_forward_auth_multihost.py``."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from jitprov.cli.main import main
from jitprov.services.context import ServiceContext
from jitprov.services.sessions import allowed_return_url, is_loopback_host, safe_return_to
from jitprov.settings import Settings, SettingsError, load_settings
from jitprov.testing.authenticator import SoftAuthenticator
from jitprov.testing.builders import setup_connection
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import hidden_fields, idp_response, make_client

BASE = "https://auth.example.org"
HOSTS = ("app1.example.org", "app2.example.org:8443", "ward.localhost:8080")


def multihost_client(ctx: ServiceContext, *, reached_at: str = BASE) -> TestClient:
    """The app as ``load_settings`` + ``build_context`` make it with both settings, the
    browser reaching it at ``reached_at``."""
    ctx.return_hosts = HOSTS
    settings = Settings(base_url=BASE, secret_key=TEST_SECRET_KEY, dev_mode=True,
                        cookie_domain="example.org", allowed_return_hosts=HOSTS)
    return TestClient(create_app(settings, ctx=ctx), base_url=reached_at,
                      raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture
def web(ctx: ServiceContext) -> Iterator[TestClient]:
    setup_connection(ctx)
    with multihost_client(ctx) as c:
        yield c


def login_return(client: TestClient, return_to: str) -> str | int:
    """Where the login's callback sends the browser for ``return_to``; the status code when
    the start is refused at the edge (a control character: 400)."""
    start = client.get("/sso/idp/login", params={"return_to": return_to})
    if start.status_code != 303:
        return start.status_code
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    done = client.post("/sso/idp/mock/callback", data=idp_response(client, state))
    assert done.status_code == 303, done.text
    return done.headers["location"]


# -- settings -------------------------------------------------------------------------------

def test_both_settings_are_read() -> None:
    env = {"JITPROV_SECRET_KEY": TEST_SECRET_KEY, "JITPROV_BASE_URL": BASE,
           "JITPROV_COOKIE_DOMAIN": ".Example.org",
           "JITPROV_ALLOWED_RETURN_HOSTS": " App1.example.org, app2.example.org:8443 ,"}
    settings = load_settings(env)
    assert settings.cookie_domain == "example.org"
    assert settings.allowed_return_hosts == ("app1.example.org", "app2.example.org:8443")
    unset = load_settings({"JITPROV_SECRET_KEY": TEST_SECRET_KEY})
    assert (unset.cookie_domain, unset.allowed_return_hosts) == ("", ())


@pytest.mark.parametrize(("name", "value", "says"), [
    ("JITPROV_COOKIE_DOMAIN", "example.com", "must contain the host of JITPROV_BASE_URL"),
    ("JITPROV_COOKIE_DOMAIN", "ample.org", "must contain the host of JITPROV_BASE_URL"),
    ("JITPROV_COOKIE_DOMAIN", "org", "at least two labels"),
    ("JITPROV_COOKIE_DOMAIN", "10.0.0.1", "at least two labels"),
    ("JITPROV_COOKIE_DOMAIN", "*.example.org", "at least two labels"),
    ("JITPROV_COOKIE_DOMAIN", "https://example.org", "at least two labels"),
    ("JITPROV_ALLOWED_RETURN_HOSTS", "*.example.org", "wildcards are not accepted"),
    ("JITPROV_ALLOWED_RETURN_HOSTS", "https://app1.example.org", "host names"),
    ("JITPROV_ALLOWED_RETURN_HOSTS", "app1.example.org/ward", "host names"),
    ("JITPROV_ALLOWED_RETURN_HOSTS", "app1.example.org:0", "host names"),
    ("JITPROV_ALLOWED_RETURN_HOSTS", "app1.example.org:99999", "host names"),
    ("JITPROV_ALLOWED_RETURN_HOSTS", "user@app1.example.org", "host names"),
    ("JITPROV_ALLOWED_RETURN_HOSTS", "\u0430pp1.example.org", "host names"),  # Cyrillic a
])
def test_a_bad_value_is_refused_at_start(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=name) as refused:
        load_settings({"JITPROV_SECRET_KEY": TEST_SECRET_KEY, "JITPROV_BASE_URL": BASE,
                       name: value})
    assert says in str(refused.value)


def test_the_server_refuses_to_start_with_one_line(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_BASE_URL", BASE)
    monkeypatch.setenv("JITPROV_COOKIE_DOMAIN", "example.net")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", "1"])
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert err == ("error: JITPROV_COOKIE_DOMAIN 'example.net' must contain the host of "
                   "JITPROV_BASE_URL ('auth.example.org'): the session cookie is set there\n")


# -- return_to: the table, through the login ------------------------------------------------

HOSTILE = [
    "//evil.example/x", "///evil.example", "https://evil.example/",
    "https://app1.example.org.attacker.example/",
    "https://app1.example.org@evil.example/", "https://evil.example@app1.example.org/",
    "https://app1.example.org:443@evil.example/", "https://app1.example.org%40evil.example/",
    "https://app1.example.org%2F@evil.example", "https://app1.example.org./",
    "http://app1.example.org/",  # plain http to a host that is not loopback
    "https://app1.example.org:8443/",  # a port not listed
    "https://app2.example.org/",  # app2 is listed with :8443 only
    "https://app1.example.org\\@evil.example/", "https:\\\\evil.example", "https:/\\evil.example",
    "/\\evil.example", "https://\u0430pp1.example.org/",  # Cyrillic a
    "https://app1.ex\uff41mple.org/", "https://app1.example.org\u3002evil.example/",  # fullwidth
    "https://xn--pp1-5cd.example.org/", "%2F%2Fevil.example", "https:%2F%2Fevil.example",
    "https://app1.example.org\t.evil.example/", "https://app1.example.org\n/",
    "/\t/evil.example", " https://app1.example.org/", "https://app1.example.org /",
    "javascript:alert(1)", "JaVaScRiPt://app1.example.org/%0Aalert(1)",
    "data:text/html,<script>alert(1)</script>", "https://app1.example.org:99999/",
    "https://app1.example.org:/", "https://[::1]/", "https://evil.localhost:8080/",
    "http://127.0.0.1/", "ftp://app1.example.org/", "https//app1.example.org/",
]


@pytest.mark.parametrize("target", HOSTILE)
def test_a_hostile_return_to_comes_back_to_root(web: TestClient, target: str) -> None:
    assert login_return(web, target) in ("/", 400)


@pytest.mark.parametrize(("target", "lands"), [
    ("https://app1.example.org/ward?day=mon#top", "https://app1.example.org/ward?day=mon#top"),
    ("HTTPS://APP1.Example.ORG/Ward", "https://app1.example.org/Ward"),
    ("https://app1.example.org:443/x", "https://app1.example.org/x"),
    ("https://app1.example.org", "https://app1.example.org/"),
    ("https://app1.example.org?x=1", "https://app1.example.org/?x=1"),
    ("https://app2.example.org:8443/rota", "https://app2.example.org:8443/rota"),
    ("http://ward.localhost:8080/", "http://ward.localhost:8080/"),  # loopback: http is fine
    ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),  # a local path, on this host
    ("/ward/rota?day=mon", "/ward/rota?day=mon"),
])
def test_a_listed_host_or_a_local_path_is_where_the_login_lands(
        web: TestClient, target: str, lands: str) -> None:
    assert login_return(web, target) == lands


def test_without_the_setting_an_absolute_url_is_refused(
        client: TestClient) -> None:
    assert login_return(client, "https://app1.example.org/ward") == "/"


def test_the_console_keeps_only_its_own_paths(web: TestClient) -> None:
    page = web.get("/admin/sign-in", params={"next": "https://app1.example.org/admin"})
    assert page.status_code == 200
    assert "app1.example.org" not in page.text


def test_discovery_keeps_a_listed_return_to(web: TestClient) -> None:
    page = web.get("/sso/discover", params={"return_to": "https://app2.example.org:8443/x"})
    assert html.unescape(hidden_fields(page.text)["return_to"]) == \
        "https://app2.example.org:8443/x"
    page = web.get("/sso/discover", params={"return_to": "https://evil.example/"})
    assert hidden_fields(page.text)["return_to"] == "/"


# -- return_to: a property, through the discovery form -------------------------------------

PIECES = ["https://", "http://", "//", "/", "\\", "@", ":", ".", "%2F", "%40", "#", "?", "\t",
          "app1.example.org", "app2.example.org", "ward.localhost", "evil.example", ":8443",
          ":8080", ":443", "\u0430", "\u3002", "xn--", "javascript:", " ", "localhost", "127.0.0.1"]
URLISH = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)


def lands_inside(value: str) -> bool:
    """A local path of this host, or an http(s) URL whose host (as httpx, a WHATWG-minded
    parser, reads it) is listed, with https unless it is loopback."""
    if value.startswith("/"):
        return not value.startswith("//") and "\\" not in value
    url = httpx.URL(value)
    port = url.port or {"https": 443, "http": 80}[url.scheme]
    listed = f"{url.host}:{port}" in HOSTS or (url.port is None and url.host in HOSTS)
    return listed and not url.userinfo and (url.scheme == "https" or
                                            is_loopback_host(url.host))


@given(URLISH)
def test_safe_return_to_never_leaves_the_listed_hosts(value: str) -> None:
    result = safe_return_to(value, HOSTS)
    assert lands_inside(result), (value, result)
    if not value.startswith("/"):
        assert result == "/" or result == allowed_return_url(value, HOSTS)


@hypothesis_settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(URLISH)
def test_the_discovery_form_never_carries_an_outside_return_to(
        web: TestClient, value: str) -> None:
    page = web.get("/sso/discover", params={"return_to": value})
    if page.status_code == 400:  # a control character, refused at the edge
        return
    assert lands_inside(html.unescape(hidden_fields(page.text)["return_to"])), value


# -- the session cookie --------------------------------------------------------------------

def set_cookies(response: Any) -> list[str]:
    return [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"
            and v.startswith("jitprov_session=")]


def test_the_session_cookie_is_shared_with_the_parent_domain(web: TestClient) -> None:
    start = web.get("/sso/idp/login", params={"return_to": "https://app1.example.org/"})
    [login_cookie] = start.headers.get_list("set-cookie")  # the login's own: jitprov's host
    assert "Path=/sso/" in login_cookie and "Domain=" not in login_cookie
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    done = web.post("/sso/idp/mock/callback", data=idp_response(web, state))
    expired, shared = set_cookies(done)
    assert "Domain=" not in expired and "Max-Age=0" in expired  # an older host-only one
    assert "Domain=example.org" in shared and "HttpOnly" in shared and "Secure" in shared
    # the other app's host sends it: forward-auth answers 200 there
    verify = web.get("https://app2.example.org:8443/auth/verify")
    assert verify.status_code == 200
    assert verify.headers["x-jitprov-email"] == "ana@hospital.example"
    # the console's cookies stay on jitprov's own host
    for cookie in done.headers.get_list("set-cookie"):
        assert "Domain=" not in cookie or cookie.startswith("jitprov_session=")


def test_sign_out_clears_the_cookie_with_its_domain(web: TestClient) -> None:
    login_return(web, "/")
    assert web.get("/me").status_code == 200
    out = web.post("/logout", headers={"Origin": BASE})
    assert out.status_code == 303
    cleared = set_cookies(out)
    assert any("Domain=example.org" in c and "Max-Age=0" in c for c in cleared)
    assert any("Domain=" not in c and "Max-Age=0" in c for c in cleared)
    assert web.get("https://app1.example.org/auth/verify").status_code == 401


def test_reached_by_another_name_the_cookie_stays_host_only(ctx: ServiceContext) -> None:
    """A browser drops a cookie whose Domain its host is outside of: jitprov reached by its
    address still signs in, host-only."""
    setup_connection(ctx)
    with multihost_client(ctx, reached_at="https://10.1.2.3") as web:
        start = web.get("/sso/idp/login", params={"return_to": "/"})
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        [cookie] = set_cookies(web.post("/sso/idp/mock/callback",
                                        data=idp_response(web, state)))
        assert "Domain=" not in cookie


def test_without_a_cookie_domain_the_cookie_is_host_only(client: TestClient) -> None:
    start = client.get("/sso/idp/login", params={"return_to": "/"})
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    [cookie] = set_cookies(client.post("/sso/idp/mock/callback",
                                       data=idp_response(client, state)))
    assert "Domain=" not in cookie


# -- /auth/verify: back to the original host -----------------------------------------------

def verify(client: TestClient, headers: dict[str, str], **params: str) -> Any:
    return client.get("/auth/verify", params=params, headers=headers)


def test_redirect_mode_returns_to_a_listed_host_from_forwarded_headers(
        web: TestClient) -> None:
    """Traefik's and Caddy's X-Forwarded-Proto/-Host/-Uri."""
    r = verify(web, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app1.example.org",
                     "X-Forwarded-Uri": "/ward/rota?day=mon&shift=night"},
               mode="redirect", login="idp")
    assert r.status_code == 302
    target = urlsplit(r.headers["location"])
    assert (target.scheme, target.netloc, target.path) == ("https", "auth.example.org",
                                                          "/sso/idp/login")
    assert parse_qs(target.query) == {
        "return_to": ["https://app1.example.org/ward/rota?day=mon&shift=night"]}
    # ... and that login lands there
    assert login_return(web, parse_qs(target.query)["return_to"][0]) == \
        "https://app1.example.org/ward/rota?day=mon&shift=night"


def test_the_401_carries_the_login_address_for_nginx(web: TestClient) -> None:
    """nginx: X-Original-URL, and the address in X-Jitprov-Login for its error_page."""
    r = verify(web, {"X-Original-URL": "https://app2.example.org:8443/rota?a=1&b=2"},
               login="idp")
    assert (r.status_code, r.headers["cache-control"]) == (401, "no-store")
    assert r.headers["x-jitprov-login"] == (
        "https://auth.example.org/sso/idp/login?return_to="
        "https%3A%2F%2Fapp2.example.org%3A8443%2Frota%3Fa%3D1%26b%3D2")
    assert "x-jitprov-login" not in verify(web, {}).headers  # no login named: a bare 401


@pytest.mark.parametrize("headers", [
    {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "X-Forwarded-Uri": "/x"},
    {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "app1.example.org", "X-Forwarded-Uri": "/x"},
    {"X-Original-URL": "https://app1.example.org@evil.example/x", "X-Original-URI": "/x"},
    {"X-Original-URL": "https://app1.example.org:8443/x"},  # a port not listed
])
def test_an_unlisted_origin_comes_back_to_the_path_on_jitprovs_host(
        web: TestClient, headers: dict[str, str]) -> None:
    r = verify(web, headers, mode="redirect", login="idp")
    assert r.headers["location"] == f"{BASE}/sso/idp/login?return_to=%2Fx"


@pytest.mark.parametrize("headers", [
    {"X-Original-URL": "http://[::1"},
    {"X-Original-URL": "https://app1.example.org:99999/x"},
    {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "[", "X-Forwarded-Uri": "/x"},
    {"X-Original-URL": "%%%", "X-Original-URI": "//evil.example"},
])
def test_malformed_forwarded_values_are_a_plain_refusal(web: TestClient,
                                                       headers: dict[str, str]) -> None:
    for params in ({"mode": "redirect", "login": "idp"}, {"login": "idp"}):
        r = verify(web, headers, **params)
        assert r.status_code in (302, 401), r.text
        target = r.headers.get("location") or r.headers["x-jitprov-login"]
        assert target.startswith((f"{BASE}/sso/idp/login?return_to=%2F",
                                  "/sso/idp/login?return_to=%2F")), target
        assert "evil" not in target


def test_without_the_page_s_origin_the_login_stays_relative(web: TestClient) -> None:
    r = verify(web, {"X-Forwarded-Host": "app1.example.org", "X-Forwarded-Uri": "/x"},
               mode="redirect", login="idp")  # no scheme: no origin
    assert r.headers["location"] == "/sso/idp/login?return_to=%2Fx"


def test_jitprovs_own_host_keeps_a_relative_login(web: TestClient, ctx: ServiceContext) -> None:
    ctx.return_hosts = (*HOSTS, "auth.example.org")
    r = verify(web, {"X-Original-URL": "https://auth.example.org/me"}, mode="redirect",
               login="idp")
    assert r.headers["location"] == "/sso/idp/login?return_to=%2Fme"


def test_passkey_sign_in_returns_to_a_listed_host(web: TestClient, ctx: ServiceContext) -> None:
    from tests.web.test_devices_routes import JSON, tap

    login_return(web, "/")
    key = SoftAuthenticator(origin=BASE, rp_id="auth.example.org")
    options = web.post("/passkeys/register/options", json={}, headers=JSON)
    saved = web.post("/passkeys/register", json={"credential": key.register(options.json()),
                                                 "name": "badge"}, headers=JSON)
    assert saved.status_code == 201, saved.text
    with multihost_client(ctx) as fresh:
        done = tap(fresh, key, return_to="https://app1.example.org/ward")
        assert done.json()["redirect"] == "https://app1.example.org/ward"
        assert "Domain=example.org" in set_cookies(done)[-1]
        assert tap(fresh, key, return_to="https://evil.example/").json()["redirect"] == "/"


def test_a_plain_client_is_unchanged(ctx: ServiceContext) -> None:
    """No setting: the relative login of one host, as before."""
    setup_connection(ctx)
    with make_client(ctx) as c:
        r = verify(c, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app1.example.org",
                       "X-Forwarded-Uri": "/x"}, mode="redirect", login="idp")
        assert r.headers["location"] == "/sso/idp/login?return_to=%2Fx"


def test_the_console_cookie_stays_on_jitprovs_host(web: TestClient, ctx: ServiceContext) -> None:
    from jitprov.services import console

    link = console.create_bootstrap_link(ctx, BASE, tenant="hospital")
    r = web.post("/admin/bootstrap", data={"token": link.url.split("#", 1)[1]},
                 headers={"Origin": BASE})
    assert r.status_code == 303, r.text
    [admin_cookie] = [c for c in r.headers.get_list("set-cookie")
                      if not c.startswith("jitprov_session=")]
    assert "Path=/admin" in admin_cookie and "Domain=" not in admin_cookie
