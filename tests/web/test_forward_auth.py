"""GET /auth/verify in-process: the contract reverse proxies rely on."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from jitprov.services import accounts
from jitprov.services.context import ServiceContext
from jitprov.web.routes.forward_auth import header_list, header_value
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import HandOffs, sign_in


def test_no_session_is_401(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    hand_offs = HandOffs(monkeypatch)
    r = client.get("/auth/verify")
    assert (r.status_code, r.headers["cache-control"]) == (401, "no-store")
    assert hand_offs.calls == []  # no cookie: nothing to read, no worker thread woken


def test_signed_in_user_gets_identity_headers(client: TestClient) -> None:
    sign_in(client)
    r = client.get("/auth/verify")
    assert r.status_code == 200
    me = client.get("/me").json()
    assert r.headers["x-jitprov-token"].count(".") == 2  # a JWS, verified in its own tests
    assert {k: v for k, v in r.headers.items()
            if k.startswith("x-jitprov-") and k != "x-jitprov-token"} == {
        "x-jitprov-user": me["id"], "x-jitprov-email": "ana@hospital.example",
        "x-jitprov-name": "Ana Lima", "x-jitprov-roles": "nurse,staff",
        "x-jitprov-groups": "Nurses", "x-jitprov-tenant": "hospital"}


def test_required_role_is_enforced(client: TestClient) -> None:
    sign_in(client)
    assert client.get("/auth/verify", params={"role": "pharmacist"}).status_code == 403
    assert client.get("/auth/verify", params=[("role", "pharmacist"), ("role", "nurse")]
                      ).status_code == 200


def test_deactivated_account_is_refused_on_the_next_request(
        client: TestClient, ctx: ServiceContext) -> None:
    sign_in(client)
    account_id = client.get("/me").json()["id"]
    accounts.set_account_status(ctx, account_id, "deactivated", reason="left")
    assert client.get("/auth/verify").status_code == 401


def test_redirect_mode_sends_to_the_login_with_the_original_path(
        client: TestClient) -> None:
    r = client.get("/auth/verify", params={"mode": "redirect", "login": "idp"},
                   headers={"X-Forwarded-Uri": "/ward/rota?day=mon"})
    assert r.status_code == 302
    assert r.headers["location"] == "/sso/idp/login?return_to=%2Fward%2Frota%3Fday%3Dmon"
    r = client.get("/auth/verify", params={"mode": "redirect", "login": "idp"},
                   headers={"X-Forwarded-Uri": "https://evil.example/"})
    assert r.headers["location"] == "/sso/idp/login?return_to=%2F"


def test_header_values_cannot_split_headers() -> None:
    assert header_value("José Ña") == "Jos%C3%A9 %C3%91a"
    assert header_value("x\r\nX-Jitprov-Roles: admin") == "x%0D%0AX-Jitprov-Roles: admin"


@given(st.text(st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                         st.sampled_from('"%\\\x7f\r\né'), st.characters()), max_size=20))
def test_a_header_value_is_what_quote_writes(value: str) -> None:
    assert header_value(value) == quote(value, safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")


def test_list_items_keep_their_own_commas() -> None:
    assert header_list(["Ward 3, Nights", "Nurses"]) == "Ward 3%2C Nights,Nurses"


def test_header_names_follow_the_configured_prefix(ctx: ServiceContext) -> None:
    from starlette.testclient import TestClient as Client

    from jitprov.settings import Settings
    from jitprov.testing.builders import setup_connection
    from jitprov.web.app import create_app
    from tests.conftest import TEST_SECRET_KEY

    setup_connection(ctx)
    settings = Settings(base_url="http://testserver", secret_key=TEST_SECRET_KEY,
                        dev_mode=True, forward_auth_header_prefix="X-Auth-")
    with Client(create_app(settings, ctx=ctx), base_url="http://testserver",
                follow_redirects=False) as c:
        sign_in(c)
        r = c.get("/auth/verify")
    assert r.headers["x-auth-roles"] == "nurse,staff"
    assert "x-jitprov-roles" not in r.headers


def test_a_malformed_header_prefix_is_refused_at_start() -> None:
    import pytest

    from jitprov.settings import SettingsError, load_settings

    with pytest.raises(SettingsError):
        load_settings({"JITPROV_SECRET_KEY": TEST_SECRET_KEY,
                       "JITPROV_FORWARD_AUTH_HEADER_PREFIX": "X-Bad:\r\n"})


def test_forward_auth_says_what_me_says(client: TestClient, ctx: ServiceContext) -> None:
    """Forward-auth reads the identity alone (``SignedIn.identity``), not the whole /me: its
    headers carry /me's values (a role granted by hand too) and its token is the one
    /me/token hands out."""
    sign_in(client, name="Zoë Lima")
    accounts.grant_role(ctx, "hospital", client.get("/me").json()["id"], "pharmacy:read",
                        reason="cover", actor="test", expires_in_days=1)
    me = client.get("/me").json()
    verified = client.get("/auth/verify")
    assert verified.status_code == 200
    headers = verified.headers
    assert (headers["x-jitprov-user"], headers["x-jitprov-email"], headers["x-jitprov-name"],
            headers["x-jitprov-tenant"]) == (me["id"], me["email"], "Zo%C3%AB Lima",
                                             me["tenant"])
    assert headers["x-jitprov-roles"].split(",") == me["roles"] == [
        "nurse", "pharmacy:read", "staff"]
    assert headers["x-jitprov-groups"].split(",") == me["groups"]
    assert headers["x-jitprov-token"] == client.get("/me/token").json()["token"]
