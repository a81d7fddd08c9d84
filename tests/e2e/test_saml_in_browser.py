"""SAML in a real browser: `jitprov serve` on http://127.0.0.1:PORT, a real SAML IdP (pysaml2)
on http://localhost:PORT2 — a different site, so its auto-submitted POST to our ACS is a
cross-site POST that carries no SameSite=Lax cookie. Chromium signs in through the IdP's
password form and must end on /me as the right account, after our ACS bounced the POST
through our own origin once. Then as in production, on https (nginx terminating TLS in front
of `jitprov serve`): the binding cookie is SameSite=None, the IdP's POST carries it, and the
login completes with no bounce.

Skipped without Chromium (unless JITPROV_REQUIRE_BROWSER=1) or without the IdP's runtime
(unless JITPROV_REQUIRE_INTEROP=1).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.e2e.test_demo_in_browser import CHROMIUM, CHROMIUM_ARGS, free_port
from tests.interop.nginx_proxy import nginx_binary
from tests.interop.saml_idp import SamlIdp, SamlIdpUnavailable, check_available

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAPPING = """\
profile:
  email: mail
  name: displayName
groups: isMemberOf
roles:
  default: [staff]
  rules:
    - id: nurses
      grant: [nurse]
      when: contains(isMemberOf, 'Nurses')
"""
ANA = {"mail": ["ana@hospital.example"], "displayName": ["Ana Lima"], "isMemberOf": ["Nurses"]}
BEN = {"mail": ["ben@hospital.example"], "displayName": ["Ben Okafor"],
       "isMemberOf": ["Porters"]}


def _require(ok: bool, what: str, flag: str) -> None:
    if not ok:
        if os.environ.get(flag) == "1":
            pytest.fail(f"{what} is required ({flag}=1) but unavailable")
        pytest.skip(f"{what} is unavailable")


@pytest.fixture(scope="module")
def idp() -> Iterator[SamlIdp]:
    _require(CHROMIUM is not None, "Chromium", "JITPROV_REQUIRE_BROWSER")
    try:
        check_available()
    except SamlIdpUnavailable as exc:
        _require(False, f"the SAML IdP ({exc})", "JITPROV_REQUIRE_INTEROP")
    users = {"ana": {"password": "ana-pw", "subject": "ana-0001", "attributes": ANA},
             "ben": {"password": "ben-pw", "subject": "ben-0002", "attributes": BEN}}
    with SamlIdp(users=users, host="localhost") as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, idp: SamlIdp) -> Iterator[str]:
    """`jitprov serve` with a SAML connection registered by the one admin command."""
    workdir = tmp_path_factory.mktemp("saml-serve")
    port = free_port()
    yield from _serve(workdir, idp, port, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory, idp: SamlIdp) -> Iterator[str]:
    """The same behind nginx terminating TLS (a self-signed certificate for 127.0.0.1), as in
    production: the public URL is https."""
    nginx = nginx_binary()
    _require(nginx is not None, "nginx", "JITPROV_REQUIRE_INTEROP")
    assert nginx is not None
    workdir = tmp_path_factory.mktemp("saml-serve-https")
    port, public = free_port(), free_port()
    _self_signed(workdir)
    (workdir / "nginx.conf").write_text(NGINX_TLS.format(dir=workdir, listen=public,
                                                         upstream=port))
    proxy = subprocess.Popen([nginx, "-c", str(workdir / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield from _serve(workdir, idp, port, f"https://127.0.0.1:{public}",
                          {"JITPROV_TRUSTED_PROXIES": "127.0.0.1"})
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


NGINX_TLS = """\
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{listen} ssl;
    ssl_certificate {dir}/tls.crt;
    ssl_certificate_key {dir}/tls.key;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $host:$server_port;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
"""


def _self_signed(directory: Path) -> None:
    """A throwaway certificate for 127.0.0.1 (the browser is told to accept it)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def _serve(workdir: Path, idp: SamlIdp, port: int, url: str,
           extra: dict[str, str] | None = None) -> Iterator[str]:
    """`jitprov serve` on ``port`` with the public URL ``url``, a SAML connection to ``idp``
    registered by the one admin command, and its SP metadata given to the IdP."""
    certificate = workdir / "tls.crt"  # the https variant's, trusted as its own CA here
    verify: bool | ssl.SSLContext = (ssl.create_default_context(cafile=str(certificate))
                                     if certificate.exists() else True)
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{workdir}/jitprov.db",
           "JITPROV_BASE_URL": url, "JITPROV_SECRET_KEY": TEST_SECRET_KEY,
           "JITPROV_OUTBOUND_ALLOW": "127.0.0.1/32,::1/128",  # the IdP is on loopback
           **(extra or {})}
    jitprov = str(Path(sys.executable).with_name("jitprov"))
    (workdir / "mapping.yaml").write_text(MAPPING)
    for command in (["db", "upgrade"], ["tenant", "create", "hospital"],
                    ["connection", "add-saml", "--tenant", "hospital", "--slug", "shib",
                     "--idp-metadata-url", idp.metadata_url, "--mapping", "mapping.yaml"]):
        done = subprocess.run([jitprov, *command], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    assert f"ACS URL (HTTP-POST):       {url}/sso/shib/saml/acs" in done.stdout
    proc = subprocess.Popen([jitprov, "serve", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1, verify=verify).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # (through nginx: a 502 until serve answers)
        if proc.poll() is not None:
            pytest.fail(f"jitprov serve exited: {proc.stdout.read() if proc.stdout else ''}")
    else:
        proc.kill()
        pytest.fail("jitprov serve did not answer within 60 s")
    # what the admin gives the IdP: our SP metadata
    idp.add_sp_metadata(httpx.get(f"{url}/sso/shib/saml/metadata", timeout=5,
                                  verify=verify).content)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture(scope="module")
def browser(idp: SamlIdp) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def sign_in(browser: object, server: str, idp: SamlIdp, user: str,
            password: str) -> tuple[object, list[str]]:
    """Sign in from a fresh browser context; returns (page, post bodies seen at the ACS)."""
    context = browser.new_context(  # type: ignore[attr-defined]
        ignore_https_errors=server.startswith("https:"))  # the test's self-signed certificate
    page = context.new_page()
    acs_posts: list[str] = []
    page.on("request", lambda r: acs_posts.append(r.post_data or "")
            if r.method == "POST" and r.url.endswith("/sso/shib/saml/acs") else None)
    page.goto(f"{server}/sso/shib/login?return_to=/me")
    assert page.url.startswith(f"{idp.base_url}/sso/redirect?")  # the other site's form
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_url(f"{server}/me", timeout=20_000)
    return page, acs_posts


def test_sp_initiated_login_through_a_cross_site_idp_ends_on_me(
        server: str, idp: SamlIdp, browser: object, tmp_path: Path) -> None:
    page, acs_posts = sign_in(browser, server, idp, "ana", "ana-pw")
    me = json.loads(page.locator("body").inner_text())  # type: ignore[attr-defined]
    assert (me["email"], me["name"], me["external_id"], me["roles"]) == (
        "ana@hospital.example", "Ana Lima", "ana-0001", ["nurse", "staff"])
    # the IdP's cross-site POST came without the Lax cookie and was bounced once, same-site
    assert len(acs_posts) == 2
    assert "jitprov_bounce" not in acs_posts[0] and "jitprov_bounce=1" in acs_posts[1]
    page.screenshot(path=str(tmp_path / "saml-me.png"))  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]


def test_a_second_user_gets_their_own_account(server: str, idp: SamlIdp,
                                              browser: object) -> None:
    page, _ = sign_in(browser, server, idp, "ben", "ben-pw")
    me = json.loads(page.locator("body").inner_text())  # type: ignore[attr-defined]
    assert (me["email"], me["roles"]) == ("ben@hospital.example", ["staff"])
    page.context.close()  # type: ignore[attr-defined]


def test_on_https_the_idps_cross_site_post_carries_the_cookie_and_nothing_bounces(
        https_server: str, idp: SamlIdp, browser: object) -> None:
    page, acs_posts = sign_in(browser, https_server, idp, "ana", "ana-pw")
    me = json.loads(page.locator("body").inner_text())  # type: ignore[attr-defined]
    assert (me["email"], me["roles"]) == ("ana@hospital.example", ["nurse", "staff"])
    assert len(acs_posts) == 1 and "jitprov_bounce" not in acs_posts[0]
    page.context.close()  # type: ignore[attr-defined]
