"""Pending links over HTTP: a demo login under ``linking.by_email: pending`` asks, the admin
API lists and decides, a webhook announces, and the person's next demo login shows the
outcome (signed in to the linked account, or a readable refusal)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.services import accounts, admin, audit_export, webhooks
from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import setup_connection
from tests.conftest import Clock
from tests.services.test_webhooks import Receiver
from tests.web.helpers import idp_response, make_client, sign_in, start

Api = tuple[TestClient, dict[str, str]]


@pytest.fixture
def api(ctx: ServiceContext) -> Iterator[Api]:
    setup_connection(ctx, linking="pending")
    _, token = admin.create_admin_token(ctx, "ops")
    with make_client(ctx) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def demo_login(ctx: ServiceContext, subject: str, **fields: str) -> tuple[int, str, TestClient]:
    """A demo-IdP login in a fresh browser: (callback status, page, the browser)."""
    browser = make_client(ctx)
    state = start(browser)
    r = browser.post("/sso/idp/mock/callback",
                     data=idp_response(browser, state, subject=subject, **fields))
    return r.status_code, r.text, browser


def first_account(ctx: ServiceContext) -> str:
    browser = sign_in(make_client(ctx), subject="ana-okta")
    account_id: str = browser.get("/me").json()["id"]
    browser.close()
    return account_id


def open_links(client: TestClient, auth: dict[str, str],
               status: str = "pending") -> list[dict[str, object]]:
    r = client.get("/api/tenants/hospital/links", params={"status": status}, headers=auth)
    assert r.status_code == 200, r.text
    links: list[dict[str, object]] = r.json()
    return links


def test_an_approved_link_signs_the_person_in_to_the_linked_account(
        ctx: ServiceContext, api: Api, clock: Clock) -> None:
    client, auth = api
    ctx.webhook_allow_private = True
    clock.now = datetime.now(UTC)  # the receiver's signature check reads the real clock
    receiver = Receiver()
    try:
        webhooks.add_endpoint(ctx, "hospital", receiver.url, ["link.requested",
                                                              "link.approved"])
        account_id = first_account(ctx)

        status, page, _ = demo_login(ctx, "ana-entra", department="eyJh.eyJi.c2ln")
        assert status == 403
        assert "awaits an admin" in page
        [link] = open_links(client, auth)
        assert (link["connection"], link["subject"], link["account_id"]) == (
            "idp", "ana-entra", account_id)
        claims = link["claims"]
        assert isinstance(claims, dict)
        assert claims["email"] == "ana@hospital.example"
        assert claims["department"] == "[redacted]"  # a token-shaped value: redacted

        again, _, _ = demo_login(ctx, "ana-entra")  # still waiting: no second request
        assert again == 403
        assert len(open_links(client, auth)) == 1

        r = client.post(f"/api/tenants/hospital/links/{link['id']}/approve",
                        json={"reason": "same nurse, new IdP"}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "approved"
        assert open_links(client, auth) == []

        status, _, browser = demo_login(ctx, "ana-entra")
        assert status == 303
        me = browser.get("/me").json()
        assert me["id"] == account_id
        assert "nurse" in me["roles"]

        webhooks.deliver_due(ctx)
        received = [json.loads(body) for _, body in receiver.received]
        assert [(m["type"], m["data"]["subject"], m["data"]["account_id"]) for m in received] \
            == [("link.requested", "ana-entra", account_id),
                ("link.approved", "ana-entra", account_id)]
        assert all("claims" not in m["data"] for m in received)
    finally:
        receiver.close()
    events = [(e.type, e.actor.split(":")[0]) for e in audit_export.iter_events(ctx, "hospital")]
    assert ("link.approved", "admin-token") in events
    assert ("login.pending", "login") in events


def test_a_refused_link_refuses_every_later_login_until_cleared(
        ctx: ServiceContext, api: Api) -> None:
    client, auth = api
    first_account(ctx)
    demo_login(ctx, "ana-entra")
    [link] = open_links(client, auth)

    r = client.post(f"/api/tenants/hospital/links/{link['id']}/refuse",
                    json={"reason": "not the same person"}, headers=auth)
    assert r.status_code == 200, r.text

    for _ in range(2):  # refused, and never asked again on its own
        status, page, _ = demo_login(ctx, "ana-entra")
        assert status == 403
        assert "Access refused" in page
        assert "an administrator refused to link this sign-in" in page
        assert "link_refused_by_admin" in page
        assert open_links(client, auth) == []
    [held] = open_links(client, auth, "refused")
    assert (held["id"], held["reason"], held["claims"]) == (link["id"], "not the same person", {})

    r = client.post(f"/api/tenants/hospital/links/{link['id']}/clear",
                    json={"reason": "refused by mistake"}, headers=auth)
    assert r.status_code == 200, r.text
    status, page, _ = demo_login(ctx, "ana-entra")
    assert status == 403
    assert "awaits an admin" in page  # asked again
    [asked_again] = open_links(client, auth)
    assert asked_again["id"] != link["id"]
    with UnitOfWork(ctx.db, readonly=True) as uow:
        announced = [kind for _, kind, _ in uow.outbox.pending(limit=1000)
                     if kind.startswith("link.")]
    assert announced == ["link.requested", "link.refused", "link.cleared", "link.requested"]
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types.count("link.refused") == 1
    assert types.count("link.cleared") == 1
    assert "login.denied" in types


def test_a_link_to_an_account_deactivated_meanwhile_cannot_be_approved(
        ctx: ServiceContext, api: Api) -> None:
    client, auth = api
    account_id = first_account(ctx)
    demo_login(ctx, "ana-entra")
    [link] = open_links(client, auth)
    accounts.set_account_status(ctx, account_id, "deactivated", reason="left")

    r = client.post(f"/api/tenants/hospital/links/{link['id']}/approve",
                    json={"reason": "ok"}, headers=auth)
    assert r.status_code == 409
    assert "inactive account cannot be approved" in r.json()["message"]
    status, _, _ = demo_login(ctx, "ana-entra")
    assert status == 403
    assert [link["id"]] == [x["id"] for x in open_links(client, auth)]  # still pending


def test_bad_link_requests_are_clear_4xx(ctx: ServiceContext, api: Api) -> None:
    client, auth = api
    admin.create_tenant(ctx, "clinic")
    first_account(ctx)
    demo_login(ctx, "ana-entra")
    [link] = open_links(client, auth)
    path = f"/api/tenants/hospital/links/{link['id']}"

    assert client.post("/api/tenants/hospital/links/999999/approve", json={"reason": "x"},
                       headers=auth).status_code == 404
    assert client.post(f"/api/tenants/clinic/links/{link['id']}/approve",
                       json={"reason": "x"}, headers=auth).status_code == 404
    assert client.get("/api/tenants/nowhere/links", headers=auth).status_code == 404
    assert client.post(f"{path}/approve", json={"reason": ""}, headers=auth).status_code == 422
    assert client.post(f"{path}/merge", json={"reason": "x"}, headers=auth).status_code == 422
    assert client.post(f"{path}/clear", json={"reason": "x"}, headers=auth).status_code == 409
    assert client.post(f"{path}/approve", json={"reason": "x"}).status_code == 401
    assert client.post(f"{path}/refuse", json={"reason": "x"}, headers=auth).status_code == 200
    assert client.post(f"{path}/approve", json={"reason": "x"}, headers=auth).status_code == 409


def test_an_unverified_email_queues_no_link(ctx: ServiceContext) -> None:
    """An admin cannot tell who holds a mailbox: only an email the IdP verified may ask for a
    link (else anyone at any IdP of the tenant could queue one to a victim's account)."""
    from jitprov.testing.builders import HOSPITAL
    no_deny = HOSPITAL.format(linking="pending").split("deny:")[0] + \
        "linking:\n  by_email: pending\n"
    admin.create_tenant(ctx, "hospital")
    admin.add_mock_connection(ctx, tenant="hospital", slug="idp", mapping=no_deny,
                              mapping_source="hospital.yaml")
    _, token = admin.create_admin_token(ctx, "ops")
    auth = {"Authorization": f"Bearer {token}"}
    first_account(ctx)

    status, page, _ = demo_login(ctx, "mallory", email_verified="off")

    assert status == 403
    assert "email_unverified" in page
    with make_client(ctx) as client:
        assert open_links(client, auth) == []
    status, _, _ = demo_login(ctx, "ana-entra")  # verified: asks
    assert status == 403
    with make_client(ctx) as client:
        [link] = open_links(client, auth)
    assert (link["subject"], link["email"]) == ("ana-entra", "ana@hospital.example")


def test_a_link_to_an_account_whose_email_changed_meanwhile_cannot_be_approved(
        ctx: ServiceContext, api: Api) -> None:
    client, auth = api
    account_id = first_account(ctx)
    demo_login(ctx, "ana-entra")
    [link] = open_links(client, auth)
    sign_in(make_client(ctx), subject="ana-okta", email="ana.lima@hospital.example").close()

    r = client.post(f"/api/tenants/hospital/links/{link['id']}/approve",
                    json={"reason": "ok"}, headers=auth)

    assert r.status_code == 409
    assert "not ana@hospital.example as when the link was asked for" in r.json()["message"]
    assert [x["account_id"] for x in open_links(client, auth)] == [account_id]  # pending
    _, _, browser = demo_login(ctx, "ana-entra")  # its email is nobody's now: its own account
    assert browser.get("/me").json()["id"] != account_id


def test_an_identity_that_meanwhile_signs_in_elsewhere_cannot_be_approved(
        ctx: ServiceContext, api: Api) -> None:
    client, auth = api
    account_id = first_account(ctx)
    demo_login(ctx, "ana-entra")
    [link] = open_links(client, auth)
    status, _, browser = demo_login(ctx, "ana-entra", email="ana.l@hospital.example")
    assert status == 303  # a new email: no link asked, an account of its own
    elsewhere = browser.get("/me").json()["id"]
    assert elsewhere != account_id

    r = client.post(f"/api/tenants/hospital/links/{link['id']}/approve",
                    json={"reason": "ok"}, headers=auth)

    assert r.status_code == 409
    assert f"idp/ana-entra already signs in to account {elsewhere}" in r.json()["message"]
    status, _, browser = demo_login(ctx, "ana-entra", email="ana.l@hospital.example")
    assert browser.get("/me").json()["id"] == elsewhere


def test_two_admins_deciding_one_link_only_the_first_counts(
        ctx: ServiceContext, api: Api) -> None:
    client, auth = api
    _, other_token = admin.create_admin_token(ctx, "ops-2")
    other = {"Authorization": f"Bearer {other_token}"}
    account_id = first_account(ctx)
    demo_login(ctx, "ana-entra")
    [link] = open_links(client, auth)
    path = f"/api/tenants/hospital/links/{link['id']}"

    first = client.post(f"{path}/approve", json={"reason": "same nurse"}, headers=auth)
    again = client.post(f"{path}/approve", json={"reason": "same nurse"}, headers=other)
    late_refusal = client.post(f"{path}/refuse", json={"reason": "not her"}, headers=other)

    assert first.status_code == 200
    assert (again.status_code, late_refusal.status_code) == (409, 409)
    assert f"pending link {link['id']} is not pending" in late_refusal.json()["message"]
    assert demo_login(ctx, "ana-entra")[2].get("/me").json()["id"] == account_id
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert (types.count("link.approved"), types.count("link.refused")) == (1, 0)


def test_the_dry_run_shows_a_refusal_that_holds(ctx: ServiceContext, api: Api) -> None:
    client, auth = api
    first_account(ctx)
    demo_login(ctx, "ana-entra")
    [link] = open_links(client, auth)
    client.post(f"/api/tenants/hospital/links/{link['id']}/refuse",
                json={"reason": "not her"}, headers=auth)

    r = client.post("/api/connections/idp/mapping/test", headers=auth, json={
        "subject": "ana-entra", "claims": {"email": "ana@hospital.example",
                                           "email_verified": True, "groups": ["Nurses"]}})

    assert r.status_code == 200, r.text
    assert (r.json()["decision"], r.json()["code"]) == ("deny", "link_refused_by_admin")


def test_the_claims_of_a_waiting_link_follow_the_claims_retention(
        ctx: ServiceContext, api: Api, clock: Clock) -> None:
    """A waiting link's claims are cleared with the recorded claims; an approved link's become
    the identity's, received when the link was asked for (their retention runs from then)."""
    from jitprov.jobs.purge import purge_recorded_claims
    from jitprov.store import tables as t
    client, auth = api
    first_account(ctx)
    demo_login(ctx, "ana-entra")
    demo_login(ctx, "bo-entra", email="ana@hospital.example", name="Bo")
    [ana, bo] = open_links(client, auth)
    assert ana["claims"] and bo["claims"]
    clock.advance(days=20)
    r = client.post(f"/api/tenants/hospital/links/{ana['id']}/approve",
                    json={"reason": "same nurse"}, headers=auth)
    assert r.status_code == 200, r.text
    clock.advance(days=11)  # 31 days after both asked; retention 30 days

    assert purge_recorded_claims(ctx) >= 2

    [waiting] = open_links(client, auth)
    assert (waiting["id"], waiting["claims"]) == (bo["id"], {})
    with ctx.db.engine.connect() as conn:
        claims = conn.execute(
            sa.select(t.identity.c.claims).where(t.identity.c.subject == "ana-entra")).scalar()
    assert claims is None
    assert client.post(f"/api/tenants/hospital/links/{bo['id']}/refuse",
                       json={"reason": "not her"}, headers=auth).status_code == 200
