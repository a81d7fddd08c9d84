"""The admin console at /admin, through the app: signing in (one-time bootstrap link,
SSO with the jitprov-admin role), CSRF, security headers, each page, and the actions going
through the services (deactivation ends sessions, approvals grant roles), tenant isolation."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.services import accounts, admin, console
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.store.console import AuditFilter
from jitprov.testing.builders import HOSPITAL, nurse
from tests.conftest import Clock
from tests.web.helpers import hidden_fields, make_client

ADMIN_RULE = """\
    - id: it-admins
      grant: [jitprov-admin]
      when: contains(groups, 'IT Admins')
"""


def _mapping() -> str:
    """The hospital mapping of the service tests, plus a rule granting the admin role."""
    text = HOSPITAL.format(linking="never")
    return text.replace("deny:\n", ADMIN_RULE + "deny:\n", 1)


@pytest.fixture
def app_client(ctx: ServiceContext) -> Iterator[TestClient]:
    for tenant, slug in (("hospital", "idp"), ("clinic", "clinic-idp")):
        admin.create_tenant(ctx, tenant)
        admin.add_mock_connection(ctx, tenant=tenant, slug=slug, mapping=_mapping(),
                                  mapping_source=f"{tenant}.yaml")
    with make_client(ctx) as c:
        yield c


def sso_sign_in(client: TestClient, slug: str = "idp", return_to: str = "/admin/sign-in",
                **fields: str) -> None:
    r = client.get(f"/sso/{slug}/login", params={"return_to": return_to})
    assert r.status_code == 303
    state = r.headers["location"].split("state=", 1)[1]
    form = {"state": state, "email": "ana@hospital.example", "email_verified": "on",
            "name": "Ana Lima", "department": "Ward 3", "groups": "Nurses"}
    form.update(fields)
    r = client.post(f"/dev/idp/{slug}/authorize", data=form)
    assert r.status_code == 200
    r = client.post(f"/sso/{slug}/mock/callback", data=hidden_fields(r.text))
    assert r.status_code == 303, r.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


def bootstrap_token(ctx: ServiceContext, tenant: str | None = None) -> str:
    link = console.create_bootstrap_link(ctx, "http://testserver", tenant=tenant)
    assert link.url.startswith("http://testserver/admin/bootstrap#jpb_")
    return link.url.split("#", 1)[1]


def bootstrap_sign_in(client: TestClient, ctx: ServiceContext,
                      tenant: str | None = "hospital") -> str:
    """Sign in with a new bootstrap link; returns the CSRF token of the session."""
    r = client.post("/admin/bootstrap", data={"token": bootstrap_token(ctx, tenant)})
    assert (r.status_code, r.headers["location"]) == (303, "/admin")
    page = client.get("/admin")
    assert page.status_code == 200
    return csrf_of(page.text)


def provision(ctx: ServiceContext, subject: str = "u-1", **claims: object) -> str:
    result = provision_on_login(ctx, "idp", nurse(subject, **claims))
    assert result.account_id is not None
    return result.account_id


def user_session(ctx: ServiceContext, subject: str = "u-1", **claims: object) -> str:
    """A signed-in user (through the demo IdP); returns the session cookie value."""
    result = provision_on_login(ctx, "idp", nurse(subject, **claims))
    assert result.session_token is not None
    return result.session_token


# -- signing in -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/admin", "/admin/users", "/admin/approvals", "/admin/audit",
                                  "/admin/users/some-id"])
def test_console_pages_redirect_to_sign_in_without_an_admin_session(
        app_client: TestClient, path: str) -> None:
    r = app_client.get(path)

    assert r.status_code == 303
    assert r.headers["location"].startswith("/admin/sign-in")


def test_a_post_without_an_admin_session_changes_nothing_and_redirects(
        app_client: TestClient, ctx: ServiceContext) -> None:
    account_id = provision(ctx)

    r = app_client.post(f"/admin/users/{account_id}/status",
                        data={"status": "deactivated", "reason": "x", "csrf_token": "x"})

    assert (303, "/admin/sign-in") == (r.status_code, r.headers["location"])
    assert "active" == console.user_detail(ctx, account_id).view.account.status


def test_bootstrap_link_opens_a_strict_admin_session_once(
        app_client: TestClient, ctx: ServiceContext) -> None:
    token = bootstrap_token(ctx)

    first = app_client.post("/admin/bootstrap", data={"token": token})
    cookie = first.headers["set-cookie"]
    assert (303, "/admin") == (first.status_code, first.headers["location"])
    assert cookie.startswith("jitprov_admin=")
    for flag in ("HttpOnly", "Path=/admin", "SameSite=strict"):
        assert flag.lower() in cookie.lower()
    assert "Signed in as" in app_client.get("/admin").text

    other = make_client(ctx)
    second = other.post("/admin/bootstrap", data={"token": token})
    assert 403 == second.status_code
    assert "already used or has expired" in second.text
    assert "jitprov_admin" not in second.headers.get("set-cookie", "")


def test_bootstrap_link_expires_after_15_minutes(
        app_client: TestClient, ctx: ServiceContext, clock: Clock) -> None:
    token = bootstrap_token(ctx)
    clock.advance(minutes=15, seconds=1)

    r = app_client.post("/admin/bootstrap", data={"token": token})

    assert 403 == r.status_code
    assert 303 == app_client.get("/admin").status_code


def test_bootstrap_link_within_15_minutes_still_works(
        app_client: TestClient, ctx: ServiceContext, clock: Clock) -> None:
    token = bootstrap_token(ctx)
    clock.advance(minutes=14, seconds=59)

    assert 303 == app_client.post("/admin/bootstrap", data={"token": token}).status_code
    assert 200 == app_client.get("/admin").status_code


@pytest.mark.parametrize("token", ["", "nonsense", "jpb_" + "x" * 43, "jpb_" + "y" * 500])
def test_a_bad_bootstrap_code_is_refused_without_an_error(
        app_client: TestClient, token: str) -> None:
    r = app_client.post("/admin/bootstrap", data={"token": token})

    assert r.status_code in (400, 403)
    assert "set-cookie" not in r.headers


def test_bootstrap_link_stores_only_its_hash(ctx: ServiceContext) -> None:
    token = bootstrap_token(ctx)

    with ctx.db.engine.connect() as conn:
        values = list(conn.execute(
            sa.text("SELECT token_hash FROM admin_bootstrap_link")).scalars())

    assert token not in values
    assert [hash_token(token)] == values


def test_admin_session_ends_after_30_idle_minutes(
        app_client: TestClient, ctx: ServiceContext, clock: Clock) -> None:
    bootstrap_sign_in(app_client, ctx)
    clock.advance(minutes=29)
    assert 200 == app_client.get("/admin").status_code
    clock.advance(minutes=31)

    assert 303 == app_client.get("/admin").status_code


def test_sign_out_revokes_the_admin_session(app_client: TestClient,
                                            ctx: ServiceContext) -> None:
    csrf = bootstrap_sign_in(app_client, ctx)
    cookie = app_client.cookies.get("jitprov_admin", path="/admin")

    r = app_client.post("/admin/sign-out", data={"csrf_token": csrf})

    assert (303, "/admin/sign-in") == (r.status_code, r.headers["location"])
    replay = make_client(ctx)
    replay.cookies.set("jitprov_admin", cookie or "", path="/admin")
    assert 303 == replay.get("/admin").status_code


def test_sso_account_with_the_admin_role_signs_in_and_is_audited(
        app_client: TestClient, ctx: ServiceContext) -> None:
    sso_sign_in(app_client, groups="IT Admins", email="it@hospital.example")

    page = app_client.get("/admin/sign-in")
    assert 200 == page.status_code
    assert "Continue as it@hospital.example" in page.text
    r = app_client.post("/admin/sign-in/sso", data={"csrf_token": csrf_of(page.text),
                                                    "next": "/admin/users"})
    assert (303, "/admin/users") == (r.status_code, r.headers["location"])
    assert 200 == app_client.get("/admin/users").status_code

    events = console.audit_page(ctx, "hospital", AuditFilter(
        type="admin.signed_in")).events
    assert 1 == len(events)
    assert events[0].data["method"] == "sso"
    assert "it@hospital.example" in events[0].actor


def test_sso_account_without_the_admin_role_gets_403(
        app_client: TestClient, ctx: ServiceContext) -> None:
    sso_sign_in(app_client, groups="Nurses")

    page = app_client.get("/admin/sign-in")
    assert 403 == page.status_code
    assert "does not hold the jitprov-admin role" in page.text
    forged = app_client.post("/admin/sign-in/sso", data={"csrf_token": "x" * 64})
    assert 403 == forged.status_code
    assert 303 == app_client.get("/admin").status_code


def test_sso_continue_needs_the_token_bound_to_the_user_session(
        app_client: TestClient, ctx: ServiceContext) -> None:
    sso_sign_in(app_client, groups="IT Admins")

    r = app_client.post("/admin/sign-in/sso", data={"csrf_token": "0" * 64})

    assert 403 == r.status_code
    assert "jitprov_admin" not in r.headers.get("set-cookie", "")


def test_losing_the_admin_role_ends_console_access_at_the_next_request(
        app_client: TestClient, ctx: ServiceContext) -> None:
    sso_sign_in(app_client, groups="IT Admins", email="it@hospital.example")
    page = app_client.get("/admin/sign-in")
    app_client.post("/admin/sign-in/sso", data={"csrf_token": csrf_of(page.text)})
    assert 200 == app_client.get("/admin").status_code

    sso_sign_in(app_client, groups="Nurses", email="it@hospital.example")  # rule revokes

    assert 303 == app_client.get("/admin").status_code


# -- CSRF and headers ---------------------------------------------------------------------------

def test_a_form_without_the_csrf_token_is_refused(app_client: TestClient,
                                                  ctx: ServiceContext) -> None:
    bootstrap_sign_in(app_client, ctx)
    account_id = provision(ctx)

    missing = app_client.post(f"/admin/users/{account_id}/status",
                              data={"status": "deactivated", "reason": "left"})
    wrong = app_client.post(f"/admin/users/{account_id}/status",
                            data={"status": "deactivated", "reason": "left",
                                  "csrf_token": "f" * 64})

    assert (403, 403) == (missing.status_code, wrong.status_code)
    assert "security token" in wrong.text
    assert "active" == console.user_detail(ctx, account_id).view.account.status


def test_a_csrf_token_of_another_admin_session_is_refused(
        app_client: TestClient, ctx: ServiceContext) -> None:
    other = make_client(ctx)
    foreign = bootstrap_sign_in(other, ctx)
    bootstrap_sign_in(app_client, ctx)
    account_id = provision(ctx)

    r = app_client.post(f"/admin/users/{account_id}/status",
                        data={"status": "deactivated", "reason": "x", "csrf_token": foreign})

    assert 403 == r.status_code


def test_a_cross_site_post_is_refused_even_with_the_token(
        app_client: TestClient, ctx: ServiceContext) -> None:
    csrf = bootstrap_sign_in(app_client, ctx)
    account_id = provision(ctx)

    r = app_client.post(f"/admin/users/{account_id}/status",
                        data={"status": "deactivated", "reason": "x", "csrf_token": csrf},
                        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})

    assert 403 == r.status_code
    assert "active" == console.user_detail(ctx, account_id).view.account.status


@pytest.mark.parametrize("path", ["/admin", "/admin/sign-in", "/admin/bootstrap",
                                  "/admin/users/nobody", "/admin/no-such-page"])
def test_every_admin_response_carries_the_security_headers(
        app_client: TestClient, ctx: ServiceContext, path: str) -> None:
    bootstrap_sign_in(app_client, ctx)

    r = app_client.get(path)

    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert ("DENY", "no-referrer", "nosniff", "no-store") == (
        r.headers["x-frame-options"], r.headers["referrer-policy"],
        r.headers["x-content-type-options"], r.headers["cache-control"])


def test_admin_pages_have_no_inline_script_or_style(app_client: TestClient,
                                                    ctx: ServiceContext) -> None:
    bootstrap_sign_in(app_client, ctx)
    account_id = provision(ctx)

    for path in ("/admin", "/admin/users", f"/admin/users/{account_id}", "/admin/approvals",
                 "/admin/audit", "/admin/sign-in", "/admin/bootstrap"):
        html = app_client.get(path).text
        assert "<style" not in html, path
        assert " style=" not in html, path
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, path
        assert re.search(r"\son[a-z]+=", html) is None, path


# -- pages --------------------------------------------------------------------------------------

def test_dashboard_counts_decisions_of_the_last_14_days(
        app_client: TestClient, ctx: ServiceContext, clock: Clock) -> None:
    provision(ctx, "u-1")
    provision(ctx, "u-2", email="bo@hospital.example", groups=["Charge Nurses"])
    provision(ctx, "u-1", department="Ward 4")  # an update
    bootstrap_sign_in(app_client, ctx, tenant="hospital")

    data = console.dashboard(ctx, "hospital")
    today = data.days[-1]
    page = app_client.get("/admin")

    assert (3, 2, 1, 1) == (today.logins, today.created, today.updated,
                            data.pending_approvals)
    assert 14 == len(data.days)
    assert '<svg viewBox="0 0 760 240" role="img"' in page.text
    assert re.search(r'id="stat-pending"><span class="value">1<', page.text)
    assert f"<th scope=\"row\">{today.day}</th><td class=\"num\">3</td>" in page.text


def test_users_search_filters_and_paginates(app_client: TestClient,
                                            ctx: ServiceContext) -> None:
    for i in range(7):
        provision(ctx, f"u-{i}", email=f"user{i}@hospital.example", name=f"User {i}")
    provision(ctx, "x-1", email="zed@hospital.example", name="Zed Nurse", groups=[])
    bootstrap_sign_in(app_client, ctx, tenant="hospital")

    by_email = app_client.get("/admin/users", params={"q": "zed@"}).text
    by_name = app_client.get("/admin/users", params={"q": "zed nur"}).text
    by_role = app_client.get("/admin/users", params={"role": "nurse"}).text
    page = console.search_users(ctx, "hospital", limit=5)
    rest = console.search_users(ctx, "hospital", limit=5, cursor=page.next_cursor)

    assert "zed@hospital.example" in by_email and "user1@" not in by_email
    assert "zed@hospital.example" in by_name
    assert "user3@hospital.example" in by_role and "zed@" not in by_role
    assert 8 == len(page.rows) + len(rest.rows)
    assert rest.next_cursor is None
    assert {r.email for r in page.rows}.isdisjoint({r.email for r in rest.rows})


@pytest.mark.parametrize("params", [{"status": "weird"}, {"q": "x" * 400},
                                    {"cursor": "e:"}, {"cursor": "%%%"},
                                    {"tenant": "nope"}])
def test_bad_users_search_input_is_never_a_500(app_client: TestClient, ctx: ServiceContext,
                                               params: dict[str, str]) -> None:
    bootstrap_sign_in(app_client, ctx)

    assert app_client.get("/admin/users", params=params).status_code in (200, 400, 403, 404)


def test_user_page_says_why_the_user_has_each_role(app_client: TestClient,
                                                  ctx: ServiceContext) -> None:
    account_id = provision(ctx, groups=["Nurses", "Charge Nurses"])
    bootstrap_sign_in(app_client, ctx)

    html = app_client.get(f"/admin/users/{account_id}").text

    assert "granted by rule <code>nurses</code> (connection idp) at login on 2026-11-28" in html
    assert "granted by rule <code>default</code> (connection idp)" in html
    assert "`" not in html  # the names are code elements, not Markdown
    assert re.search(r"<strong>charge-nurse</strong> requested by", html)
    assert "mapped from the identity provider at login (<code>email</code>)" in html
    assert "<code>u-1</code>" in html  # the identity's subject


def test_deactivation_revokes_sessions_audits_and_announces(
        app_client: TestClient, ctx: ServiceContext) -> None:
    cookie = user_session(ctx)
    account_id = console.search_users(ctx, "hospital").rows[0].id
    user = make_client(ctx)
    user.cookies.set("jitprov_session", cookie)
    assert 200 == user.get("/me").status_code
    csrf = bootstrap_sign_in(app_client, ctx)

    page = app_client.get(f"/admin/users/{account_id}").text
    assert "Revoke session" in page
    r = app_client.post(f"/admin/users/{account_id}/status",
                        data={"status": "deactivated", "reason": "left the hospital",
                              "csrf_token": csrf})

    assert (303, f"/admin/users/{account_id}?done=deactivated") == (
        r.status_code, r.headers["location"])
    assert 401 == user.get("/me").status_code
    trail = console.user_detail(ctx, account_id)
    assert "deactivated" == trail.view.account.status
    event = next(e for e in trail.events if e.type == "account.deactivated")
    assert ("left the hospital", 1) == (event.data["reason"], event.data["sessions_revoked"])
    assert event.actor.startswith("admin-console:bootstrap-")

    back = app_client.post(f"/admin/users/{account_id}/status",
                           data={"status": "active", "reason": "came back",
                                 "csrf_token": csrf})
    assert 303 == back.status_code
    assert "active" == console.user_detail(ctx, account_id).view.account.status


def test_deactivation_needs_a_reason(app_client: TestClient, ctx: ServiceContext) -> None:
    csrf = bootstrap_sign_in(app_client, ctx)
    account_id = provision(ctx)

    r = app_client.post(f"/admin/users/{account_id}/status",
                        data={"status": "deactivated", "reason": "  ", "csrf_token": csrf})

    assert 400 == r.status_code
    assert "a reason is required" in r.text


def test_revoking_one_session_ends_only_that_session(app_client: TestClient,
                                                     ctx: ServiceContext) -> None:
    first, second = user_session(ctx), user_session(ctx)
    account_id = console.search_users(ctx, "hospital").rows[0].id
    csrf = bootstrap_sign_in(app_client, ctx)
    sessions = console.user_detail(ctx, account_id).sessions
    assert 2 == len(sessions)
    target = hash_token(first)

    r = app_client.post(f"/admin/users/{account_id}/sessions/revoke",
                        data={"session_id": target, "csrf_token": csrf})

    assert 303 == r.status_code
    remaining = console.user_detail(ctx, account_id).sessions
    assert [hash_token(second)] == [s.id for s in remaining]
    again = app_client.post(f"/admin/users/{account_id}/sessions/revoke",
                            data={"session_id": target, "csrf_token": csrf})
    assert 400 == again.status_code


def test_approvals_page_approves_and_denies_through_the_service(
        app_client: TestClient, ctx: ServiceContext) -> None:
    provision(ctx, "u-1", groups=["Charge Nurses"])
    provision(ctx, "u-2", email="bo@hospital.example", groups=["Charge Nurses"])
    csrf = bootstrap_sign_in(app_client, ctx)
    page = app_client.get("/admin/approvals").text
    ids = [int(i) for i in re.findall(r'action="/admin/approvals/(\d+)"', page)]
    assert 2 == len(ids)

    ok = app_client.post(f"/admin/approvals/{ids[0]}", data={
        "decision": "approve", "reason": "on the rota", "valid_days": "30",
        "csrf_token": csrf})
    no = app_client.post(f"/admin/approvals/{ids[1]}", data={
        "decision": "deny", "reason": "not yet", "csrf_token": csrf})
    twice = app_client.post(f"/admin/approvals/{ids[0]}", data={
        "decision": "deny", "reason": "changed my mind", "csrf_token": csrf})

    assert (303, 303, 409) == (ok.status_code, no.status_code, twice.status_code)
    assert "Nothing is waiting for approval." in app_client.get("/admin/approvals").text
    ana = console.search_users(ctx, "hospital", query="ana@").rows[0].id
    html = app_client.get(f"/admin/users/{ana}").text
    assert re.search(r"approved by admin-console:bootstrap-\d+ on 2026-11-28", html)


@pytest.mark.parametrize("data", [{"decision": "maybe", "reason": "x"},
                                  {"decision": "approve", "reason": ""},
                                  {"decision": "approve", "reason": "x", "valid_days": "-3"}])
def test_bad_approval_input_is_a_400(app_client: TestClient, ctx: ServiceContext,
                                     data: dict[str, str]) -> None:
    provision(ctx, "u-1", groups=["Charge Nurses"])
    csrf = bootstrap_sign_in(app_client, ctx)
    request_id = re.findall(r'action="/admin/approvals/(\d+)"',
                            app_client.get("/admin/approvals").text)[0]

    r = app_client.post(f"/admin/approvals/{request_id}", data={**data, "csrf_token": csrf})

    assert 400 == r.status_code
    assert 1 == console.dashboard(ctx, "hospital").pending_approvals


def test_audit_log_filters_pages_exports_and_verifies(
        app_client: TestClient, ctx: ServiceContext) -> None:
    for i in range(3):
        provision(ctx, f"u-{i}", email=f"user{i}@hospital.example")
    csrf = bootstrap_sign_in(app_client, ctx, tenant="hospital")

    created = app_client.get("/admin/audit", params={"type": "account.created"}).text
    logins = app_client.get("/admin/audit", params={"type": "account."}).text
    by_day = app_client.get("/admin/audit", params={"from": "2026-11-29"}).text
    bad_day = app_client.get("/admin/audit", params={"from": "yesterday"})
    export = app_client.get("/admin/audit/export", params={"format": "csv"})
    verify = app_client.post("/admin/audit/verify", data={"csrf_token": csrf,
                                                          "tenant": "hospital"})

    assert 3 == created.count("<code>account.created</code>")
    assert "<code>tenant.created</code>" not in logins
    assert "No event matches." in by_day
    assert 400 == bad_day.status_code
    assert export.headers["content-type"].startswith("text/csv")
    assert export.text.startswith("tenant,seq,occurred_at,type")
    assert "is intact" in verify.text
    page = console.audit_page(ctx, "hospital", AuditFilter(), limit=2)
    older = console.audit_page(ctx, "hospital", AuditFilter(), limit=2,
                                     before_seq=page.next_before)
    assert [e.seq for e in page.events] == [older.events[0].seq + 2,
                                            older.events[0].seq + 1]


# -- tenant isolation ---------------------------------------------------------------------------

def _sso_admin_of_clinic(client: TestClient) -> None:
    sso_sign_in(client, "clinic-idp", groups="IT Admins", email="boss@clinic.example")
    page = client.get("/admin/sign-in")
    r = client.post("/admin/sign-in/sso", data={"csrf_token": csrf_of(page.text)})
    assert 303 == r.status_code


def test_an_sso_admin_administers_its_own_tenant_only(
        app_client: TestClient, ctx: ServiceContext) -> None:
    hospital_user = provision(ctx, "u-1", groups=["Charge Nurses"])
    _sso_admin_of_clinic(app_client)
    csrf = csrf_of(app_client.get("/admin").text)
    pending = [r.id for r in accounts.list_requests(ctx, "hospital")]
    assert pending

    assert "Tenant <strong>clinic</strong>" in app_client.get("/admin").text
    assert 403 == app_client.get("/admin/users", params={"tenant": "hospital"}).status_code
    assert 403 == app_client.get(f"/admin/users/{hospital_user}").status_code
    assert 403 == app_client.get("/admin/audit", params={"tenant": "hospital"}).status_code
    assert 403 == app_client.post(f"/admin/users/{hospital_user}/status", data={
        "status": "deactivated", "reason": "x", "csrf_token": csrf}).status_code
    assert 403 == app_client.post(f"/admin/approvals/{pending[0]}", data={
        "decision": "approve", "reason": "x", "csrf_token": csrf}).status_code
    assert "hospital" not in app_client.get("/admin/users").text
    assert "active" == console.user_detail(ctx, hospital_user).view.account.status
    assert 1 == console.dashboard(ctx, "hospital").pending_approvals


def test_a_bootstrap_link_for_one_tenant_administers_that_tenant_only(
        app_client: TestClient, ctx: ServiceContext) -> None:
    bootstrap_sign_in(app_client, ctx, tenant="clinic")

    assert 403 == app_client.get("/admin", params={"tenant": "hospital"}).status_code
    assert 200 == app_client.get("/admin", params={"tenant": "clinic"}).status_code


def test_a_bootstrap_link_without_tenant_administers_every_tenant(
        app_client: TestClient, ctx: ServiceContext) -> None:
    bootstrap_sign_in(app_client, ctx, tenant=None)

    assert 200 == app_client.get("/admin", params={"tenant": "hospital"}).status_code
    assert 200 == app_client.get("/admin", params={"tenant": "clinic"}).status_code
    assert 404 == app_client.get("/admin", params={"tenant": "nope"}).status_code


@pytest.mark.parametrize(("method", "path", "data"), [
    ("post", "/admin/approvals/\u00b2", {"decision": "approve", "reason": "r"}),
    ("get", "/admin/audit?before=\u00b2", {}),
    ("get", "/admin/audit?to=9999-12-31", {}),
    ("post", "/admin/scim-tokens/\u00b2/revoke", {}),
    ("post", "/admin/webhooks/deliveries/\u00b2/replay", {}),
])
def test_numbers_that_are_not_ascii_digits_are_a_400_not_a_500(
        app_client: TestClient, ctx: ServiceContext, method: str, path: str,
        data: dict[str, str]) -> None:
    provision(ctx, "u-1")
    csrf = bootstrap_sign_in(app_client, ctx, tenant="hospital")

    r = (app_client.post(path, data={**data, "csrf_token": csrf}) if method == "post"
         else app_client.get(path))

    assert r.status_code in (400, 404), r.text[:300]
