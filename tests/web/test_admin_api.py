"""The admin API: bearer tokens fail closed; endpoints mirror the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock
from tests.web.helpers import make_client


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[tuple[TestClient, dict[str, str]]]:
    setup_connection(ctx)
    _, token = admin.create_admin_token(ctx, "ops")
    with make_client(ctx, dev_mode=False) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_api_without_token_is_401(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    assert client.get("/api/tenants").status_code == 401
    assert client.get("/api/tenants", headers={"Authorization": "Bearer jpa_wrong"}
                      ).status_code == 401


def test_revoked_and_expired_tokens_are_refused(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    revoked_id, revoked = admin.create_admin_token(ctx, "old")
    admin.revoke_admin_token(ctx, revoked_id)
    _, short = admin.create_admin_token(ctx, "short", expires_in=timedelta(hours=1))
    clock.advance(hours=2)
    with make_client(ctx) as client:
        for token in (revoked, short):
            r = client.get("/api/tenants", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401


def test_create_and_list_tenants(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    assert client.post("/api/tenants", json={"slug": "clinic"}, headers=auth).status_code == 201
    slugs = [t["slug"] for t in client.get("/api/tenants", headers=auth).json()]
    assert slugs == ["clinic", "hospital"]
    assert client.post("/api/tenants", json={"slug": "clinic"}, headers=auth).status_code == 409


def test_users_list_shows_role_provenance(api: tuple[TestClient, dict[str, str]],
                                          ctx: ServiceContext) -> None:
    client, auth = api
    provision_on_login(ctx, "idp", nurse())
    [user] = client.get("/api/tenants/hospital/users", headers=auth).json()
    assert user["grants"] == [
        {"role": "nurse", "source": "rule:idp/nurses", "expires_at": None},
        {"role": "staff", "source": "rule:idp/default", "expires_at": None}]


def test_mapping_check_names_the_line_of_a_bad_rule(
        api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    bad = "roles:\n  rules:\n    - grant: [x]\n      when: contains(groups,\n"
    r = client.post("/api/mapping/check", json={"mapping": bad, "source": "m.yaml"},
                    headers=auth)
    assert r.status_code == 422
    assert "m.yaml:4" in r.json()["message"]


def test_mapping_dry_run_writes_nothing(api: tuple[TestClient, dict[str, str]],
                                        ctx: ServiceContext) -> None:
    client, auth = api
    r = client.post("/api/connections/idp/mapping/test", headers=auth,
                    json={"subject": "u-9", "claims": {"email": "x@y.z", "email_verified": True,
                                                       "groups": ["Nurses"]}})
    assert r.json()["decision"] == "create"
    assert admin.list_accounts(ctx, "hospital") == []


def test_audit_verify_and_export(api: tuple[TestClient, dict[str, str]],
                                 ctx: ServiceContext) -> None:
    client, auth = api
    provision_on_login(ctx, "idp", nurse())
    assert client.get("/api/audit/verify", headers=auth).json()["intact"] is True
    lines = client.get("/api/audit/export", headers=auth).text.splitlines()
    assert len(lines) == 3  # tenant.created, connection.created, account.created


def test_openapi_document_lists_the_admin_api(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/tenants" in paths
    assert "/sso/{connection}/login" not in paths


def test_every_admin_route_requires_a_token(api: tuple[TestClient, dict[str, str]]) -> None:
    from fastapi.routing import APIRoute

    from jitprov.web.routes.admin_api import router

    client, _ = api
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 8
    for route in routes:
        path = route.path.replace("{tenant}", "hospital").replace("{connection}", "idp")
        for method in route.methods:
            r = client.request(method, path, json={})
            assert r.status_code == 401, (method, path)


def test_deactivation_through_the_api_ends_the_users_session(
        api: tuple[TestClient, dict[str, str]], ctx: ServiceContext) -> None:
    from jitprov.services.sessions import current_session

    client, auth = api
    login = provision_on_login(ctx, "idp", nurse())
    r = client.post(f"/api/accounts/{login.account_id}/status", headers=auth,
                    json={"status": "deactivated", "reason": "badge lost"})
    assert r.json() == {"account_id": login.account_id, "before": "active",
                        "after": "deactivated", "sessions_revoked": 1}
    assert current_session(ctx, login.session_token) is None


def test_approvals_through_the_api(api: tuple[TestClient, dict[str, str]],
                                   ctx: ServiceContext) -> None:
    client, auth = api
    provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Charge Nurses"]))
    [request] = client.get("/api/tenants/hospital/approvals", headers=auth).json()
    r = client.post(f"/api/approvals/{request['id']}", headers=auth,
                    json={"approve": True, "reason": "night lead", "valid_days": 7})
    assert (r.json()["role"], r.json()["approved"]) == ("charge-nurse", True)
    assert client.post(f"/api/approvals/{request['id']}", headers=auth,
                       json={"approve": False, "reason": "late"}).status_code == 409


def test_break_glass_through_the_api_needs_two_admins_and_signs_in_once(
        api: tuple[TestClient, dict[str, str]], ctx: ServiceContext) -> None:
    client, alice = api
    _, other = admin.create_admin_token(ctx, "bob")
    bob = {"Authorization": f"Bearer {other}"}
    request_id = client.post("/api/tenants/hospital/break-glass", headers=alice, json={
        "roles": ["nurse"], "reason": "IdP outage"}).json()["id"]
    assert client.post(f"/api/break-glass/{request_id}/approve",
                       headers=alice).status_code == 400
    code = client.post(f"/api/break-glass/{request_id}/approve", headers=bob).json()["code"]
    assert client.get("/break-glass").status_code == 200
    r = client.post("/break-glass", data={"code": code})
    assert r.status_code == 303
    assert client.get("/me").json()["roles"] == ["nurse"]
    client.cookies.clear()
    assert client.post("/break-glass", data={"code": code}).status_code == 400


def test_metrics_count_logins_and_need_a_token(api: tuple[TestClient, dict[str, str]],
                                               ctx: ServiceContext) -> None:
    client, auth = api

    def logins(outcome: str) -> float:
        text = client.get("/metrics", headers=auth).text
        for line in text.splitlines():
            if line.startswith(f'jitprov_logins_total{{outcome="{outcome}"}}'):
                return float(line.split()[-1])
        return 0.0

    assert client.get("/metrics").status_code == 401
    before = logins("create"), logins("no_change")
    provision_on_login(ctx, "idp", nurse())
    provision_on_login(ctx, "idp", nurse())
    assert (logins("create"), logins("no_change")) == (before[0] + 1, before[1] + 1)
    assert "jitprov_login_decision_seconds_bucket" in client.get("/metrics", headers=auth).text


@pytest.mark.parametrize("body", [{"reason": "\ud800"}, {"reason": ["\ud800"]}])
def test_a_delete_body_with_a_lone_surrogate_is_refused_not_a_500(
        api: tuple[TestClient, dict[str, str]], ctx: ServiceContext,
        body: dict[str, object]) -> None:
    """The DELETE routes take a JSON body (the reason); a lone surrogate in it (JSON
    ``"\\ud800"``) is bad input like anywhere else (it was a 500: FastAPI's validation error
    echoes the input, which UTF-8 cannot encode)."""
    client, auth = api
    provision_on_login(ctx, "idp", nurse())
    [user] = client.get("/api/tenants/hospital/users", headers=auth).json()
    for path in ("grants", "overrides"):
        r = client.request("DELETE", f"/api/tenants/hospital/accounts/{user['id']}/{path}/nurse",
                           headers={**auth, "Content-Type": "application/json"},
                           content=json.dumps(body).encode("ascii"))
        assert r.status_code in (400, 422), r.text


def test_a_validation_error_never_echoes_the_input(api: tuple[TestClient, dict[str, str]]
                                                   ) -> None:
    """FastAPI would repeat the body back: a huge value, or one no response can encode."""
    client, auth = api
    body = '{"role": "x", "reason": "r", "expires_in_days": "\\ud800' + "z" * 5000 + '"}'
    r = client.post("/api/tenants/hospital/accounts/a-1/grants", content=body,
                    headers={**auth, "Content-Type": "application/json"})
    assert r.status_code in (400, 422)
    assert "zzzz" not in r.text and len(r.text) < 2000
    r = client.post("/api/tenants", json={"slug": 12345678901234567890}, headers=auth)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_input" and r.json()["request_id"]
    assert r.json()["detail"][0]["loc"] == ["body", "slug"]
    assert "12345678901234567890" not in r.text
