"""Hostile requests to the web edge: out-of-range paging, exports of unknown tenants, a
cross-site sign-out, framing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from httpx import Response
from starlette.testclient import TestClient

from jitprov.services import admin, devices, discovery
from jitprov.services.context import ServiceContext
from jitprov.testing.builders import setup_connection
from tests.web.helpers import make_client, sign_in


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[tuple[TestClient, dict[str, str]]]:
    setup_connection(ctx)
    _, token = admin.create_admin_token(ctx, "ops")
    with make_client(ctx, dev_mode=False) as client:
        yield client, {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("query", ["offset=9223372036854775808", "offset=9223372036854775807",
                                   "limit=9223372036854775808", "offset=-1", "limit=0"])
def test_paging_out_of_range_is_a_4xx(api: tuple[TestClient, dict[str, str]],
                                      query: str) -> None:
    client, auth = api
    r = client.get(f"/api/tenants/hospital/users?{query}", headers=auth)
    assert 400 <= r.status_code < 500, r.text


def test_audit_export_of_unknown_tenant_is_404(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    r = client.get("/api/audit/export?tenant=nope", headers=auth)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found" and "nope" in r.json()["message"]


def test_audit_export_of_a_known_tenant_still_streams(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    r = client.get("/api/audit/export?tenant=hospital&format=csv", headers=auth)
    assert r.status_code == 200
    assert r.text.startswith("tenant,seq,")


# -- POST /logout from another origin ------------------------------------------------------

SIBLING = "http://evil.testserver"
CROSS_ORIGIN = [
    {"Sec-Fetch-Site": "same-site", "Origin": SIBLING},  # a sibling subdomain, today's browsers
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Origin": SIBLING},  # no Fetch Metadata
    {"Origin": "null"},  # a sandboxed frame, a privacy redirect
    {"Referer": SIBLING + "/page"},  # neither Fetch Metadata nor Origin: Referer
]


@pytest.mark.parametrize("headers", CROSS_ORIGIN)
def test_logout_from_another_origin_is_refused_and_the_session_lives(
        client: TestClient, headers: dict[str, str]) -> None:
    sign_in(client)
    r = client.post("/logout", headers={"Accept": "text/html", **headers})
    assert r.status_code == 403
    assert "another site" in r.text
    assert "jitprov_session" not in r.headers.get("set-cookie", "")
    assert client.get("/me").status_code == 200


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
    {"Origin": "http://testserver"},
    {"Referer": "http://testserver/"},
    {},  # a client that says nothing (curl): no cookie of a browser to misuse
])
def test_logout_from_this_origin_ends_the_session(client: TestClient,
                                                  headers: dict[str, str]) -> None:
    sign_in(client)
    cookie = client.cookies.get("jitprov_session")
    r = client.post("/logout", headers=headers)
    assert (r.status_code, r.headers["location"]) == (303, "/")
    client.cookies.clear()
    client.cookies.set("jitprov_session", cookie or "")
    assert client.get("/me").status_code == 401


def test_the_kiosk_lock_from_another_origin_is_refused(client: TestClient,
                                                       ctx: ServiceContext) -> None:
    sign_in(client)
    registered = devices.register_device(ctx, "hospital", name="Ward 3", location="Ward 3")
    assert client.post("/device/enrol", data={"code": registered.code}).status_code == 303
    sign_in(client, return_to="/device")
    sibling = {"Sec-Fetch-Site": "same-site", "Origin": SIBLING}
    assert client.post("/device/lock", headers=sibling).status_code == 403
    assert client.get("/me").status_code == 200
    same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
    assert client.post("/device/lock", headers=same).status_code == 303
    assert client.get("/me").status_code == 401


# -- anti-framing ---------------------------------------------------------------------------

def assert_not_frameable(r: Response) -> None:
    assert r.headers["content-type"].startswith("text/html"), r.headers
    assert r.headers.get_list("x-frame-options") == ["DENY"]
    [policy] = r.headers.get_list("content-security-policy")
    directives = [d.strip() for d in policy.split(";")]
    assert [d for d in directives if d.startswith("frame-ancestors")] == \
        ["frame-ancestors 'none'"]


@pytest.mark.parametrize("path", ["/", "/break-glass", "/device/enrol?code=nope",
                                  "/device", "/nowhere", "/sso/nope/login", "/admin/sign-in"])
def test_every_html_page_refuses_framing(client: TestClient, path: str) -> None:
    assert_not_frameable(client.get(path, headers={"Accept": "text/html"}))


def test_a_page_policy_is_kept_and_completed(client: TestClient, ctx: ServiceContext) -> None:
    registered = devices.register_device(ctx, "hospital", name="Ward 3", location="Ward 3")
    r = client.get("/device/enrol", params={"code": registered.code})
    assert r.status_code == 200
    assert_not_frameable(r)
    assert "script-src 'self'" in r.headers["content-security-policy"]
    console = client.get("/admin/sign-in")
    assert "default-src 'self'" in console.headers["content-security-policy"]


def test_api_docs_refuse_framing_and_still_load_swagger(client: TestClient) -> None:
    r = client.get("/api/docs")
    assert r.status_code == 200 and "swagger-ui" in r.text
    assert_not_frameable(r)
    # only frame-ancestors: the Swagger UI bundle (a CDN) and its inline script still load
    assert r.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_an_unexpected_error_page_refuses_framing(client: TestClient,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(discovery, "landing", broken)
    r = client.get("/", headers={"Accept": "text/html"})
    assert r.status_code == 500
    assert_not_frameable(r)


def test_json_answers_carry_no_framing_headers(client: TestClient) -> None:
    r = client.get("/me")
    assert r.status_code == 401 and "x-frame-options" not in r.headers
