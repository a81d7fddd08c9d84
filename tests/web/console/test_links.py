"""The console's pending-links page: the claims that asked (redacted), approve and refuse
with a reason (CSRF-checked), clear a refusal; the person's next demo login shows it."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.console import create_bootstrap_link
from jitprov.services.context import ServiceContext
from jitprov.testing.builders import setup_connection
from tests.web.helpers import idp_response, make_client, sign_in, start


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def demo_login(ctx: ServiceContext, subject: str, **fields: str) -> tuple[int, str]:
    browser = make_client(ctx)
    state = start(browser)
    r = browser.post("/sso/idp/mock/callback",
                     data=idp_response(browser, state, subject=subject, **fields))
    me = browser.get("/me").json().get("id") if r.status_code == 303 else r.text
    browser.close()
    return r.status_code, me


@pytest.fixture
def console(ctx: ServiceContext) -> Iterator[tuple[TestClient, str, str]]:
    """A signed-in admin of hospital; ana's account; her second identity waits for a link."""
    setup_connection(ctx, linking="pending")
    first = sign_in(make_client(ctx), subject="ana-okta")
    account_id = first.get("/me").json()["id"]
    first.close()
    assert demo_login(ctx, "ana-entra", department="eyJh.eyJi.c2ln")[0] == 403
    with make_client(ctx) as client:
        link = create_bootstrap_link(ctx, "http://testserver", tenant="hospital")
        r = client.post("/admin/bootstrap", data={"token": link.url.split("#", 1)[1]})
        assert r.status_code == 303, r.text
        yield client, csrf_of(client.get("/admin/links").text), account_id


def link_ids(page: str) -> list[str]:
    return re.findall(r'action="/admin/links/(\d+)"', page)


def test_the_links_page_shows_the_claims_that_asked_and_approves(
        ctx: ServiceContext, console: tuple[TestClient, str, str]) -> None:
    client, csrf, account_id = console
    page = client.get("/admin/links").text
    [link_id] = link_ids(page)
    text = html_lib.unescape(page)
    assert "idp/ana-entra</code> asks to sign in to" in text
    assert '"email": "ana@hospital.example"' in text
    assert '"department": "[redacted]"' in text
    assert "eyJh" not in page
    assert '<a href="/admin/links?tenant=hospital" aria-current="page">Links</a>' in page

    r = client.post(f"/admin/links/{link_id}", data={
        "decision": "approve", "reason": "same nurse", "tenant": "hospital",
        "csrf_token": csrf})
    assert (r.status_code, r.headers["location"]) == (
        303, "/admin/links?tenant=hospital&done=approved")
    after = client.get(r.headers["location"]).text
    assert "the person&#39;s next sign-in opens the linked account" in after
    assert link_ids(after) == []
    assert demo_login(ctx, "ana-entra") == (303, account_id)


def test_refuse_then_clear_from_the_console(
        ctx: ServiceContext, console: tuple[TestClient, str, str]) -> None:
    client, csrf, _ = console
    [link_id] = link_ids(client.get("/admin/links").text)

    r = client.post(f"/admin/links/{link_id}", data={
        "decision": "refuse", "reason": "not her", "tenant": "hospital", "csrf_token": csrf})
    assert r.status_code == 303
    status, page = demo_login(ctx, "ana-entra")
    assert status == 403
    assert "an administrator refused to link this sign-in" in page
    held = client.get("/admin/links").text
    assert "Refusals that hold" in held
    assert link_ids(held) == [link_id]  # now with a clear button

    r = client.post(f"/admin/links/{link_id}", data={
        "decision": "clear", "reason": "mistake", "tenant": "hospital", "csrf_token": csrf})
    assert r.status_code == 303
    status, page = demo_login(ctx, "ana-entra")
    assert status == 403
    assert "awaits an admin" in page


@pytest.mark.parametrize("data", [{"decision": "merge", "reason": "x"},
                                  {"decision": "approve", "reason": " "},
                                  {"decision": "approve", "reason": "x", "csrf_token": "forged"}])
def test_bad_link_decisions_change_nothing(
        ctx: ServiceContext, console: tuple[TestClient, str, str],
        data: dict[str, str]) -> None:
    client, csrf, _ = console
    [link_id] = link_ids(client.get("/admin/links").text)

    r = client.post(f"/admin/links/{link_id}", data={"csrf_token": csrf, "tenant": "hospital",
                                                     **data})

    assert r.status_code in (400, 403)
    assert link_ids(client.get("/admin/links").text) == [link_id]


def test_another_tenants_link_is_not_found_and_unknown_ids_are_404(
        ctx: ServiceContext, console: tuple[TestClient, str, str]) -> None:
    client, csrf, _ = console
    admin.create_tenant(ctx, "clinic")
    [link_id] = link_ids(client.get("/admin/links").text)

    other = client.post(f"/admin/links/{link_id}", data={
        "decision": "approve", "reason": "x", "tenant": "clinic", "csrf_token": csrf})
    unknown = client.post("/admin/links/987654", data={
        "decision": "approve", "reason": "x", "tenant": "hospital", "csrf_token": csrf})

    assert other.status_code == 403  # this admin administers hospital only
    assert unknown.status_code == 404
    assert link_ids(client.get("/admin/links").text) == [link_id]


def test_a_clinic_admin_cannot_decide_a_hospital_link(
        ctx: ServiceContext, console: tuple[TestClient, str, str]) -> None:
    """An admin of clinic only, naming their own tenant and hospital's link id: 404 (the
    link is looked up in the tenant named), and the link still waits."""
    client, _, _ = console
    [link_id] = link_ids(client.get("/admin/links").text)
    admin.create_tenant(ctx, "clinic")
    with make_client(ctx) as clinic:
        link = create_bootstrap_link(ctx, "http://testserver", tenant="clinic")
        r = clinic.post("/admin/bootstrap", data={"token": link.url.split("#", 1)[1]})
        assert r.status_code == 303, r.text
        page = clinic.get("/admin/links?tenant=clinic")
        assert page.status_code == 200
        assert clinic.get("/admin/links?tenant=hospital").status_code == 403

        for decision in ("approve", "refuse", "clear"):
            r = clinic.post(f"/admin/links/{link_id}", data={
                "decision": decision, "reason": "x", "tenant": "clinic",
                "csrf_token": csrf_of(page.text)})
            assert r.status_code == 404, (decision, r.text)
            assert f"no pending link {link_id} in tenant clinic" in html_lib.unescape(r.text)

    assert link_ids(client.get("/admin/links").text) == [link_id]
    assert demo_login(ctx, "ana-entra")[0] == 403  # not linked
