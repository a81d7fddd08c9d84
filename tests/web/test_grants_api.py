"""Grants and overrides through the admin API; expired grants gone from its listings."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from jitprov.services import accounts, admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock
from tests.web.helpers import make_client, sign_in

Api = tuple[TestClient, dict[str, str], str]


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[Api]:
    setup_connection(ctx)
    _, token = admin.create_admin_token(ctx, "ops")
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    assert account_id is not None
    with make_client(ctx, dev_mode=False) as client:
        yield client, {"Authorization": f"Bearer {token}"}, account_id


def test_grant_list_and_revoke(api: Api, ctx: ServiceContext) -> None:
    client, auth, account_id = api
    url = f"/api/tenants/hospital/accounts/{account_id}/grants"
    r = client.post(url, headers=auth, json={"role": "pharmacy:read", "reason": "cover",
                                             "expires_in_days": 2})
    assert r.status_code == 201
    assert (r.json()["role"], r.json()["source"]) == ("pharmacy:read", "manual")

    listing = client.get(url, headers=auth).json()
    [manual] = [g for g in listing["grants"] if g["source"] == "manual"]
    assert manual["granted_by"].startswith("admin-token:") and manual["expires_at"]
    assert listing["overrides"] == []
    whole = client.get("/api/tenants/hospital/grants", headers=auth).json()
    assert whole == listing
    # granting it again replaces the grant: here, without an expiry
    assert client.post(url, headers=auth, json={"role": "pharmacy:read",
                                                "reason": "permanent"}).status_code == 201
    [manual] = [g for g in client.get(url, headers=auth).json()["grants"]
                if g["source"] == "manual"]
    assert manual["expires_at"] is None

    r = client.request("DELETE", f"{url}/pharmacy:read", headers=auth,
                       json={"reason": "back"})
    assert r.json() == {"account_id": account_id, "role": "pharmacy:read",
                        "revoked": ["manual"], "blocked": False}
    assert [e.actor for e in audit_export.iter_events(ctx, "hospital")
            if e.type == "grant.revoked"] == [manual["granted_by"]]


def test_a_rule_role_is_400_naming_the_rule_then_blocked_and_unblocked(api: Api) -> None:
    client, auth, account_id = api
    url = f"/api/tenants/hospital/accounts/{account_id}"
    r = client.request("DELETE", f"{url}/grants/nurse", headers=auth, json={"reason": "x"})
    assert r.status_code == 400
    assert "granted by rule idp/nurses" in r.text

    r = client.request("DELETE", f"{url}/grants/nurse", headers=auth,
                       json={"reason": "incident", "block": True})
    assert r.json()["blocked"] is True
    [override] = client.get(f"{url}/grants", headers=auth).json()["overrides"]
    assert (override["role"], override["effect"], override["reason"]) == (
        "nurse", "blocked", "incident")
    [user] = client.get("/api/tenants/hospital/users", headers=auth).json()
    assert user["roles"] == ["staff"]

    r = client.request("DELETE", f"{url}/overrides/nurse", headers=auth,
                       json={"reason": "cleared"})
    assert r.json() == {"account_id": account_id, "role": "nurse", "blocked": False}
    again = client.request("DELETE", f"{url}/overrides/nurse", headers=auth,
                           json={"reason": "cleared"})
    assert again.status_code == 400


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/api/tenants/nowhere/accounts/{a}/grants", {"role": "r", "reason": "x"}, 404),
    ("POST", "/api/tenants/hospital/accounts/nobody/grants", {"role": "r", "reason": "x"},
     404),
    ("GET", "/api/tenants/hospital/accounts/nobody/grants", None, 404),
    ("GET", "/api/tenants/nowhere/grants", None, 404),
    ("POST", "/api/tenants/hospital/accounts/{a}/grants", {"role": "a b", "reason": "x"},
     400),
    ("POST", "/api/tenants/hospital/accounts/{a}/grants", {"role": "r", "reason": ""}, 422),
    ("POST", "/api/tenants/hospital/accounts/{a}/grants",
     {"role": "r", "reason": "x", "expires_in_days": 0}, 422),
    ("DELETE", "/api/tenants/hospital/accounts/{a}/grants/auditor", {"reason": "x"}, 400),
    ("DELETE", "/api/tenants/hospital/accounts/nobody/grants/nurse", {"reason": "x"}, 404),
])
def test_bad_input_is_4xx_json_and_writes_nothing(api: Api, ctx: ServiceContext, method: str,
                                                  path: str, body: object,
                                                  status: int) -> None:
    client, auth, account_id = api
    before = len(list(audit_export.iter_events(ctx, "hospital")))
    r = client.request(method, path.replace("{a}", account_id), headers=auth, json=body)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert len(list(audit_export.iter_events(ctx, "hospital"))) == before


def test_an_expired_approval_leaves_the_users_list_and_the_access_review(
        api: Api, ctx: ServiceContext, clock: Clock) -> None:
    client, auth, _ = api
    provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Charge Nurses"]))
    [request] = accounts.list_requests(ctx, "hospital")
    accounts.decide_request(ctx, request.id, approve=True, reason="cover", approver="a",
                            valid_for=timedelta(days=1))
    [user] = client.get("/api/tenants/hospital/users", headers=auth).json()
    assert "charge-nurse" in user["roles"]
    clock.advance(days=1)

    [user] = client.get("/api/tenants/hospital/users", headers=auth).json()
    assert "charge-nurse" not in user["roles"]
    assert {"role": "charge-nurse", "source": "approval"} not in user["grants"]
    review = client.get("/api/tenants/hospital/access-review", headers=auth,
                        params={"format": "json"}).json()
    assert "charge-nurse" not in {r["role"] for r in review}
    grants = client.get("/api/tenants/hospital/grants", headers=auth).json()["grants"]
    assert "charge-nurse" not in {g["role"] for g in grants}


def _token_roles(client: TestClient) -> list[str]:
    payload = client.get("/me/token").json()["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return list(claims["roles"])


def test_through_http_an_expired_approval_is_asked_again_at_the_next_demo_login(
        client: TestClient, ctx: ServiceContext, clock: Clock) -> None:
    sign_in(client, groups="Nurses,Charge Nurses")
    [request] = accounts.list_requests(ctx, "hospital")
    accounts.decide_request(ctx, request.id, approve=True, reason="cover", approver="a",
                            valid_for=timedelta(hours=8))
    assert client.get("/auth/verify").headers["x-jitprov-roles"] == "charge-nurse,nurse,staff"
    clock.advance(hours=8)

    # at once, before any login or sweep: /me, forward-auth and the identity token drop it
    assert "charge-nurse" not in client.get("/me").json()["roles"]
    assert client.get("/auth/verify").headers["x-jitprov-roles"] == "nurse,staff"
    assert client.get("/auth/verify", params={"role": "charge-nurse"}).status_code == 403
    assert "charge-nurse" not in _token_roles(client)

    sign_in(client, groups="Nurses,Charge Nurses")  # the rule still matches: ask again
    [again] = accounts.list_requests(ctx, "hospital")
    assert (again.role, again.id != request.id) == ("charge-nurse", True)
    assert client.get("/me").json()["pending_roles"] == [
        {"role": "charge-nurse", "source": "rule:idp/charge-nurses"}]
    accounts.decide_request(ctx, again.id, approve=True, reason="again", approver="a")
    assert "charge-nurse" in client.get("/me").json()["roles"]
