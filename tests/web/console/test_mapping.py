"""The console's connection, mapping editor, SCIM token and webhook pages: signed in with a
one-time admin link, every form CSRF-checked, bad input answered with a clear message."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin, webhooks
from jitprov.services.console import create_bootstrap_link
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.scim import tokens as scim_tokens
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import HOSPITAL, nurse, setup_connection
from jitprov.testing.saml_idp import FakeSamlIdp
from tests.web.helpers import make_client

CURRENT = HOSPITAL.format(linking="never")
STRICTER = CURRENT.replace("when: contains(groups, 'Nurses')",
                           "when: contains(groups, 'Nurses') && department == 'Ward 3'")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def sign_in_admin(ctx: ServiceContext, client: TestClient, tenant: str | None = None) -> str:
    """Open an admin session with a bootstrap link; returns the CSRF token of the session."""
    link = create_bootstrap_link(ctx, "http://testserver", tenant=tenant)
    r = client.post("/admin/bootstrap", data={"token": link.url.split("#", 1)[1]})
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/admin/connections").text)


@pytest.fixture
def console(ctx: ServiceContext) -> Iterator[tuple[TestClient, str]]:
    setup_connection(ctx)
    for name, department in (("ana", "Ward 3"), ("bo", "Ward 5")):
        provision_on_login(ctx, "idp", nurse(subject=name, email=f"{name}@hospital.example",
                                             department=department))
    with make_client(ctx) as client:
        yield client, sign_in_admin(ctx, client)


def test_pages_need_an_admin_session(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with make_client(ctx) as client:
        for path in ("/admin/connections", "/admin/connections/idp/mapping",
                     "/admin/scim-tokens", "/admin/webhooks"):
            r = client.get(path)
            assert r.status_code == 303
            assert r.headers["location"].startswith("/admin/sign-in")
        r = client.post("/admin/connections/idp/mapping/validate", data={"mapping": "x"})
        assert r.status_code == 303


def test_connections_list_shows_kind_health_and_recorded_logins(
        console: tuple[TestClient, str], ctx: ServiceContext) -> None:
    client, _ = console
    with UnitOfWork(ctx.db) as uow:
        conn = uow.config.connections.get("idp")
        uow.devices.health.record(conn.id, ok=False, now=ctx.clock(), error="connect timeout")
        uow.commit()
    r = client.get("/admin/connections")
    assert r.status_code == 200
    row = re.search(r'<tr id="connection-idp">(.*?)</tr>', r.text, re.S)
    assert row is not None
    assert "MOCK" in row.group(1)
    assert "unreachable" in row.group(1) and "connect timeout" in row.group(1)
    assert re.search(r'class="num">2<', row.group(1))  # two recorded logins
    assert "/admin/connections/idp/mapping" in row.group(1)
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "<script>" not in r.text and " style=" not in r.text


def test_validation_endpoint_answers_problems_with_line_numbers(
        console: tuple[TestClient, str]) -> None:
    client, csrf = console
    bad = CURRENT.replace("grant: [nurse]", "grant: nurse")
    r = client.post("/admin/connections/idp/mapping/validate",
                    data={"csrf_token": csrf, "mapping": bad})
    assert r.status_code == 200
    answer = r.json()
    assert answer["ok"] is False
    [problem] = answer["problems"]
    assert 10 == problem["line"]
    assert "nurses" in problem["rule"]

    good = client.post("/admin/connections/idp/mapping/validate",
                       data={"csrf_token": csrf, "mapping": CURRENT}).json()
    assert (True, []) == (good["ok"], good["problems"])
    assert "grant rules" in good["summary"]


def test_validation_endpoint_never_fails_on_garbage(console: tuple[TestClient, str]) -> None:
    client, csrf = console
    for text in ("{{{{", "\x00\x01", "- a\n- b\n", "a: *nope"):
        r = client.post("/admin/connections/idp/mapping/validate",
                        data={"csrf_token": csrf, "mapping": text})
        assert r.status_code == 200
        assert r.json()["ok"] is False


def test_forms_without_a_valid_csrf_token_are_refused(console: tuple[TestClient, str]) -> None:
    client, _ = console
    attempts = [
        ("/admin/connections/idp/mapping/validate", {"mapping": CURRENT}),
        ("/admin/connections/idp/mapping", {"mapping": STRICTER, "action": "preview"}),
        ("/admin/connections/saml", {"slug": "x", "metadata_url": "https://x"}),
        ("/admin/scim-tokens", {"name": "entra"}),
    ]
    for path, data in attempts:
        for token in (None, "forged"):
            form = dict(data) if token is None else {**data, "csrf_token": token}
            assert client.post(path, data=form).status_code == 403, path


def test_editor_tests_a_recorded_login_under_the_unsaved_mapping(
        console: tuple[TestClient, str]) -> None:
    client, csrf = console
    page = client.get("/admin/connections/idp/mapping")
    assert page.status_code == 200
    assert 'option value="bo"' in page.text  # the recent login picker
    r = client.post("/admin/connections/idp/mapping", data={
        "csrf_token": csrf, "mapping": STRICTER, "action": "test", "recorded": "bo"})
    assert r.status_code == 200
    assert 'id="test-result"' in r.text
    assert "decision-update" in r.text
    assert re.search(r"<code>nurses</code>.*?not_matched", r.text, re.S)
    assert "revokes</dt><dd>nurse" in r.text


def test_editor_tests_pasted_claims_and_reports_bad_json_by_line(
        console: tuple[TestClient, str]) -> None:
    client, csrf = console
    r = client.post("/admin/connections/idp/mapping", data={
        "csrf_token": csrf, "mapping": CURRENT, "action": "test",
        "claims": '{"email": "x@hospital.example",\n "groups": [}'})
    assert r.status_code == 400
    assert "claims:2: not valid JSON" in r.text
    r = client.post("/admin/connections/idp/mapping", data={
        "csrf_token": csrf, "mapping": CURRENT, "action": "test",
        "claims": '{"sub": "z", "email": "z@hospital.example", "email_verified": false}'})
    assert r.status_code == 200
    assert "decision-deny" in r.text
    assert "email not verified" in r.text


def test_preview_then_save_changes_the_mapping_and_audits_it(
        console: tuple[TestClient, str], ctx: ServiceContext) -> None:
    client, csrf = console
    r = client.post("/admin/connections/idp/mapping", data={
        "csrf_token": csrf, "mapping": STRICTER.replace("\n", "\r\n"), "action": "preview"})
    assert r.status_code == 200
    assert re.search(r'id="impact-summary"><strong>2</strong> recorded login\(s\) replayed: '
                     r"<strong>1</strong> changed", r.text)
    row = re.search(r'<tr id="impact-1"[^>]*>(.*?)</tr>', r.text, re.S)
    assert row is not None
    assert "bo@hospital.example" in row.group(1) and "\u2212 nurse" in row.group(1)
    previewed = re.search(r'name="previewed" value="([0-9a-f]{64})"', r.text)
    assert previewed is not None
    assert admin.get_connection(ctx, "idp").version == 1

    r = client.post("/admin/connections/idp/mapping", data={
        "csrf_token": csrf, "mapping": STRICTER, "action": "save",
        "previewed": previewed.group(1)})
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/connections/idp/mapping?saved=2"
    conn = admin.get_connection(ctx, "idp")
    assert (2, STRICTER, "admin console") == (conn.version, conn.mapping, conn.mapping_source)
    assert "Mapping saved: version 2" in client.get(r.headers["location"]).text
    with UnitOfWork(ctx.db, readonly=True) as uow:
        events = [e for e in uow.audit.events(conn.tenant_id)
                  if e.type == "connection.mapping_changed"]
    assert events[-1].actor.startswith("admin-console:bootstrap-")


def test_save_without_a_matching_preview_shows_the_preview_instead(
        console: tuple[TestClient, str], ctx: ServiceContext) -> None:
    client, csrf = console
    r = client.post("/admin/connections/idp/mapping", data={
        "csrf_token": csrf, "mapping": STRICTER, "action": "save", "previewed": "0" * 64})
    assert r.status_code == 200
    assert 'id="impact"' in r.text
    assert "changed since its impact preview" in r.text
    assert admin.get_connection(ctx, "idp").version == 1


def test_a_bad_mapping_shows_its_line_and_cannot_be_saved(
        console: tuple[TestClient, str], ctx: ServiceContext) -> None:
    client, csrf = console
    bad = CURRENT.replace("grant: [nurse]", "grant: [nurse")
    r = client.post("/admin/connections/idp/mapping", data={
        "csrf_token": csrf, "mapping": bad, "action": "preview"})
    assert r.status_code == 422
    assert re.search(r'class="problem" data-line="1\d"><strong>Line 1\d</strong>', r.text)
    assert 'id="save"' not in r.text
    assert admin.get_connection(ctx, "idp").version == 1


def test_preview_limit_is_bounded(console: tuple[TestClient, str]) -> None:
    client, csrf = console
    r = client.post("/admin/connections/idp/mapping", data={
        "csrf_token": csrf, "mapping": STRICTER, "action": "preview", "limit": "5000"})
    assert r.status_code == 400
    assert "1-1000" in r.text


def test_create_saml_connection_from_pasted_metadata(console: tuple[TestClient, str],
                                                     ctx: ServiceContext) -> None:
    client, csrf = console
    r = client.post("/admin/connections/saml", data={
        "csrf_token": csrf, "tenant": "hospital", "slug": "adfs",
        "metadata_xml": FakeSamlIdp().metadata().decode()})
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/connections?tenant=hospital&created=adfs"
    listing = client.get(r.headers["location"]).text
    assert '<a href="/sso/adfs/saml/metadata"' in listing
    assert admin.get_connection(ctx, "adfs").kind == "saml"


@pytest.mark.parametrize(("box", "field", "ticked", "attribute"), [
    ("require_signed_assertion", "require_signed_assertion", True, "WantAssertionsSigned"),
    ("unsigned_authn_requests", "sign_authn_requests", False, "AuthnRequestsSigned")])
def test_the_saml_forms_boxes_set_the_connection_and_its_sp_metadata(
        console: tuple[TestClient, str], ctx: ServiceContext, box: str, field: str,
        ticked: bool, attribute: str) -> None:
    """Each box of the SAML form, off by default: ticked, the connection's ``field`` is
    ``ticked`` and its SP metadata says so in ``attribute``; left off, the opposite. A form
    that fails comes back with the box as it was."""
    client, csrf = console
    form = client.get("/admin/connections/new").text
    assert re.search(rf'name="{box}"[^>]*>', form).group(0).count(  # type: ignore[union-attr]
        "checked") == 0
    metadata = FakeSamlIdp().metadata().decode()
    for slug, data in (("ticked", {box: "on"}), ("left", {})):
        r = client.post("/admin/connections/saml", data={
            "csrf_token": csrf, "tenant": "hospital", "slug": slug, "metadata_xml": metadata,
            **data})
        assert r.status_code == 303, r.text
    for slug, value in (("ticked", ticked), ("left", not ticked)):
        assert admin.get_connection(ctx, slug).config[field] is value
        assert f'{attribute}="{str(value).lower()}"'.encode() in client.get(
            f"/sso/{slug}/saml/metadata").content
    r = client.post("/admin/connections/saml", data={
        "csrf_token": csrf, "slug": "bad", "metadata_xml": "<not-metadata/>", box: "on"})
    assert r.status_code == 400
    assert re.search(rf'name="{box}"[^>]* checked', r.text)


def test_create_connection_errors_are_shown_with_the_form(
        console: tuple[TestClient, str]) -> None:
    client, csrf = console
    r = client.post("/admin/connections/saml", data={
        "csrf_token": csrf, "slug": "bad", "metadata_xml": "<not-metadata/>"})
    assert r.status_code == 400
    assert 'id="message">SAML: ' in r.text
    assert 'value="bad"' in r.text
    r = client.post("/admin/connections/oidc", data={
        "csrf_token": csrf, "slug": "okta", "issuer": "http://idp.example.org",
        "client_id": "c", "client_secret": "s3cret-value"})
    assert r.status_code == 400
    assert "https" in r.text
    assert "s3cret-value" not in r.text  # the secret is never echoed


def test_create_oidc_connection_without_checking_the_provider(
        console: tuple[TestClient, str], ctx: ServiceContext) -> None:
    client, csrf = console
    r = client.post("/admin/connections/oidc", data={
        "csrf_token": csrf, "slug": "okta", "client_id": "0oa1",
        "issuer": "https://example.okta.com/.well-known/openid-configuration",
        "client_secret": "s3cret", "scopes": "openid email groups"})
    assert r.status_code == 303
    conn = admin.get_connection(ctx, "okta")
    assert "https://example.okta.com" == conn.config["issuer"]
    assert "s3cret" not in str(conn.config)


def test_scim_token_is_shown_once_and_can_be_revoked(console: tuple[TestClient, str],
                                                     ctx: ServiceContext) -> None:
    client, csrf = console
    r = client.post("/admin/scim-tokens", data={
        "csrf_token": csrf, "tenant": "hospital", "name": "entra", "expires_days": "30",
        "connection": "idp"})
    assert r.status_code == 200
    shown = re.search(r'id="token-value" readonly value="(jps_[^"]+)"', r.text)
    assert shown is not None
    assert scim_tokens.authenticate(ctx, "hospital", shown.group(1)) is not None
    listing = client.get("/admin/scim-tokens").text
    assert shown.group(1) not in listing
    [token] = scim_tokens.list_tokens(ctx, "hospital")
    row = re.search(rf'<tr id="token-{token.id}">(.*?)</tr>', listing, re.S)
    assert row is not None
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row.group(1), re.S)
    assert ["entra", "idp"] == cells[:2]
    assert cells[4].endswith("UTC")  # last used: the authentication above
    assert "active" in cells[5]

    r = client.post(f"/admin/scim-tokens/{token.id}/revoke",
                    data={"csrf_token": csrf, "tenant": "hospital"})
    assert r.status_code == 303
    assert scim_tokens.list_tokens(ctx, "hospital")[0].revoked_at is not None
    assert client.post("/admin/scim-tokens/99999/revoke",
                       data={"csrf_token": csrf}).status_code == 404


def test_scim_token_bad_input_is_a_clear_answer(console: tuple[TestClient, str]) -> None:
    client, csrf = console
    r = client.post("/admin/scim-tokens", data={"csrf_token": csrf, "name": " "})
    assert r.status_code == 400
    assert "token name" in r.text
    r = client.post("/admin/scim-tokens", data={"csrf_token": csrf, "name": "x",
                                                "expires_days": "-3"})
    assert r.status_code == 400


def test_webhooks_page_lists_deliveries_and_replays_a_dead_one(
        console: tuple[TestClient, str], ctx: ServiceContext) -> None:
    ctx.webhook_allow_private = True
    client, csrf = console
    webhooks.add_endpoint(ctx, "hospital", "http://127.0.0.1:9/hook?token=abc", ["*"])
    provision_on_login(ctx, "idp", nurse(subject="cy", email="cy@hospital.example"))
    with UnitOfWork(ctx.db) as uow:
        uow.outbox.webhooks.fan_out(ctx.clock())
        uow.commit()
    [first, *_] = webhooks.list_deliveries(ctx, "hospital")
    with ctx.db.engine.begin() as conn:
        from jitprov.store import tables as t
        conn.execute(t.webhook_delivery.update().where(t.webhook_delivery.c.id == first.id)
                     .values(status="dead", attempts=8, last_status=500))
    page = client.get("/admin/webhooks")
    assert page.status_code == 200
    assert "token=abc" not in page.text  # the receiver's token is not shown
    assert re.search(rf'<tr id="delivery-{first.id}">.*?dead.*?HTTP 500.*?Replay', page.text,
                     re.S)
    r = client.post(f"/admin/webhooks/deliveries/{first.id}/replay",
                    data={"csrf_token": csrf, "tenant": "hospital"})
    assert r.status_code == 303
    assert "pending" == webhooks.list_deliveries(ctx, "hospital")[0].status
    again = client.post(f"/admin/webhooks/deliveries/{first.id}/replay",
                        data={"csrf_token": csrf, "tenant": "hospital"})
    assert again.status_code == 404  # no longer dead-lettered


def test_an_admin_of_another_tenant_cannot_open_this_mapping(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    admin.create_tenant(ctx, "clinic")
    with make_client(ctx) as client:
        csrf = sign_in_admin(ctx, client, tenant="clinic")
        assert client.get("/admin/connections/idp/mapping").status_code == 403
        r = client.post("/admin/connections/idp/mapping/validate",
                        data={"csrf_token": csrf, "mapping": CURRENT})
        assert r.status_code == 403
        assert client.get("/admin/connections/nope/mapping").status_code == 404


def test_api_preview_answers_the_impact_and_422_for_a_bad_mapping(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(subject="bo", email="bo@hospital.example",
                                         department="Ward 5"))
    _, token = admin.create_admin_token(ctx, "ops")
    auth = {"Authorization": f"Bearer {token}"}
    with make_client(ctx, dev_mode=False) as client:
        r = client.post("/api/connections/idp/mapping/preview", headers=auth,
                        json={"mapping": STRICTER, "limit": 10})
        assert r.status_code == 200
        body = r.json()
        assert (1, 1, 1) == (body["examined"], body["changed"], body["roles_lost"])
        assert ["nurse"] == body["people"][0]["roles_lost"]

        bad = client.post("/api/connections/idp/mapping/preview", headers=auth,
                          json={"mapping": "roles: [", "source": "bad.yaml"})
        assert bad.status_code == 422
        assert "bad.yaml:" in bad.text
        assert client.post("/api/connections/idp/mapping/preview", headers=auth,
                           json={"mapping": STRICTER, "limit": 1001}).status_code == 422
        assert client.post("/api/connections/idp/mapping/preview",
                           json={"mapping": STRICTER}).status_code == 401


@pytest.mark.parametrize("action", ["check", "test", "preview", "save", "nonsense"])
def test_editor_answers_garbage_without_a_server_error(console: tuple[TestClient, str],
                                                       action: str) -> None:
    client, csrf = console
    bodies = [
        {"mapping": "\x00\x1b[31m", "claims": "[" * 5000},
        {"mapping": CURRENT, "claims": '{"email": NaN, "groups": ' + "[" * 3000 + "}"},
        {"mapping": CURRENT, "recorded": "x" * 5000, "limit": "abc"},
        {"mapping": "", "claims": "null", "previewed": "<script>"},
    ]
    for body in bodies:
        r = client.post("/admin/connections/idp/mapping",
                        data={"csrf_token": csrf, "action": action, **body})
        assert r.status_code in (200, 400, 404, 422), (action, body, r.text[:300])
    raw = client.post("/admin/connections/idp/mapping/validate",
                      content=f"csrf_token={csrf}&mapping=%FF%FE%00".encode(),
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert raw.status_code == 200
