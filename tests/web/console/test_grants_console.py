"""The console's grant actions (user page: add, revoke, block, unblock; access-review page:
revoke from the row), CSRF-checked, and how an expired grant shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from jitprov.services import accounts, admin, audit_export, console
from jitprov.services.context import ServiceContext
from tests.conftest import Clock
from tests.web.console.test_console import _mapping, bootstrap_sign_in, provision
from tests.web.helpers import make_client


@pytest.fixture
def app_client(ctx: ServiceContext) -> Iterator[TestClient]:
    """The console's tenants of ``test_console.py``: hospital, and clinic for isolation."""
    for tenant, slug in (("hospital", "idp"), ("clinic", "clinic-idp")):
        admin.create_tenant(ctx, tenant)
        admin.add_mock_connection(ctx, tenant=tenant, slug=slug, mapping=_mapping(),
                                  mapping_source=f"{tenant}.yaml")
    with make_client(ctx) as c:
        yield c


def roles(ctx: ServiceContext, account_id: str) -> set[str]:
    return {g.role for g in accounts.list_grants(ctx, "hospital",
                                                 account_id=account_id).grants}


def test_add_and_revoke_a_role_on_the_user_page(app_client: TestClient,
                                                ctx: ServiceContext) -> None:
    account_id = provision(ctx)
    csrf = bootstrap_sign_in(app_client, ctx)
    page = app_client.get(f"/admin/users/{account_id}").text
    assert f'action="/admin/users/{account_id}/grants/add"' in page

    r = app_client.post(f"/admin/users/{account_id}/grants/add", data={
        "role": "pharmacy:read", "reason": "cover", "expires_in_days": "2",
        "csrf_token": csrf})
    assert (r.status_code, r.headers["location"]) == (
        303, f"/admin/users/{account_id}?done=granted#roles")
    html = app_client.get(f"/admin/users/{account_id}?done=granted").text
    assert "The role is granted." in html
    assert re.search(r"pharmacy:read</th><td class=\"provenance\">manual, by "
                     r"admin-console:bootstrap-\d+ on 2026-11-28", html)
    assert "2026-11-30 07:00 UTC" in html

    r = app_client.post(f"/admin/users/{account_id}/grants/revoke", data={
        "role": "pharmacy:read", "reason": "back", "csrf_token": csrf})
    assert r.status_code == 303
    assert "pharmacy:read" not in roles(ctx, account_id)
    [event] = [e for e in audit_export.iter_events(ctx, "hospital")
               if e.type == "grant.revoked"]
    assert event.actor.startswith("admin-console:bootstrap-")


def test_grant_forms_without_the_csrf_token_change_nothing(app_client: TestClient,
                                                           ctx: ServiceContext) -> None:
    account_id = provision(ctx)
    bootstrap_sign_in(app_client, ctx)
    for action, data in (("add", {"role": "x", "reason": "r"}),
                         ("revoke", {"role": "nurse", "reason": "r", "block": "on"}),
                         ("unblock", {"role": "nurse", "reason": "r"})):
        r = app_client.post(f"/admin/users/{account_id}/grants/{action}",
                            data={**data, "csrf_token": "f" * 64})
        assert r.status_code == 403
    assert roles(ctx, account_id) == {"nurse", "staff"}
    assert accounts.list_grants(ctx, "hospital").blocks == []


def test_a_rule_role_is_refused_then_blocked_and_unblocked(app_client: TestClient,
                                                           ctx: ServiceContext) -> None:
    account_id = provision(ctx)
    csrf = bootstrap_sign_in(app_client, ctx)
    url = f"/admin/users/{account_id}/grants"
    refused = app_client.post(f"{url}/revoke", data={"role": "nurse", "reason": "x",
                                                    "csrf_token": csrf})
    assert refused.status_code == 400
    assert "granted by rule idp/nurses" in refused.text

    blocked = app_client.post(f"{url}/revoke", data={
        "role": "nurse", "reason": "incident", "block": "on", "csrf_token": csrf})
    assert blocked.headers["location"].endswith("?done=blocked#roles")
    html = app_client.get(f"/admin/users/{account_id}").text
    assert re.search(r"<strong>nurse</strong> blocked by admin-console:bootstrap-\d+ on "
                     r"2026-11-28 07:00 UTC: incident", html)
    provision(ctx)  # the rule matches again: the block holds
    assert roles(ctx, account_id) == {"staff"}

    app_client.post(f"{url}/unblock", data={"role": "nurse", "reason": "ok",
                                            "csrf_token": csrf})
    provision(ctx)
    assert roles(ctx, account_id) == {"nurse", "staff"}


def test_bad_grant_input_is_a_readable_400(app_client: TestClient,
                                          ctx: ServiceContext) -> None:
    account_id = provision(ctx)
    csrf = bootstrap_sign_in(app_client, ctx)
    url = f"/admin/users/{account_id}/grants/add"
    for data, message in (({"role": "a b", "reason": "x"}, "invalid role name"),
                          ({"role": "r", "reason": " "}, "a reason is required"),
                          ({"role": "r", "reason": "x", "expires_in_days": "0"},
                           "expires in")):
        r = app_client.post(url, data={**data, "csrf_token": csrf})
        assert (r.status_code, message in r.text) == (400, True)
    assert app_client.post("/admin/users/nobody/grants/add", data={
        "role": "r", "reason": "x", "csrf_token": csrf}).status_code == 404
    assert roles(ctx, account_id) == {"nurse", "staff"}


def test_an_expired_grant_shows_as_expired_and_leaves_the_access_review(
        app_client: TestClient, ctx: ServiceContext, clock: Clock) -> None:
    account_id = provision(ctx, groups=["Nurses", "Charge Nurses"])
    [request] = accounts.list_requests(ctx, "hospital")
    accounts.decide_request(ctx, request.id, approve=True, reason="cover", approver="a",
                            valid_for=timedelta(days=1))
    bootstrap_sign_in(app_client, ctx)
    assert "charge-nurse" in app_client.get("/admin/access-review").text
    clock.advance(days=1, minutes=1)
    bootstrap_sign_in(app_client, ctx)  # the admin session idled out meanwhile

    html = app_client.get(f"/admin/users/{account_id}").text
    row = re.search(r'<tr class="role expired"><th scope="row">charge-nurse</th>.*?</tr>',
                    html, re.S)
    assert row is not None
    assert "expired</span> on 2026-11-29 07:00 UTC (not held" in row.group(0)
    assert "grants/revoke" not in row.group(0)
    assert "charge-nurse" not in app_client.get("/admin/access-review").text
    assert console.search_users(ctx, "hospital", role="charge-nurse").rows == ()
    search = app_client.get("/admin/users", params={"role": "charge-nurse"}).text
    assert f"/admin/users/{account_id}" not in search
    assert f"/admin/users/{account_id}" in app_client.get(
        "/admin/users", params={"role": "nurse"}).text


def test_revoke_from_an_access_review_row(app_client: TestClient,
                                          ctx: ServiceContext) -> None:
    account_id = provision(ctx)
    accounts.grant_role(ctx, "hospital", account_id, "auditor", reason="q4", actor="cli")
    csrf = bootstrap_sign_in(app_client, ctx)
    page = app_client.get("/admin/access-review").text
    assert page.count(f'action="/admin/users/{account_id}/grants/revoke"') == 3
    assert 'name="block"' in page  # offered on the rule rows

    r = app_client.post(f"/admin/users/{account_id}/grants/revoke", data={
        "role": "auditor", "reason": "quarterly review", "from": "review",
        "csrf_token": csrf})
    assert (r.status_code, r.headers["location"]) == (
        303, "/admin/access-review?tenant=hospital&done=revoked")
    assert "The role is revoked." in app_client.get(r.headers["location"]).text
    assert roles(ctx, account_id) == {"nurse", "staff"}


def test_another_tenants_admin_cannot_touch_grants(app_client: TestClient,
                                                   ctx: ServiceContext) -> None:
    account_id = provision(ctx)
    csrf = bootstrap_sign_in(app_client, ctx, tenant="clinic")
    r = app_client.post(f"/admin/users/{account_id}/grants/add", data={
        "role": "x", "reason": "r", "csrf_token": csrf})
    assert r.status_code == 403
    assert roles(ctx, account_id) == {"nurse", "staff"}


@pytest.mark.parametrize("action", ["revoke", "unblock"])
def test_another_tenants_admin_can_neither_revoke_nor_unblock(
        app_client: TestClient, ctx: ServiceContext, action: str) -> None:
    account_id = provision(ctx)
    accounts.grant_role(ctx, "hospital", account_id, "auditor", reason="q4", actor="cli")
    accounts.revoke_role(ctx, "hospital", account_id, "nurse", reason="incident",
                         actor="cli", block=True)
    before = len(list(audit_export.iter_events(ctx, "hospital")))
    csrf = bootstrap_sign_in(app_client, ctx, tenant="clinic")
    role = "auditor" if action == "revoke" else "nurse"
    r = app_client.post(f"/admin/users/{account_id}/grants/{action}", data={
        "role": role, "reason": "r", "block": "on", "csrf_token": csrf})
    assert r.status_code == 403
    assert "you do not administer this tenant" in r.text
    assert roles(ctx, account_id) == {"auditor", "staff"}
    listing = accounts.list_grants(ctx, "hospital", account_id=account_id)
    assert [b.role for b in listing.blocks] == ["nurse"]
    assert len(list(audit_export.iter_events(ctx, "hospital"))) == before
