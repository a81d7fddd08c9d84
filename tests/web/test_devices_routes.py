"""The frontline routes over HTTP: passkey ceremonies (JSON only), the device page and its
cookie, no-store and CSP on every page, and the admin API for passkeys and devices."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from jitprov.cli.main import main
from jitprov.services import accounts, admin, devices
from jitprov.services.context import ServiceContext
from jitprov.testing.authenticator import SoftAuthenticator
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import make_client, sign_in

JSON = {"Accept": "application/json"}


def enrol_passkey(client: TestClient, name: str = "badge") -> SoftAuthenticator:
    key = SoftAuthenticator()
    options = client.post("/passkeys/register/options", json={}, headers=JSON)
    assert options.status_code == 200, options.text
    saved = client.post("/passkeys/register", json={"credential": key.register(options.json()),
                                                    "name": name}, headers=JSON)
    assert saved.status_code == 201, saved.text
    return key


def tap(client: TestClient, key: SoftAuthenticator, prefix: str = "/passkeys/sign-in",
        **body: Any) -> Any:
    options = client.post(prefix + "/options", json={}, headers=JSON)
    assert options.status_code == 200, options.text
    return client.post(prefix, json={"credential": key.authenticate(options.json()), **body},
                       headers=JSON)


def test_a_passkey_enrolled_after_sso_signs_in_a_fresh_browser(
        client: TestClient, ctx: ServiceContext) -> None:
    sign_in(client)
    key = enrolled = enrol_passkey(client)
    page = client.get("/passkeys")
    assert "badge" in page.text and page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]

    with make_client(ctx) as fresh:
        done = tap(fresh, key, return_to="/me")
        assert done.status_code == 200, done.text
        assert done.json() == {"redirect": "/me", "offline": False, "step_up": False}
        cookie = done.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
        me = fresh.get("/me")
        assert (me.status_code, me.json()["email"]) == (200, "ana@hospital.example")
    assert enrolled is key


def test_the_ceremony_endpoints_take_json_only(client: TestClient) -> None:
    sign_in(client)
    r = client.post("/passkeys/register/options", data={"x": "1"}, headers=JSON)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_input")


def test_enrolment_without_a_session_is_401(client: TestClient) -> None:
    r = client.post("/passkeys/register/options", json={}, headers=JSON)
    assert (r.status_code, r.json()["error"]) == (401, "unauthenticated")


def test_a_refused_passkey_sign_in_answers_json_with_its_code(
        client: TestClient, ctx: ServiceContext) -> None:
    sign_in(client)
    key = enrol_passkey(client)
    account_id = client.get("/me").json()["id"]
    accounts.set_account_status(ctx, account_id, "deactivated", reason="left")

    r = tap(client, key)

    assert (r.status_code, r.json()["error"]) == (403, "account_inactive")


def kiosk(client: TestClient, ctx: ServiceContext) -> str:
    registered = devices.register_device(ctx, "hospital", name="Ward 3 station",
                                         location="Ward 3")
    page = client.get("/device/enrol", params={"code": registered.code})
    assert page.status_code == 200 and "Ward 3 station" in page.text
    r = client.post("/device/enrol", data={"code": registered.code})
    assert (r.status_code, r.headers["location"]) == (303, "/device")
    cookie = next(c for c in r.headers.get_list("set-cookie") if "jitprov_device=" in c)
    assert "HttpOnly" in cookie and "Path=/device" in cookie
    return registered.code


def test_a_browser_without_the_device_credential_gets_no_kiosk(client: TestClient) -> None:
    r = client.get("/device")
    assert r.status_code == 403 and r.headers["cache-control"] == "no-store"


def test_switch_user_on_the_device_and_lock(client: TestClient, ctx: ServiceContext) -> None:
    sign_in(client)
    ana_key = enrol_passkey(client)
    with make_client(ctx) as other:
        sign_in(other, email="bob@hospital.example", name="Bob Reis",
                subject="bob@hospital.example")
        bob_key = enrol_passkey(other)
    client.cookies.clear()
    code = kiosk(client, ctx)
    locked = client.get("/device")
    assert 'id="lock-screen"' in locked.text and "Ana" not in locked.text

    r = tap(client, ana_key, prefix="/device/passkey")
    assert (r.status_code, r.json()["redirect"]) == (200, "/device"), r.text
    ana_cookie = client.cookies.get("jitprov_session")
    assert "Signed in as Ana Lima" in client.get("/device").text

    r = tap(client, bob_key, prefix="/device/passkey")
    assert r.status_code == 200, r.text
    page = client.get("/device")
    assert "Signed in as Bob Reis" in page.text and "Ana" not in page.text
    assert page.headers["cache-control"] == "no-store"
    with make_client(ctx) as thief:
        thief.cookies.set("jitprov_session", ana_cookie or "")
        assert thief.get("/me").status_code == 401

    r = client.post("/device/lock")
    assert r.status_code == 303
    assert client.get("/me").status_code == 401
    with pytest.raises(Exception, match="already used"):
        devices.enrol_device(ctx, code)


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        database_url: str, *argv: str) -> tuple[int, str, str]:
    """``jitprov *argv`` on the test's database: exit code, stdout, stderr."""
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_a_kiosk_speaks_its_tenants_language_else_its_browsers(
        client: TestClient, ctx: ServiceContext, database_url: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sign_in(client)
    key = enrol_passkey(client)
    client.cookies.clear()
    kiosk(client, ctx)
    english = {"Accept-Language": "en"}
    page = client.get("/device", headers=english)
    assert '<html lang="en" dir="ltr">' in page.text
    assert "Tap to sign in with your passkey" in page.text

    code, _, err = cli(monkeypatch, capsys, database_url,
                       "device", "set-policy", "--tenant", "hospital", "--locale", "pt")
    assert (code, err) == (0, "")

    page = client.get("/device", headers=english)
    assert '<html lang="pt" dir="ltr">' in page.text
    assert "Toque para entrar com a sua chave de acesso" in page.text
    registered = devices.register_device(ctx, "hospital", name="Ward 4", location="Ward 4")
    enrol = client.get("/device/enrol", params={"code": registered.code}, headers=english)
    assert "Registar este dispositivo" in enrol.text
    with make_client(ctx) as stranger:  # no device credential: no tenant, its browser's
        unknown = stranger.get("/device", headers=english)
        assert (unknown.status_code, '<html lang="en"' in unknown.text) == (403, True)
    assert tap(client, key, prefix="/device/passkey").status_code == 200
    signed_in = client.get("/device", headers=english).text
    assert '<html lang="pt" dir="ltr">' in signed_in and "Sessão iniciada como" in signed_in

    code, _, _ = cli(monkeypatch, capsys, database_url,
                     "device", "set-policy", "--tenant", "hospital", "--locale", "browser")
    page = client.get("/device", headers={"Accept-Language": "es"})
    assert (code, '<html lang="es" dir="ltr">' in page.text) == (0, True)


def test_an_enrolment_link_works_once(client: TestClient, ctx: ServiceContext) -> None:
    code = kiosk(client, ctx)
    r = client.post("/device/enrol", data={"code": code})
    assert r.status_code == 400


def test_cross_site_form_posts_are_refused(client: TestClient, ctx: ServiceContext) -> None:
    # a page of another site cannot make this browser revoke its passkeys or enrol as a kiosk
    sign_in(client)
    enrol_passkey(client)
    listed = client.get("/passkeys").text
    passkey_id = re.findall(r'action="/passkeys/(\d+)/revoke"', listed)[0]
    registered = devices.register_device(ctx, "hospital", name="Ward 3", location="Ward 3")
    cross = {"Sec-Fetch-Site": "cross-site"}

    revoke = client.post(f"/passkeys/{passkey_id}/revoke", headers=cross)
    enrol = client.post("/device/enrol", data={"code": registered.code},
                        headers={"Origin": "https://evil.example"})

    assert (revoke.status_code, enrol.status_code) == (403, 403)
    assert f"/passkeys/{passkey_id}/revoke" in client.get("/passkeys").text
    assert client.post("/passkeys/%C2%B2/revoke").status_code == 400  # not a 500
    assert client.post("/device/enrol", data={"code": registered.code}).status_code == 303


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[tuple[TestClient, dict[str, str]]]:
    setup_connection(ctx)
    _, token = admin.create_admin_token(ctx, "ops")
    with make_client(ctx) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_the_admin_api_registers_devices_and_revokes_passkeys(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    assert client.post("/api/tenants/hospital/devices", json={"name": "K", "location": "L"}
                       ).status_code == 401
    created = client.post("/api/tenants/hospital/devices", headers=auth,
                          json={"name": "K", "location": "L"})
    assert created.status_code == 201
    assert created.json()["enrolment_url"].startswith("http://testserver/device/enrol?code=")
    [listed] = client.get("/api/tenants/hospital/devices", headers=auth).json()
    assert (listed["name"], listed["enrolled"]) == ("K", False)

    sign_in(client)
    enrol_passkey(client)
    account_id = client.get("/me").json()["id"]
    [passkey] = client.get(f"/api/accounts/{account_id}/passkeys", headers=auth).json()
    r = client.post(f"/api/passkeys/{passkey['id']}/revoke", headers=auth)
    assert (r.status_code, r.json()["revoked"]) == (200, True)
    assert client.get(f"/api/accounts/{account_id}/passkeys", headers=auth).json() == []

    policy = client.put("/api/tenants/hospital/frontline-policy", headers=auth,
                        json={"idle_seconds": 120, "shifts": ["07:00", "19:00"],
                              "timezone": "Europe/Lisbon"})
    assert policy.status_code == 200 and policy.json()["shifts"] == ["07:00", "19:00"]
    bad = client.put("/api/tenants/hospital/frontline-policy", headers=auth,
                     json={"shifts": ["7am"]})
    assert bad.status_code == 400
    assert policy.json()["locale"] == ""  # each reader's browser language
    policy = client.put("/api/tenants/hospital/frontline-policy", headers=auth,
                        json={"idle_seconds": 120, "locale": "pt"})
    assert (policy.status_code, policy.json()["locale"]) == (200, "pt")
    stored = client.get("/api/tenants/hospital/frontline-policy", headers=auth).json()
    assert (stored["locale"], stored["idle_seconds"]) == ("pt", 120)
    bad = client.put("/api/tenants/hospital/frontline-policy", headers=auth,
                     json={"locale": "fr"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_input")
    assert "'fr' is not one of the shipped ones" in bad.json()["message"]
    assert client.get("/api/tenants/hospital/frontline-policy",
                      headers=auth).json()["locale"] == "pt"
    down = client.post("/api/connections/idp/health", headers=auth, json={"reachable": False})
    assert down.json() == {"connection": "idp", "reachable": False}
    r = client.post(f"/api/devices/{listed['id']}/revoke", headers=auth)
    assert r.json()["revoked"] is True


def test_stale_roles_answer_a_step_up_to_the_idp_and_no_session(
        client: TestClient, ctx: ServiceContext, clock: Any) -> None:
    sign_in(client)
    key = enrol_passkey(client)
    clock.advance(days=8)
    with make_client(ctx) as fresh:
        r = tap(fresh, key, return_to="/me")
        assert r.json() == {"redirect": "/sso/idp/login?return_to=%2Fme", "offline": False,
                            "step_up": True}
        assert "set-cookie" not in r.headers
        assert fresh.get("/me").status_code == 401


def test_a_passkey_page_on_another_host_name_moves_to_the_rp_origin(
        ctx: ServiceContext) -> None:
    from jitprov.settings import Settings
    from jitprov.web.app import create_app
    from tests.conftest import TEST_SECRET_KEY

    settings = Settings(base_url="http://127.0.0.1:8000", secret_key=TEST_SECRET_KEY,
                        dev_mode=True)
    with TestClient(create_app(settings, ctx=ctx), base_url="http://127.0.0.1:8000",
                    follow_redirects=False) as client:
        r = client.get("/device?x=1")
    assert (r.status_code, r.headers["location"]) == (303, "http://localhost:8000/device?x=1")
