"""Frontline and shared devices in a real browser: `jitprov dev` with its demo kiosk, Debian's
Chromium through Playwright, and Chromium's virtual authenticator (CDP ``WebAuthn`` domain)
standing in for a platform authenticator with user verification.

One kiosk, two nurses: enrol the device from the link `jitprov dev` prints; each nurse signs
in once through the demo IdP on the kiosk and adds a passkey; then "switch user" with a
passkey ends the other's session (its cookie is refused at once), and the idle lock brings the
lock screen back without the previous user's data. Skipped without Chromium, unless
JITPROV_REQUIRE_BROWSER=1 (CI).

WebAuthn needs a domain as RP ID: Chromium refuses ``127.0.0.1`` ("This is an invalid
domain", recorded in tests/vectors/webauthn/), so the kiosk runs on ``http://localhost:PORT``,
a secure context, where the printed enrolment link points.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_demo_in_browser import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = pytest.mark.e2e

JITPROV = str(Path(sys.executable).with_name("jitprov"))


class DevServer:
    def __init__(self, url: str, enrolment_url: str, env: dict[str, str]) -> None:
        self.url = url
        self.enrolment_url = enrolment_url
        self.env = env

    def cli(self, *args: str) -> str:
        """A `jitprov` command on the server's database (and public URL, as an operator
        would set it for links the CLI prints)."""
        port = self.url.rsplit(":", 1)[1]
        env = {**self.env, "JITPROV_BASE_URL": f"http://127.0.0.1:{port}"}
        done = subprocess.run([JITPROV, *args], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def kiosk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    if CHROMIUM is None:
        if os.environ.get("JITPROV_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (JITPROV_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian chromium is not installed")
    workdir = tmp_path_factory.mktemp("kiosk")
    port = free_port()
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{workdir}/jitprov.db"}
    env.pop("JITPROV_BASE_URL", None)
    proc = subprocess.Popen([JITPROV, "dev", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.append(line)
        except ValueError:  # closed at teardown
            pass

    threading.Thread(target=drain, daemon=True).start()
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 60
    enrolment = None
    while time.monotonic() < deadline:
        found = [m for line in lines for m in re.findall(r"(http://\S+/device/enrol\?code=\S+)",
                                                           line)]
        if found:
            enrolment = found[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
        if proc.poll() is not None:
            pytest.fail("jitprov dev exited: " + "".join(lines))
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("jitprov dev did not print its kiosk link and answer within 60 s: "
                    + "".join(lines))
    assert enrolment is not None and enrolment.startswith(url + "/device/enrol?code=")
    yield DevServer(url, enrolment, env)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Authenticator:
    """Chromium's virtual authenticator, holding one person's passkey at a time (on a shared
    device each person brings their own: a phone, a badge key)."""

    def __init__(self, page: Any) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable")
        self.id = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True,
            "automaticPresenceSimulation": True}})["authenticatorId"]

    def credentials(self) -> list[dict[str, Any]]:
        creds: list[dict[str, Any]] = self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.id})["credentials"]
        return creds

    def hold_only(self, credential: dict[str, Any] | None) -> None:
        self.cdp.send("WebAuthn.clearCredentials", {"authenticatorId": self.id})
        if credential is not None:
            self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.id,
                                                     "credential": credential})


def sso_sign_in_on_kiosk(page: Any, url: str, preset: str | None = None,
                         **fields: str) -> None:
    page.goto(url + "/device")
    if page.locator("#lock-screen").count() == 0:  # someone is signed in: lock first
        page.locator("#lock").click()
    page.locator("a.sso-link").click()  # "sign in through your organisation (demo)"
    if preset is not None:
        page.select_option("#preset", label=preset)
    for field, value in fields.items():
        page.fill(f"#{field}", value)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#device-session")


def add_passkey(page: Any, authenticator: Authenticator) -> dict[str, Any]:
    authenticator.hold_only(None)
    page.locator("#passkey-enrol").click()
    page.wait_for_selector("#passkey-enrol", state="detached")  # our CSP forbids eval
    page.wait_for_selector("#switch-user")
    [credential] = authenticator.credentials()
    assert credential["isResidentCredential"] is True
    return credential


def test_kiosk_enrol_passkeys_switch_user_and_idle_lock(kiosk_server: DevServer,
                                                        browser: Any, tmp_path: Path) -> None:
    context = browser.new_context()
    page = context.new_page()
    authenticator = Authenticator(page)

    # the admin's one-time link makes this browser the demo kiosk
    page.goto(kiosk_server.enrolment_url)
    page.get_by_role("button", name="Enrol this device").click()
    page.wait_for_selector("#lock-screen")
    assert page.locator("h1").inner_text() == "Demo kiosk"

    # two nurses sign in once through the IdP on the kiosk and each add a passkey
    sso_sign_in_on_kiosk(page, kiosk_server.url, "Ana Lima: nurse on Ward 3")
    ana = add_passkey(page, authenticator)
    sso_sign_in_on_kiosk(page, kiosk_server.url, "Chen Wei: pharmacist, IdP group named 'admin'")
    assert page.locator("h1").inner_text() == "Signed in as Chen Wei"
    chen = add_passkey(page, authenticator)
    chen_cookie = next(c["value"] for c in context.cookies()
                       if c["name"] == "jitprov_session")

    # a short idle lock for the sessions that follow (tenant policy, read at sign-in)
    kiosk_server.cli("device", "set-policy", "--tenant", "demo", "--idle-seconds", "4")

    # one tap: Ana's passkey switches the kiosk from Chen to Ana
    authenticator.hold_only(ana)
    started = time.perf_counter()
    page.locator("#switch-user").click()
    page.wait_for_selector("h1:text-is('Signed in as Ana Lima')")
    switch_seconds = time.perf_counter() - started
    assert sorted(page.locator("#roles li.role").all_inner_texts()) == ["nurse", "staff"]
    me = page.request.get(kiosk_server.url + "/me").json()
    assert me["name"] == "Ana Lima"
    # Chen's session ended server-side: his old cookie is refused at once
    assert httpx.get(kiosk_server.url + "/me",
                     cookies={"jitprov_session": chen_cookie}).status_code == 401
    response = page.request.get(kiosk_server.url + "/device")
    assert response.headers["cache-control"] == "no-store"
    page.screenshot(path=str(tmp_path / "kiosk-ana.png"), full_page=True)

    # idle: the page reloads after the limit and the server shows the lock screen
    page.wait_for_selector("#lock-reason", timeout=15_000)
    assert "Locked after inactivity" in page.locator("#lock-reason").inner_text()
    assert "Ana" not in page.content() and "Chen" not in page.content()
    assert page.request.get(kiosk_server.url + "/me").status == 401

    # back from the lock screen with a tap of Chen's passkey (its counter moves on)
    authenticator.hold_only(chen)
    page.locator("#passkey-sign-in").click()
    page.wait_for_selector("h1:text-is('Signed in as Chen Wei')")
    [used] = authenticator.credentials()
    assert used["signCount"] > chen["signCount"]
    audit = kiosk_server.cli("audit", "export", "--tenant", "demo")
    for kind in ("device.registered", "device.enrolled", "passkey.registered",
                 "session.switched", "login.passkey", "session.locked"):
        assert f'"{kind}"' in audit, kind
    print(f"browser switch-user round trip: {switch_seconds * 1000:.0f} ms")
    context.close()


def test_a_browser_that_is_not_a_registered_device_gets_no_kiosk(
        kiosk_server: DevServer, browser: Any) -> None:
    page = browser.new_page()
    response = page.goto(kiosk_server.url + "/device")
    assert response is not None and response.status == 403
    assert "Not a registered device" in page.locator("h1").inner_text()
    page.close()


def test_a_passkey_of_a_deactivated_account_is_refused_in_the_browser(
        kiosk_server: DevServer, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    authenticator = Authenticator(page)
    page.goto(kiosk_server.url + "/sso/demo/login?return_to=/passkeys")
    page.select_option("#preset", label="Ben Okafor: charge nurse (role needs approval)")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#passkey-enrol")
    page.fill("#passkey-name", "badge key")
    authenticator.hold_only(None)
    page.locator("#passkey-enrol").click()
    page.wait_for_selector("tr.passkey")
    assert "badge key" in page.locator("#passkeys").inner_text()
    account_id = page.request.get(kiosk_server.url + "/me").json()["id"]
    kiosk_server.cli("users", "deactivate", account_id, "--reason", "left the ward")

    page.goto(kiosk_server.url + "/passkeys/sign-in")
    page.locator("#passkey-sign-in").click()
    page.wait_for_selector("#passkey-status.error")
    refused = page.locator("#passkey-status").inner_text()
    assert refused.startswith("Your account is not active. Ask your administrator. (")
    assert "deactivated" in refused  # the server's detail, for the administrator
    assert page.request.get(kiosk_server.url + "/me").status == 401
    context.close()


def test_offline_sign_in_while_the_idp_is_down_and_step_up_when_it_is_back(
        kiosk_server: DevServer, browser: Any) -> None:
    kiosk_server.cli("device", "set-policy", "--tenant", "demo", "--idle-seconds", "300")
    out = kiosk_server.cli("device", "register", "--tenant", "demo", "--name", "Ward 5 tablet",
                           "--location", "Ward 5")
    [link] = re.findall(r"http://\S+/device/enrol\?code=\S+", out)
    context = browser.new_context()
    page = context.new_page()
    authenticator = Authenticator(page)
    page.goto(link)
    page.get_by_role("button", name="Enrol this device").click()
    page.wait_for_selector("#lock-screen")
    assert page.locator("h1").inner_text() == "Ward 5 tablet"
    sso_sign_in_on_kiosk(page, kiosk_server.url, email="eva.costa@demo.hospital",
                         name="Eva Costa", groups="Nurses")
    add_passkey(page, authenticator)
    page.locator("#lock").click()
    page.wait_for_selector("#lock-screen")

    kiosk_server.cli("device", "idp-status", "--connection", "demo", "--down",
                     "--reason", "IdP maintenance")
    page.locator("#passkey-sign-in").click()
    page.wait_for_selector("#offline-notice")
    assert page.locator("h1").inner_text() == "Signed in as Eva Costa"

    # the IdP is back: the offline session ends and the kiosk goes through the IdP again
    kiosk_server.cli("device", "idp-status", "--connection", "demo", "--up")
    page.goto(kiosk_server.url + "/device")
    page.wait_for_selector("#preset")  # the demo IdP's sign-in page
    assert "/dev/idp/demo" in page.url
    for field, value in {"email": "eva.costa@demo.hospital", "name": "Eva Costa",
                         "groups": "Nurses"}.items():
        page.fill(f"#{field}", value)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#device-session")
    assert page.locator("#offline-notice").count() == 0
    audit = kiosk_server.cli("audit", "export", "--tenant", "demo")
    assert '"login.offline"' in audit and '"connection.health_declared"' in audit
    context.close()
