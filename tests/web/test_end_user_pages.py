"""The end-user pages over HTTP: the favicon every page links to, the confirmation after a
passkey is added, and the kiosk's signed-in screen (initials, location, countdowns)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from starlette.testclient import TestClient

from jitprov.services import devices
from jitprov.services.context import ServiceContext
from tests.web.helpers import sign_in
from tests.web.test_devices_routes import enrol_passkey, kiosk


def icon_of(html: str) -> str:
    found = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', html)
    assert found, "no icon link"
    return found.group(1)


def test_every_page_links_a_favicon_that_is_served(client: TestClient) -> None:
    for path in ("/", "/break-glass", "/passkeys/sign-in", "/admin/sign-in", "/sso/nosuch/login"):
        page = client.get(path, headers={"Accept": "text/html"})
        icon = client.get(icon_of(page.text))
        assert (icon.status_code, icon.headers["content-type"]) == (200, "image/svg+xml"), path
        assert icon.text.startswith("<svg")
    legacy = client.get("/favicon.ico")
    assert (legacy.status_code, legacy.headers["location"]) == (301, "/static/favicon.svg")


def test_the_passkeys_page_confirms_the_passkey_just_added(client: TestClient) -> None:
    sign_in(client)
    enrol_passkey(client, name="badge key")
    [row_id] = re.findall(r'action="/passkeys/(\d+)/revoke"', client.get("/passkeys").text)

    confirmed = client.get("/passkeys", params={"added": row_id})
    someone_elses = client.get("/passkeys", params={"added": str(int(row_id) + 1)})

    assert 'id="passkey-added"' in confirmed.text and "“badge key” added" in confirmed.text
    assert 'id="passkey-added"' not in someone_elses.text


def test_the_kiosk_shows_initials_location_and_the_time_left(
        client: TestClient, ctx: ServiceContext) -> None:
    devices.set_policy(ctx, "hospital", devices.FrontlinePolicy(
        idle_seconds=300, shifts=("09:30",), timezone="Europe/Lisbon"))
    kiosk(client, ctx)
    sign_in(client, return_to="/device")  # through the IdP on the kiosk

    page = client.get("/device", headers={"Accept-Language": "pt-PT"})

    assert page.status_code == 200
    assert '<span class="avatar" id="avatar" aria-hidden="true">AL</span>' in page.text
    assert '<span id="device-location">Local: Ward 3</span>' in page.text
    assert '<span class="value" id="idle-remaining">5:00</span>' in page.text
    # the test clock says 07:00 UTC = 07:00 in Lisbon in November: the shift ends in 2.5 h
    assert "O turno termina às 09:30 (Europe/Lisbon), dentro de" in page.text
    assert '<span class="value" id="shift-remaining">2:30:00</span>' in page.text
    assert 'data-shift-end="2026-11-28T09:30:00+00:00"' in page.text
    assert "style-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and " style=" not in page.text


def test_no_end_user_template_has_an_inline_script_or_style() -> None:
    templates = Path(__file__).resolve().parents[2] / "src" / "jitprov" / "web" / "templates"
    for template in templates.glob("*.html"):
        html = template.read_text()
        assert re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", html) == [], \
            template.name
        assert "<style" not in html and " style=" not in html, template.name


def test_the_passkey_pages_carry_the_advice_for_refusals_in_the_readers_language(
        client: TestClient) -> None:
    page = client.get("/passkeys/sign-in", headers={"Accept-Language": "es"})
    advice = re.search(r"data-advice='([^']*)'", page.text)
    assert advice is not None
    assert json.loads(html.unescape(advice.group(1)))["account_inactive"] == \
        "Su cuenta no está activa. Consulte a su administrador."
