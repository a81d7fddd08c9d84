"""The kiosk as a nurse uses it, in Chromium with its virtual authenticator, in English and in
Portuguese (the browser's language): enrol the device → first sign-in through the IdP → add a
passkey (a confirmation names it) → switch user with a tap → the idle countdown runs → the
lock screen says why and how to unlock → unlock with the keyboard alone. At every step: no
serious or critical axe-core violation, every target at least 48x48 CSS px, no horizontal
scroll at 768x1024 or 1280x800, and no Content-Security-Policy violation.

With JITPROV_SCREENSHOTS=1 the main steps are saved as
docs/screenshots/kiosk-<lang>-<step>.png (768x1024), the signed-in step also at 1280x800.
Skipped without Chromium, unless JITPROV_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.a11y import overflows_horizontally, serious_violations, small_targets
from tests.e2e.test_frontline_in_browser import (  # noqa: F401 (fixtures)
    Authenticator,
    DevServer,
    browser,
    kiosk_server,
)

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TABLET = {"width": 768, "height": 1024}
LAPTOP = {"width": 1280, "height": 800}
SHOTS = {"locked", "signed-in", "passkey-added", "idle-locked"}  # saved for the README

WORDS = {
    "en": {"enrol": "Enrol this device", "sign_in": "Sign in", "signed_in_as": "Signed in as",
           "added": "added. Next time, unlock this device with a tap.",
           "idle": "Locked after inactivity.", "unlock": "To unlock, tap the button below",
           "switch": "Switch user", "accept": "en-GB"},
    "pt": {"enrol": "Registar este dispositivo", "sign_in": "Entrar",
           "signed_in_as": "Sessão iniciada como",
           "added": "adicionada. Da próxima vez, desbloqueie este dispositivo com um toque.",
           "idle": "Bloqueado após inatividade.", "unlock": "Para desbloquear, toque no botão",
           "switch": "Mudar de utilizador", "accept": "pt-PT"},
}


class Kiosk:
    """One page of the kiosk and the checks every screen must pass."""

    def __init__(self, page: Any, lang: str) -> None:
        self.page = page
        self.lang = lang
        self.csp: list[str] = []
        page.on("console", lambda m: self.csp.append(m.text)
                if "Content Security Policy" in m.text else None)

    def check(self, step: str) -> None:
        page = self.page
        assert page.locator("html").get_attribute("lang") == self.lang
        assert serious_violations(page) == [], step
        assert small_targets(page) == [], step
        for viewport in (TABLET, LAPTOP):
            page.set_viewport_size(viewport)
            assert not overflows_horizontally(page), (step, viewport)
            primary = page.locator(".btn.primary")
            assert primary.count() <= 1, step  # one primary action per screen
            if primary.count():  # and it shows without scrolling
                box = primary.first.bounding_box()
                assert box and box["y"] + box["height"] <= viewport["height"], (step, viewport)
            if os.environ.get("JITPROV_SCREENSHOTS") == "1" and step in SHOTS and (
                    viewport is TABLET or step == "signed-in"):
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                suffix = "" if viewport is TABLET else "-1280"
                page.screenshot(path=str(SCREENSHOTS / f"kiosk-{self.lang}-{step}{suffix}.png"))
        page.set_viewport_size(TABLET)
        assert self.csp == [], step

    def sso_sign_in(self, email: str, name: str, groups: str) -> None:
        """Through the demo IdP, as a person of this test's own (the server is shared)."""
        words = WORDS[self.lang]
        self.page.locator("a.sso-link").click()
        for field, value in {"email": email, "name": name, "groups": groups}.items():
            self.page.fill(f"#{field}", value)
        self.page.get_by_role("button", name=words["sign_in"], exact=True).click()
        self.page.wait_for_selector("#device-session")

    def add_passkey(self, authenticator: Authenticator) -> dict[str, Any]:
        authenticator.hold_only(None)
        self.page.locator("#passkey-enrol").click()
        self.page.wait_for_selector("#passkey-added")
        [credential] = authenticator.credentials()
        return credential


@pytest.mark.parametrize("lang", ["en", "pt"])
def test_a_nurse_enrols_signs_in_adds_a_passkey_switches_and_unlocks(
        kiosk_server: DevServer, browser: Any, lang: str) -> None:  # noqa: F811
    words = WORDS[lang]
    shift_end = (datetime.now(UTC) + timedelta(hours=3)).strftime("%H:%M")
    kiosk_server.cli("device", "set-policy", "--tenant", "demo", "--idle-seconds", "300",
                     "--shifts", shift_end, "--timezone", "UTC")
    out = kiosk_server.cli("device", "register", "--tenant", "demo",
                           "--name", f"Ward 7 tablet {lang}", "--location", "Ward 7, bay 2")
    [link] = re.findall(r"http://\S+/device/enrol\?code=\S+", out)
    context = browser.new_context(locale=words["accept"], viewport=TABLET)
    page = context.new_page()
    kiosk = Kiosk(page, lang)
    authenticator = Authenticator(page)

    # a browser that is not the device yet gets no kiosk
    response = page.goto(kiosk_server.url + "/device")
    assert response is not None and response.status == 403
    kiosk.check("unknown")

    # enrol: the admin's one-time link, opened on the tablet
    page.goto(link)
    kiosk.check("enrol")
    page.get_by_role("button", name=words["enrol"]).click()
    page.wait_for_selector("#lock-screen")
    assert page.locator("#device-location").inner_text().endswith("Ward 7, bay 2")
    assert words["unlock"] in page.locator("#unlock-hint").inner_text()
    kiosk.check("locked")

    # first sign-in through the IdP on the kiosk, then a passkey, confirmed by name
    kiosk.sso_sign_in(f"ana.{lang}@demo.hospital", "Ana Lima", "Nurses")
    assert page.locator("h1").inner_text() == f"{words['signed_in_as']} Ana Lima"
    assert page.locator("#avatar").inner_text() == "AL"
    shift_text = page.locator("#shift-timer").inner_text()
    hour, minute = (int(part) for part in shift_end.split(":"))
    local_end = {"en": f"{(hour - 1) % 12 + 1}:{minute:02d}\u202f{'AM' if hour < 12 else 'PM'}",
                 "pt": shift_end}[lang]
    assert f"{local_end} (UTC)" in shift_text, shift_text
    assert re.fullmatch(r"[23]:\d\d:\d\d", page.locator("#shift-remaining").inner_text())
    kiosk.check("signed-in")
    ana = kiosk.add_passkey(authenticator)
    assert words["added"] in page.locator("#passkey-added").inner_text()
    kiosk.check("passkey-added")

    # a colleague signs in through the IdP too and adds hers
    page.locator("#lock").click()
    page.wait_for_selector("#lock-screen")
    kiosk.sso_sign_in(f"chen.{lang}@demo.hospital", "Chen Wei", "Pharmacists")
    chen = kiosk.add_passkey(authenticator)

    # switch user with Ana's passkey: one tap, her name, her roles only
    kiosk_server.cli("device", "set-policy", "--tenant", "demo", "--idle-seconds", "25")
    authenticator.hold_only(ana)
    page.get_by_role("button", name=words["switch"]).click()
    page.wait_for_selector(f"h1:text-is('{words['signed_in_as']} Ana Lima')")
    assert sorted(page.locator("#roles li.role").all_inner_texts()) == ["nurse", "staff"]

    # the idle countdown runs down (read first: the page checks below take seconds on a
    # loaded machine), then the lock screen says why and how to unlock
    first = page.locator("#idle-remaining").inner_text()
    page.wait_for_function("t => document.querySelector('#idle-remaining').textContent !== t",
                           arg=first, timeout=10_000)
    later = page.locator("#idle-remaining").inner_text()
    assert re.fullmatch(r"0:\d\d", first) and later < first, (first, later)
    kiosk.check("switched")
    page.wait_for_selector("#lock-reason", timeout=60_000)
    assert page.locator("#lock-reason").inner_text() == words["idle"]
    assert "Ana" not in page.content() and "Chen" not in page.content()
    kiosk.check("idle-locked")

    # unlock with the keyboard alone: Tab reaches the one button, Enter uses Chen's passkey
    authenticator.hold_only(chen)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "passkey-sign-in"
    page.keyboard.press("Enter")
    page.wait_for_selector(f"h1:text-is('{words['signed_in_as']} Chen Wei')")
    kiosk.check("unlocked")
    context.close()


@pytest.mark.parametrize("lang", ["en", "pt", "es"])
def test_the_end_user_pages_pass_axe_in_each_language(
        kiosk_server: DevServer, browser: Any, lang: str) -> None:  # noqa: F811
    """Landing (signed out and in), an error, the passkeys page (with its confirmation), the
    passkey sign-in, break-glass, the demo IdP and the signed-out page."""
    context = browser.new_context(locale={"en": "en-US", "pt": "pt-BR", "es": "es-ES"}[lang])
    page = context.new_page()
    authenticator = Authenticator(page)
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text)
            if "Content Security Policy" in m.text else None)
    url = kiosk_server.url

    def clean(path: str | None, expect_status: int = 200) -> None:
        if path is not None:
            response = page.goto(url + path)
            assert response is not None and response.status == expect_status, path
        assert page.locator("html").get_attribute("lang") == lang
        assert serious_violations(page) == [], page.url

    clean("/")
    clean("/sso/no-such-connection/login", expect_status=404)
    clean("/break-glass")
    clean("/passkeys/sign-in")
    clean("/sso/demo/login?return_to=/passkeys")
    page.fill("#email", f"dana.{lang}@demo.hospital")
    page.fill("#name", "Dana Silva")
    page.fill("#groups", "Nurses")
    page.locator("#signin").click()
    page.wait_for_selector("#passkey-enrol")
    clean(None)
    authenticator.hold_only(None)
    page.fill("#passkey-name", "badge")
    page.locator("#passkey-enrol").click()
    page.wait_for_selector("#passkey-added")
    assert "“badge”" in page.locator("#passkey-added").inner_text()
    clean(None)
    clean("/")
    assert page.locator("#created").inner_text().endswith("(UTC)")
    page.locator("form[action='/logout'] button").click()
    page.wait_for_load_state()
    clean(None)
    assert csp == []
    context.close()
