"""One sign-in for two applications on two hosts, through real proxies and a real browser.

``jitprov dev`` runs as ``auth.jitprov.localhost`` with
``JITPROV_COOKIE_DOMAIN=jitprov.localhost`` and ``JITPROV_ALLOWED_RETURN_HOSTS`` naming ``app1``
and ``app2``; a proxy serves the three host names on one loopback port, by Host header: nginx
with the committed ``docs/forward-auth/nginx-multihost.conf``, Caddy with the committed
``docs/forward-auth/Caddyfile``, Traefik with the committed ``docs/forward-auth/traefik.yml``.
Debian's Chromium, whose resolver maps ``*.jitprov.localhost`` to 127.0.0.1, keeps cookies per
domain as any browser does: the shared cookie is really shared, and a host-only one would not
be.

Names under ``.localhost`` are loopback (RFC 6761), which is also why plain http is accepted
for them as ``return_to``. Skipped without nginx, Caddy, Traefik or Chromium, unless
``JITPROV_REQUIRE_INTEROP=1`` / ``JITPROV_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.interop.caddy_proxy import CaddyProxy
from tests.interop.nginx_proxy import (
    REPO,
    EchoApp,
    JitprovDev,
    NginxProxy,
    Ports,
    SeenRequest,
)
from tests.interop.traefik_proxy import TraefikProxy

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

DOMAIN = "jitprov.localhost"
NGINX_MULTIHOST = REPO / "docs" / "forward-auth" / "nginx-multihost.conf"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1"]
FORGED = {"X-Jitprov-Roles": "admin", "X-Jitprov-Email": "boss@demo.hospital",
          "X-Jitprov-User": "someone-else"}
#: names a CGI/WSGI/PHP-style application reads as X-Jitprov-Roles (HTTP_X_JITPROV_ROLES)
ALIASES = {"X_Jitprov_Roles": "admin", "X.Jitprov.Roles": "admin"}


@dataclass(frozen=True)
class Stack:
    proxy: str  # nginx | caddy
    port: int
    jitprov: JitprovDev
    app: EchoApp

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}.{DOMAIN}:{self.port}{path}"

    def seen(self, host: str, path: str) -> SeenRequest:
        """The last request the application received for ``path`` on ``host``."""
        found = [r for r in self.app.requests if r.path == path
                 and r.values("Host") and r.values("Host")[0].startswith(f"{host}.")]
        assert found, f"the application never received {host} {path}"
        return found[-1]


@pytest.fixture(scope="module", params=["nginx", "caddy", "traefik"])
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if CHROMIUM is None:
        if os.environ.get("JITPROV_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (JITPROV_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian chromium is not installed")
    ports = Ports.pick()
    port = ports.nginx  # the proxy's port, whichever proxy it is
    jitprov = JitprovDev(tmp_path_factory.mktemp("jitprov"), port=ports.jitprov,
                         base_url=f"http://auth.{DOMAIN}:{port}")
    jitprov.env.update({
        "JITPROV_COOKIE_DOMAIN": DOMAIN,
        "JITPROV_ALLOWED_RETURN_HOSTS": f"app1.{DOMAIN}:{port},app2.{DOMAIN}:{port}"})
    workdir = tmp_path_factory.mktemp(request.param)
    proxy: NginxProxy | CaddyProxy | TraefikProxy
    if request.param == "nginx":
        proxy = NginxProxy(workdir, listen_port=port, jitprov_port=ports.jitprov,
                           app_port=ports.app, template=NGINX_MULTIHOST,
                           rename={"example.org": DOMAIN})
    elif request.param == "caddy":
        proxy = CaddyProxy(workdir, listen_port=port, jitprov_port=ports.jitprov,
                           app_port=ports.app, domain=DOMAIN)
    else:
        proxy = TraefikProxy(workdir, listen_port=port, jitprov_port=ports.jitprov,
                             app_port=ports.app, domain=DOMAIN)
    with ExitStack() as running:
        running.enter_context(jitprov)
        app = running.enter_context(EchoApp(port=ports.app))
        running.enter_context(proxy)
        yield Stack(proxy=request.param, port=port, jitprov=jitprov, app=app)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile: no cookie yet."""
    ctx = browser.new_context()
    yield ctx
    ctx.close()


def sign_in_at_the_idp(page: Any, stack: Stack, preset: str = "Ana Lima: nurse on Ward 3"
                       ) -> None:
    """On the demo IdP's page (on jitprov's host): pick a user and sign in."""
    assert page.url.startswith(stack.url("auth", "/dev/idp/demo?")), page.url
    page.select_option("#preset", label=preset)
    page.click("#signin")


def session_cookies(context: Any) -> list[dict[str, Any]]:
    return [c for c in context.cookies() if c["name"] == "jitprov_session"]


def test_one_sign_in_opens_both_hosts(stack: Stack, context: Any) -> None:
    page = context.new_page()
    idp_pages: list[str] = []
    page.on("request", lambda r: idp_pages.append(r.url) if "/dev/idp/demo?" in r.url
            else None)
    start = stack.url("app1", "/ward/rota?day=mon&shift=night")
    page.goto(start)
    sign_in_at_the_idp(page, stack)
    page.wait_for_url(start)  # back on app1, on the very page, query string and all

    seen = stack.seen("app1", "/ward/rota?day=mon&shift=night")
    assert seen.values("X-Jitprov-Email") == ["ana.lima@demo.hospital"]
    assert seen.values("X-Jitprov-Roles") == ["nurse,staff"]
    [cookie] = session_cookies(context)
    assert (cookie["domain"], cookie["httpOnly"], cookie["sameSite"]) == (
        f".{DOMAIN}", True, "Lax")

    page.goto(stack.url("app2", "/stock"))  # the other application: no second login
    assert page.url == stack.url("app2", "/stock")
    assert stack.seen("app2", "/stock").values("X-Jitprov-Email") == ["ana.lima@demo.hospital"]
    assert len(idp_pages) == 1, idp_pages


def test_a_login_started_at_app2_returns_to_app2(stack: Stack, context: Any) -> None:
    page = context.new_page()
    start = stack.url("app2", "/rota/week?from=mon&to=fri")
    page.goto(start)
    sign_in_at_the_idp(page, stack, preset="Chen Wei: pharmacist, IdP group named 'admin'")
    page.wait_for_url(start)
    assert stack.seen("app2", "/rota/week?from=mon&to=fri").values("X-Jitprov-Email") == [
        "chen.wei@demo.hospital"]
    page.goto(stack.url("app1", "/"))
    assert page.url == stack.url("app1", "/")


def test_signing_out_on_jitprovs_host_closes_both(stack: Stack, context: Any) -> None:
    page = context.new_page()
    page.goto(stack.url("app1", "/before"))
    sign_in_at_the_idp(page, stack)
    page.wait_for_url(stack.url("app1", "/before"))
    page.goto(stack.url("auth", "/"))
    page.click("form[action='/logout'] button")
    page.wait_for_load_state()
    assert session_cookies(context) == []  # cleared with the Domain it was set with
    for host in ("app1", "app2"):
        page.goto(stack.url(host, "/after"))
        assert page.url.startswith(stack.url("auth", "/dev/idp/demo?")), page.url


def test_client_sent_identity_headers_never_reach_the_apps(stack: Stack, context: Any) -> None:
    page = context.new_page()
    page.goto(stack.url("app1", "/forged"))
    sign_in_at_the_idp(page, stack)
    page.wait_for_url(stack.url("app1", "/forged"))
    context.set_extra_http_headers({**FORGED, **ALIASES})
    for host in ("app1", "app2"):
        page.goto(stack.url(host, "/forged-again"))
        seen = stack.seen(host, "/forged-again")
        assert seen.values("X-Jitprov-Roles") == ["nurse,staff"]
        assert seen.values("X-Jitprov-Email") == ["ana.lima@demo.hospital"]
        assert seen.values("X-Jitprov-User") != ["someone-else"]
        aliased = [name for name, _ in seen.headers
                   if name.lower().replace("_", "-").replace(".", "-").startswith("x-jitprov-")
                   and not name.lower().startswith("x-jitprov-")]
        assert aliased == [], aliased


def test_anonymous_requests_go_to_the_login_with_the_absolute_return(stack: Stack) -> None:
    """Without a browser: the proxy's answer to an anonymous request, forged headers and all."""
    with httpx.Client(follow_redirects=False, timeout=10.0) as client:
        for host in ("app1", "app2"):
            answer = client.get(f"http://127.0.0.1:{stack.port}/a/b?x=1&y=2",
                                headers={"Host": f"{host}.{DOMAIN}:{stack.port}", **FORGED})
            assert answer.status_code == 302, answer.text
            target = urlsplit(answer.headers["location"])
            assert f"{target.scheme}://{target.netloc}{target.path}" == stack.url(
                "auth", "/sso/demo/login")
            assert parse_qs(target.query) == {"return_to": [stack.url(host, "/a/b?x=1&y=2")]}
    # Counted by path: a browser of an earlier test may still ask for its own pages meanwhile.
    reached = [r.path for r in stack.app.requests if r.path.startswith("/a/b")]
    assert reached == [], "the application was reached without a session"


def test_a_role_location_refuses_an_account_without_the_role(stack: Stack,
                                                            context: Any) -> None:
    if stack.proxy == "nginx":
        pytest.skip("nginx-multihost.conf has no role location (nginx.conf's is tested)")
    page = context.new_page()
    page.goto(stack.url("app1", "/pharmacy/stock"))
    sign_in_at_the_idp(page, stack)  # a nurse
    page.wait_for_url(stack.url("app1", "/pharmacy/stock"))
    before = len(stack.app.requests)
    answer = page.goto(stack.url("app2", "/pharmacy/stock"))
    assert answer is not None and answer.status == 403
    # (the browser may ask for /favicon.ico next, which any account may have)
    assert [r.path for r in stack.app.requests[before:] if r.path.startswith("/pharmacy/")] == []


def test_the_documented_files_are_the_ones_run() -> None:
    """The harnesses read the committed files; their settings lines match the test's."""
    for path in (NGINX_MULTIHOST, REPO / "docs" / "forward-auth" / "Caddyfile",
                 REPO / "docs" / "forward-auth" / "traefik.yml"):
        text = Path(path).read_text("utf-8")
        assert "JITPROV_COOKIE_DOMAIN=example.org" in text
        assert "JITPROV_ALLOWED_RETURN_HOSTS=app1.example.org,app2.example.org" in text
        assert "JITPROV_BASE_URL=https://auth.example.org" in text
