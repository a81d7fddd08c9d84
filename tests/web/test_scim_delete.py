"""SCIM DELETE over HTTP (RFC 7644 section 3.6): afterwards the id answers 404 for GET, PUT,
PATCH and DELETE and is absent from lists, filters and groups, under both tenant policies;
under ``deactivate`` the account stays (inactive, with its history). A later POST of the same
person creates a new resource, and the person's login identity follows it."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens
from tests.web.helpers import idp_response, make_client, start
from tests.web.scim_helpers import GROUP_SCHEMA, Scim, assert_scim_error, patch, scim_token, user

ANA = "ana@hospital.example"


def demo_login(ctx: ServiceContext, subject: str) -> tuple[int, str]:
    """A demo-IdP login in a fresh browser: (status, the account id or the page)."""
    with make_client(ctx) as browser:
        state = start(browser)
        r = browser.post("/sso/idp/mock/callback",
                         data=idp_response(browser, state, subject=subject))
        if r.status_code != 303:
            return r.status_code, r.text
        return 303, browser.get("/me").json()["id"]


@pytest.mark.parametrize("policy", ["deactivate", "erase"])
def test_a_deleted_user_is_gone_for_scim_under_both_policies(
        client: TestClient, ctx: ServiceContext, policy: str) -> None:
    if policy == "erase":
        scim_tokens.set_scim_policy(ctx, "hospital", delete="erase")
    scim = Scim(client, scim_token(ctx))
    user_id = scim.post("/Users", user(ANA, externalId="00u-ana")).json()["id"]
    other = scim.post("/Users", user("bo@hospital.example")).json()["id"]
    group = scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Nurses",
                                  "members": [{"value": user_id}, {"value": other}]}).json()

    assert scim.delete(f"/Users/{user_id}").status_code == 204

    assert_scim_error(scim.get(f"/Users/{user_id}"), 404)
    assert_scim_error(scim.put(f"/Users/{user_id}", user(ANA)), 404)
    assert_scim_error(scim.patch(f"/Users/{user_id}", patch(
        {"op": "replace", "path": "displayName", "value": "x"})), 404)
    assert_scim_error(scim.delete(f"/Users/{user_id}"), 404)
    listed = scim.get("/Users").json()
    assert [r["id"] for r in listed["Resources"]] == [other]
    assert listed["totalResults"] == 1
    for query in (f'userName eq "{ANA}"', 'externalId eq "00u-ana"', 'active eq false',
                  'emails.value co "ana"'):
        assert scim.get("/Users", filter=query).json()["totalResults"] == 0, query
    members = scim.get(f"/Groups/{group['id']}").json()["members"]
    assert [m["value"] for m in members] == [other]
    assert scim.get(f"/Groups/{group['id']}").json()["meta"]["version"] != \
        group["meta"]["version"]
    assert_scim_error(scim.patch(f"/Groups/{group['id']}", patch(
        {"op": "add", "path": "members", "value": [{"value": user_id}]})), 400)

    accounts = {v.account.id: v.account.status for v in admin.list_accounts(ctx, "hospital")}
    if policy == "deactivate":  # kept, inactive, with its history
        assert accounts[user_id] == "deactivated"
        types = [e.type for e in audit_export.iter_events(ctx, "hospital")
                 if e.account_id == user_id]
        assert types[-2:] == ["account.deactivated", "account.scim_deleted"]
    else:
        assert user_id not in accounts


def test_deleting_an_already_deactivated_user_still_makes_it_404(
        client: TestClient, ctx: ServiceContext) -> None:
    """Okta and Entra deactivate first (active false), then delete."""
    scim = Scim(client, scim_token(ctx))
    user_id = scim.post("/Users", user(ANA)).json()["id"]
    scim.patch(f"/Users/{user_id}", patch({"op": "replace", "path": "active", "value": False}))

    assert scim.delete(f"/Users/{user_id}").status_code == 204

    assert_scim_error(scim.get(f"/Users/{user_id}"), 404)


def test_a_later_post_of_the_same_person_is_a_new_resource_their_login_follows(
        client: TestClient, ctx: ServiceContext) -> None:
    scim = Scim(client, scim_token(ctx))  # bound to the demo connection "idp"
    first = scim.post("/Users", user(ANA, externalId="00u-ana")).json()["id"]
    assert demo_login(ctx, "00u-ana") == (303, first)  # linked by external id
    assert scim.delete(f"/Users/{first}").status_code == 204
    status, page = demo_login(ctx, "00u-ana")
    assert (status, "deactivated" in page) == (403, True)  # JIT never resurrects it

    r = scim.post("/Users", user(ANA, externalId="00u-ana"))

    assert r.status_code == 201, r.text
    second = r.json()["id"]
    assert second != first
    assert scim.get("/Users", filter=f'userName eq "{ANA}"').json()["Resources"][0]["id"] \
        == second
    assert demo_login(ctx, "00u-ana") == (303, second)
    statuses = {v.account.id: v.account.status for v in admin.list_accounts(ctx, "hospital")}
    assert (statuses[first], statuses[second]) == ("deactivated", "active")
    created = [e for e in audit_export.iter_events(ctx, "hospital")
               if e.type == "account.created" and e.account_id == second]
    assert created[0].data["identity_taken_from"] == first


def test_a_jit_account_deleted_by_scim_is_not_adopted_nor_linked_again(
        client: TestClient, ctx: ServiceContext) -> None:
    """A JIT-made account the IdP deletes: a POST of that email later is a new account, even
    under ``scim_on_existing: adopt``."""
    scim_tokens.set_scim_policy(ctx, "hospital", on_existing="adopt")
    jit = demo_login(ctx, "ana-sub")[1]
    scim = Scim(client, scim_token(ctx))
    assert scim.get("/Users", filter=f'userName eq "{ANA}"').json()["totalResults"] == 1
    assert scim.delete(f"/Users/{jit}").status_code == 204

    r = scim.post("/Users", user(ANA))

    assert r.status_code == 201, r.text
    assert r.json()["id"] != jit


@pytest.mark.parametrize("linking", ["never", "verified_email"])
def test_a_person_scim_deleted_cannot_come_back_by_a_new_subject_with_the_same_email(
        ctx: ServiceContext, linking: str) -> None:
    """Under ``deactivate`` the deleted account still holds the email: a first login with a
    new subject (the IdP re-created the person, as Entra does) is refused, not given a fresh
    JIT account with rule roles."""
    from jitprov.testing.builders import setup_connection
    setup_connection(ctx, linking=linking)
    with make_client(ctx) as client:
        scim = Scim(client, scim_token(ctx))
        jit = demo_login(ctx, "ana-old")[1]
        assert scim.delete(f"/Users/{jit}").status_code == 204

        status, page = demo_login(ctx, "ana-new")

    assert status == 403, page
    assert [v.account.id for v in admin.list_accounts(ctx, "hospital")] == [jit]
    denied = [e for e in audit_export.iter_events(ctx, "hospital") if e.type == "login.denied"]
    assert denied[-1].data["subject"] == "ana-new"


def test_an_admin_cannot_reactivate_an_account_scim_deleted(
        client: TestClient, ctx: ServiceContext) -> None:
    """SCIM answers 404 for it: reactivated, its IdP could never deprovision it again."""
    _, token = admin.create_admin_token(ctx, "ops")
    scim = Scim(client, scim_token(ctx))
    user_id = scim.post("/Users", user(ANA, externalId="00u-ana")).json()["id"]
    assert scim.delete(f"/Users/{user_id}").status_code == 204

    r = client.post(f"/api/accounts/{user_id}/status", headers={
        "Authorization": f"Bearer {token}"}, json={"status": "active", "reason": "back"})

    assert r.status_code == 409
    assert "was deleted by SCIM" in r.json()["message"]
    assert "the IdP must re-create it" in r.json()["message"]
    statuses = {v.account.id: v.account.status for v in admin.list_accounts(ctx, "hospital")}
    assert statuses[user_id] == "deactivated"
    assert "account.reactivated" not in [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert_scim_error(scim.get(f"/Users/{user_id}"), 404)
