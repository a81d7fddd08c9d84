"""The whole login over HTTP (ASGI in-process): demo IdP -> callback -> session -> /me."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import ME_KEYS, idp_response, make_client, sign_in, start


def test_first_login_provisions_and_me_returns_the_contract(client: TestClient) -> None:
    sign_in(client)
    r = client.get("/me")
    assert r.status_code == 200
    body = r.json()
    assert ME_KEYS <= set(body)
    assert (body["email"], body["roles"], body["groups"], body["provisioned_by"]) == (
        "ana@hospital.example", ["nurse", "staff"], ["Nurses"], "jit")
    assert (body["connection"], body["external_id"]) == ("idp", "ana@hospital.example")


def test_callback_redirects_to_return_to_with_a_hardened_cookie(client: TestClient) -> None:
    state = start(client, "/me?x=1")
    r = client.post("/sso/idp/mock/callback", data=idp_response(client, state))
    assert r.headers["location"] == "/me?x=1"
    cookie = r.headers["set-cookie"].lower()
    assert "jitprov_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_return_to_outside_this_site_becomes_root(client: TestClient, target: str) -> None:
    state = start(client, target)
    r = client.post("/sso/idp/mock/callback", data=idp_response(client, state))
    assert r.headers["location"] == "/"


def test_starting_a_login_writes_nothing_and_seals_the_request_in_its_cookie(
        client: TestClient, ctx: ServiceContext) -> None:
    import sqlalchemy as sa

    from jitprov.store import tables as t

    r = client.get("/sso/idp/login", params={"return_to": "/apps/wiki?tab=2"})
    assert r.status_code == 303
    state = r.headers["location"].split("state=", 1)[1]
    cookie = r.headers["set-cookie"]
    name, value = cookie.split(";", 1)[0].split("=", 1)
    assert name.startswith("jitprov_login_")
    assert "httponly" in cookie.lower() and "path=/sso/" in cookie.lower()
    for plain in (state, "/apps/wiki", "hospital"):  # sealed: nothing readable in it
        assert plain not in value
    with ctx.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.login_request)
                            ).scalar_one() == 0
    r = client.post("/sso/idp/mock/callback", data=idp_response(client, state))
    assert (r.status_code, r.headers["location"]) == (303, "/apps/wiki?tab=2")
    with ctx.db.engine.connect() as conn:  # spent: its hash kept until it expires
        assert conn.execute(sa.select(sa.func.count()).select_from(t.login_request)
                            .where(t.login_request.c.consumed_at.is_not(None))
                            ).scalar_one() == 1


def test_a_return_to_too_long_for_the_cookie_is_a_readable_400(client: TestClient) -> None:
    r = client.get("/sso/idp/login", params={"return_to": "/" + "a" * 1023})
    assert r.status_code == 303
    assert len(r.headers["set-cookie"]) < 2300  # the cookie, with its name and attributes
    r = client.get("/sso/idp/login", params={"return_to": "/" + "a" * 1024})
    assert r.status_code == 400
    assert "return_to: longer than 1024 characters" in r.text
    assert "Traceback" not in r.text
    # escapes grow a shorter one past what the cookie may hold: refused the same way
    r = client.get("/sso/idp/login", params={"return_to": "/" + "\u00e9" * 500})
    assert r.status_code == 400
    assert "return_to: too long to keep with the sign-in" in r.text


def test_a_browser_keeps_at_most_three_logins_in_flight(client: TestClient) -> None:
    """Each login start leaves a binding cookie (until its callback or 20 minutes): the
    fourth start drops the oldest, so cookies never outgrow a proxy's header limits."""
    states = [start(client) for _ in range(5)]
    held = [k for k in client.cookies if k.startswith("jitprov_login_")]
    assert len(held) == 3
    oldest = client.post("/sso/idp/mock/callback", data=idp_response(client, states[0]))
    assert oldest.status_code == 400 and "not started in this browser" in oldest.text
    newest = client.post("/sso/idp/mock/callback", data=idp_response(client, states[-1]))
    assert newest.status_code == 303


def test_me_without_session_is_401_json(client: TestClient) -> None:
    r = client.get("/me")
    assert r.status_code == 401
    assert r.json()["error"] == "unauthenticated"


def test_replayed_callback_is_refused_with_a_readable_page(client: TestClient) -> None:
    state = start(client)
    fields = idp_response(client, state)
    assert client.post("/sso/idp/mock/callback", data=fields).status_code == 303
    client.cookies.clear()
    r = client.post("/sso/idp/mock/callback", data=fields)
    assert r.status_code == 400
    assert "expired or was already used" in r.text
    assert "Traceback" not in r.text
    assert client.get("/me").status_code == 401


def test_tampered_assertion_is_refused_and_creates_nothing(client: TestClient,
                                                           ctx: ServiceContext) -> None:
    state = start(client)
    fields = idp_response(client, state)
    header, payload, signature = fields["assertion"].split(".")
    fields["assertion"] = f"{header}.{payload}.{signature[:-4]}AAAA"
    r = client.post("/sso/idp/mock/callback", data=fields)
    assert r.status_code == 400
    assert admin.list_accounts(ctx, "hospital") == []


def test_denied_user_sees_the_reason_and_a_request_id(client: TestClient,
                                                      ctx: ServiceContext) -> None:
    state = start(client)
    fields = idp_response(client, state, email_verified="")
    r = client.post("/sso/idp/mock/callback", data=fields)
    assert r.status_code == 403
    assert "email not verified" in r.text
    assert r.headers["x-request-id"] in r.text
    assert admin.list_accounts(ctx, "hospital") == []


def test_logout_ends_the_session(client: TestClient) -> None:
    sign_in(client)
    cookie = client.cookies.get("jitprov_session")
    assert client.post("/logout").status_code == 303
    client.cookies.clear()
    client.cookies.set("jitprov_session", cookie or "")
    assert client.get("/me").status_code == 401


def test_unknown_connection_is_404_page(client: TestClient) -> None:
    r = client.get("/sso/nope/login")
    assert r.status_code == 404
    assert "no connection" in r.text


def test_landing_page_shows_roles_with_their_rule(client: TestClient) -> None:
    sign_in(client, return_to="/")
    page = client.get("/").text
    assert "rule:idp/nurses" in page
    assert "rule:idp/default" in page


def test_server_outside_dev_mode_refuses_the_demo_idp(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with make_client(ctx, dev_mode=False) as prod:
        assert prod.get("/dev/idp/idp").status_code == 404
        r = prod.get("/sso/idp/login")
        assert r.status_code == 400
        assert "dev-only" in r.text


def test_callback_from_another_browser_is_refused(client: TestClient, ctx: ServiceContext) -> None:
    # Login CSRF: an attacker starts a login, signs in at the IdP as themself, and makes the
    # victim's browser post the answer. The state is bound to the browser that started it.
    state = start(client)
    fields = idp_response(client, state, email="mallory@hospital.example")
    with make_client(ctx) as victim:
        r = victim.post("/sso/idp/mock/callback", data=fields)
        assert r.status_code == 400
        assert "not started in this browser" in r.text
        assert victim.get("/me").status_code == 401
    assert admin.list_accounts(ctx, "hospital") == []
    # a refused attempt spends nothing (whoever learns a state cannot burn a login they do
    # not hold): only the browser that started it completes it, once
    assert client.post("/sso/idp/mock/callback", data=fields).status_code == 303
    assert [a.account.profile.get("email") for a in admin.list_accounts(ctx, "hospital")] == [
        "mallory@hospital.example"]


def test_session_cookie_is_secure_when_served_over_https(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with make_client(ctx) as plain:
        plain.base_url = "https://testserver"  # type: ignore[assignment]
        state = start(plain)
        r = plain.post("/sso/idp/mock/callback", data=idp_response(plain, state))
        assert "secure" in r.headers["set-cookie"].lower()


def test_demo_callback_is_refused_outside_dev_mode(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with make_client(ctx) as dev:
        state = start(dev)
        fields = idp_response(dev, state)
    with make_client(ctx, dev_mode=False) as prod:
        r = prod.post("/sso/idp/mock/callback", data=fields)
        assert r.status_code == 400
        assert "dev-only" in r.text
    assert admin.list_accounts(ctx, "hospital") == []


def test_login_rotates_the_session_cookie(client: TestClient, ctx: ServiceContext) -> None:
    sign_in(client)
    first = client.cookies.get("jitprov_session")
    sign_in(client)
    second = client.cookies.get("jitprov_session")
    assert first != second
    client.cookies.clear()
    client.cookies.set("jitprov_session", first or "")
    assert client.get("/me").status_code == 401


def test_database_errors_do_not_reach_the_client(ctx: ServiceContext) -> None:
    from jitprov.services.context import ServiceContext as Context
    from jitprov.services.secretbox import SecretBox
    from jitprov.store.database import Database

    broken = Context(db=Database.connect("postgresql://nobody@127.0.0.1:1/none", pool_size=1),
                     secretbox=SecretBox(TEST_SECRET_KEY))
    with make_client(broken) as c:
        c.cookies.set("jitprov_session", "x")
        r = c.get("/me")
    assert r.status_code == 503
    assert "127.0.0.1" not in r.text
    assert "temporarily unavailable" in r.json()["message"]
    broken.db.dispose()


def test_every_failed_login_is_audited_as_login_failed(client: TestClient,
                                                       ctx: ServiceContext) -> None:
    from jitprov.services import audit_export

    state = start(client)
    fields = idp_response(client, state)
    tampered = {**fields, "assertion": fields["assertion"][:-4] + "AAAA"}
    assert client.post("/sso/idp/mock/callback", data=tampered).status_code == 400
    state = start(client)
    fields = idp_response(client, state)
    with make_client(ctx) as other_browser:
        assert other_browser.post("/sso/idp/mock/callback", data=fields).status_code == 400
    # another browser could not spend it: the browser that started it signs in, once
    login_cookies = {k: v for k, v in client.cookies.items() if k.startswith("jitprov_login_")}
    assert client.post("/sso/idp/mock/callback", data=fields).status_code == 303
    for name, value in login_cookies.items():  # the same callback again, cookie and all
        client.cookies.set(name, value, path="/sso/")
    assert client.post("/sso/idp/mock/callback", data=fields).status_code == 400  # spent
    failed = [e for e in audit_export.iter_events(ctx, "hospital") if e.type == "login.failed"]
    assert [e.data["code"] for e in failed] == ["invalid_response", "login_foreign",
                                                "login_expired"]
    assert all(e.request_id for e in failed)
    assert len(admin.list_accounts(ctx, "hospital")) == 1
