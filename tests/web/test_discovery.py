"""Home-realm discovery over HTTP: ``/sso/discover`` sends an email to its tenant's connection,
the landing page asks for the email once a domain is verified, forward-auth's redirect mode
uses it, and the admin API manages the domains (audited). SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin, audit_export, discovery
from jitprov.services.context import ServiceContext
from jitprov.testing.builders import HOSPITAL, setup_connection
from jitprov.web.observability import limit_of
from tests.web.helpers import hidden_fields, idp_response, make_client


@pytest.fixture
def two_tenants(ctx: ServiceContext) -> ServiceContext:
    """hospital (connection ``idp``, hospital.example) and clinic (``clinic-idp``,
    clinic.example and the IDN bücher-klinik.example), both on the demo IdP."""
    setup_connection(ctx, tenant="hospital", slug="idp")
    setup_connection(ctx, tenant="clinic", slug="clinic-idp")
    discovery.add_domain(ctx, "hospital", "hospital.example", connection="idp",
                         actor="cli:ops")
    discovery.add_domain(ctx, "clinic", "Clinic.Example", connection="clinic-idp")
    discovery.add_domain(ctx, "clinic", "bücher-klinik.example", connection="clinic-idp")
    return ctx


@pytest.fixture
def web(two_tenants: ServiceContext) -> Iterator[TestClient]:
    with make_client(two_tenants) as client:
        yield client


def discover(client: TestClient, email: str, **fields: str) -> tuple[int, str]:
    r = client.post("/sso/discover", data={"email": email, **fields})
    return r.status_code, r.headers.get("location", r.text)


def login_query(location: str) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(location)
    return parts.path, parse_qs(parts.query)


@pytest.mark.parametrize(("email", "connection"), [
    ("ana@hospital.example", "idp"),
    ("Ana.Lima@HOSPITAL.Example", "idp"),
    ("  ben@clinic.example ", "clinic-idp"),
    ("ben@CLINIC.EXAMPLE.", "clinic-idp"),
    ("cara@Bücher-Klinik.example", "clinic-idp"),
    ("cara@xn--bcher-klinik-dlb.example", "clinic-idp"),
    ('"odd@local"@hospital.example', "idp"),
])
def test_discover_sends_the_email_to_its_tenants_connection(web: TestClient, email: str,
                                                            connection: str) -> None:
    status, location = discover(web, email, return_to="/ward/rota?day=mon")
    assert status == 303
    path, query = login_query(location)
    assert path == f"/sso/{connection}/login"
    assert query == {"return_to": ["/ward/rota?day=mon"], "login_hint": [email.strip()]}


def test_a_subdomain_is_another_domain(web: TestClient) -> None:
    status, page = discover(web, "ana@lab.hospital.example")
    assert status == 404
    assert "lab.hospital.example" in page


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
def test_discover_keeps_only_a_local_return_to(web: TestClient, target: str) -> None:
    _, location = discover(web, "ana@hospital.example", return_to=target)
    assert login_query(location)[1]["return_to"] == ["/"]


def test_discover_then_sign_in_lands_on_return_to(web: TestClient) -> None:
    _, location = discover(web, "ana@hospital.example", return_to="/me")
    start = web.get(location)
    assert start.status_code == 303
    state = start.headers["location"].split("state=", 1)[1]
    signed = web.post("/sso/idp/mock/callback", data=idp_response(web, state))
    assert (signed.status_code, signed.headers["location"]) == (303, "/me")
    assert web.get("/me").json()["tenant"] == "hospital"


def test_an_unknown_domain_is_a_readable_page_logged_not_audited(
        web: TestClient, two_tenants: ServiceContext, caplog: pytest.LogCaptureFixture) -> None:
    before = len(list(audit_export.iter_events(two_tenants)))
    with caplog.at_level(logging.INFO, logger="jitprov.discovery"):
        r = web.post("/sso/discover", data={"email": "zoe.private@elsewhere.example"})
    assert r.status_code == 404
    assert "no organisation signs in here with addresses at elsewhere.example" in r.text
    assert r.headers["x-request-id"] in r.text
    assert "unknown_domain" in r.text and "Traceback" not in r.text
    assert len(list(audit_export.iter_events(two_tenants))) == before
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "elsewhere.example" in logged and "zoe.private" not in logged


@pytest.mark.parametrize(("email", "said"), [
    ("ana.hospital.example", "enter an email address"),
    ("@hospital.example", "enter an email address"),
    ("ana@", "enter an email address"),
    ("", "enter an email address"),
    ("ana@hospital", "is not a domain name"),
    ("ana@127.0.0.1", "is not a domain name"),
    ("ana@exa_mple.org", "is not a domain name"),
    ("ana lima@hospital.example", "has no spaces"),
    ("ana\x01@hospital.example", "control character"),
    ("ana\x00@hospital.example", "NUL"),
    ("a" * 400 + "@hospital.example", "longer than 320"),
    ("a" * (1024 * 1024), "too large"),
])
def test_bad_input_is_a_readable_400(web: TestClient, email: str, said: str) -> None:
    r = web.post("/sso/discover", data={"email": email})
    assert r.status_code == 400, r.text[:300]
    assert said in r.text
    assert "Traceback" not in r.text and r.headers["x-request-id"] in r.text


def test_a_body_that_is_not_a_form_is_a_400(web: TestClient) -> None:
    r = web.post("/sso/discover", json={"email": "ana@hospital.example"})
    assert r.status_code == 400


def test_a_post_from_another_site_is_refused(web: TestClient) -> None:
    r = web.post("/sso/discover", data={"email": "ana@hospital.example"},
                 headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = web.post("/sso/discover", data={"email": "ana@hospital.example"},
                 headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_the_form_page_carries_a_local_return_to(web: TestClient) -> None:
    r = web.get("/sso/discover", params={"return_to": "/ward"})
    assert r.status_code == 200
    assert hidden_fields(r.text)["return_to"] == "/ward"
    assert 'name="email"' in r.text
    r = web.get("/sso/discover", params={"return_to": "https://evil.example/"})
    assert hidden_fields(r.text)["return_to"] == "/"


# -- the landing page -------------------------------------------------------------------------

def buttons(html: str) -> list[str]:
    return [line.split('href="', 1)[1].split('"', 1)[0] for line in html.splitlines()
            if 'class="btn" href="/sso/' in line]


def test_landing_lists_connections_while_no_domain_is_verified(ctx: ServiceContext) -> None:
    setup_connection(ctx, tenant="hospital", slug="idp")
    admin.add_connection(ctx, tenant="hospital", slug="okta", kind="oidc",
                         config={"issuer": "https://login.example", "client_id": "jitprov"},
                         secrets_=None, mapping=HOSPITAL.format(linking="never"),
                         mapping_source="m.yaml")
    with make_client(ctx, dev_mode=False) as client:
        page = client.get("/").text
    assert buttons(page) == ["/sso/okta/login?return_to=/"]
    assert 'action="/sso/discover"' not in page


def test_landing_asks_for_the_email_once_a_domain_is_verified(ctx: ServiceContext) -> None:
    setup_connection(ctx, tenant="hospital", slug="idp")
    admin.add_connection(ctx, tenant="hospital", slug="okta", kind="oidc",
                         config={"issuer": "https://login.example", "client_id": "jitprov"},
                         secrets_=None, mapping=HOSPITAL.format(linking="never"),
                         mapping_source="m.yaml")
    discovery.add_domain(ctx, "hospital", "hospital.example", connection="okta")
    with make_client(ctx, dev_mode=False) as client:
        page = client.get("/").text
    assert 'action="/sso/discover"' in page and buttons(page) == []
    with make_client(ctx, dev_mode=True) as client:  # `jitprov dev` keeps the demo button
        page = client.get("/").text
    assert 'action="/sso/discover"' in page
    assert buttons(page) == ["/sso/idp/login?return_to=/"]
    assert "Sign in with idp" in page


# -- forward-auth -----------------------------------------------------------------------------

def test_forward_auth_redirect_without_a_connection_goes_to_discovery(
        ctx: ServiceContext) -> None:
    setup_connection(ctx, tenant="hospital", slug="idp")
    with make_client(ctx) as client:
        params = {"mode": "redirect"}
        headers = {"X-Forwarded-Uri": "/ward/rota?day=mon"}
        assert client.get("/auth/verify", params=params, headers=headers).status_code == 401
        discovery.add_domain(ctx, "hospital", "hospital.example", connection="idp")
        r = client.get("/auth/verify", params=params, headers=headers)
        assert (r.status_code, r.headers["location"]) == (
            302, "/sso/discover?return_to=%2Fward%2Frota%3Fday%3Dmon")
        named = client.get("/auth/verify", params={**params, "login": "idp"}, headers=headers)
        assert named.headers["location"].startswith("/sso/idp/login?")
        assert client.get("/auth/verify").status_code == 401  # 401 mode stays 401


# -- the admin API ----------------------------------------------------------------------------

@pytest.fixture
def api(two_tenants: ServiceContext) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _, token = admin.create_admin_token(two_tenants, "ops")
    with make_client(two_tenants) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_admin_api_adds_lists_and_removes_domains_audited(
        api: tuple[TestClient, dict[str, str]], two_tenants: ServiceContext) -> None:
    client, auth = api
    r = client.post("/api/tenants/hospital/domains", headers=auth,
                    json={"domain": "St-Marys.Example", "connection": "idp"})
    assert r.status_code == 201, r.text
    assert {k: r.json()[k] for k in ("domain", "tenant", "connection")} == {
        "domain": "st-marys.example", "tenant": "hospital", "connection": "idp"}
    listed = client.get("/api/tenants/hospital/domains", headers=auth).json()
    assert [d["domain"] for d in listed] == ["hospital.example", "st-marys.example"]
    assert listed[0]["verified_by"] == "cli:ops"
    assert client.post("/sso/discover", data={"email": "x@st-marys.example"}
                       ).status_code == 303
    r = client.delete("/api/tenants/hospital/domains/ST-MARYS.example", headers=auth)
    assert (r.status_code, r.json()["domain"]) == (200, "st-marys.example")
    assert client.post("/sso/discover", data={"email": "x@st-marys.example"}
                       ).status_code == 404
    events = [(e.type, e.actor, dict(e.data)) for e in
              audit_export.iter_events(two_tenants, "hospital") if e.type.startswith("domain.")]
    actor = listed[1]["verified_by"]
    assert actor.startswith("admin-token:") and actor.endswith(":ops")
    assert events == [
        ("domain.verified", "cli:ops", {"domain": "hospital.example", "connection": "idp"}),
        ("domain.verified", actor, {"domain": "st-marys.example", "connection": "idp"}),
        ("domain.removed", actor, {"domain": "st-marys.example", "connection": "idp"})]


def test_admin_api_refuses_a_domain_another_tenant_holds(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    r = client.post("/api/tenants/hospital/domains", headers=auth,
                    json={"domain": "CLINIC.example", "connection": "idp"})
    assert r.status_code == 409
    assert r.json()["message"] == "the domain clinic.example is verified by another tenant"
    assert client.post("/sso/discover", data={"email": "a@clinic.example"}
                       ).headers["location"].startswith("/sso/clinic-idp/")


@pytest.mark.parametrize(("body", "status", "said"), [
    ({"domain": "hospital", "connection": "idp"}, 400, "not a domain name"),
    ({"domain": "x.example", "connection": "clinic-idp"}, 400, "belongs to tenant 'clinic'"),
    ({"domain": "x.example", "connection": "nope"}, 404, "no connection"),
    ({"domain": "x\u0007.example", "connection": "idp"}, 400, "control character"),
])
def test_admin_api_refuses_bad_domains_readably(api: tuple[TestClient, dict[str, str]],
                                                body: dict[str, str], status: int,
                                                said: str) -> None:
    client, auth = api
    r = client.post("/api/tenants/hospital/domains", headers=auth, json=body)
    assert r.status_code == status, r.text
    assert said in r.json()["message"]


def test_admin_api_removing_an_unknown_domain_is_404(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    assert client.delete("/api/tenants/hospital/domains/clinic.example",
                         headers=auth).status_code == 404
    assert client.delete("/api/tenants/nope/domains/clinic.example",
                         headers=auth).status_code == 404
    assert client.get("/api/tenants/hospital/domains").status_code == 401


def test_moving_a_domain_to_another_connection_of_the_tenant_is_audited(
        two_tenants: ServiceContext) -> None:
    admin.add_mock_connection(two_tenants, tenant="hospital", slug="idp2",
                              mapping=HOSPITAL.format(linking="never"),
                              mapping_source="m.yaml")
    again = discovery.add_domain(two_tenants, "hospital", "hospital.example", connection="idp")
    assert again.verified_by == "cli:ops"  # unchanged: no new event
    moved = discovery.add_domain(two_tenants, "hospital", "hospital.example",
                                 connection="idp2", actor="cli:ana")
    assert (moved.connection_slug, moved.verified_by) == ("idp2", "cli:ana")
    events = [dict(e.data) for e in audit_export.iter_events(two_tenants, "hospital")
              if e.type == "domain.verified"]
    assert events[-1] == {"domain": "hospital.example", "connection": "idp2",
                          "previous_connection": "idp"}
    assert len(events) == 2


def test_discovery_posts_count_against_the_login_rate_limit() -> None:
    assert limit_of("POST", "/sso/discover") == "login"
    assert limit_of("GET", "/sso/discover") is None
