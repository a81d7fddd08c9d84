"""MFA required per connection, over HTTP with the in-process SAML IdP: the AuthnRequest asks
for the accepted AuthnContextClassRefs, the ACS refuses an assertion without one (a readable
page, ``login.denied``, nothing created), every login carries the claim ``auth_context`` for
the mapping; the admin API and the console set the requirement. (The same with real IdPs:
``tests/interop/test_oidc_mfa.py``, ``tests/interop/test_saml_mfa.py``.)"""

from __future__ import annotations

import base64
import re
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.services import admin, audit_export, mapping_preview
from jitprov.services.context import ServiceContext
from jitprov.store import tables as t
from jitprov.testing.saml_idp import (
    BASE_URL,
    PASSWORD_PROTECTED_TRANSPORT,
    FakeSamlIdp,
    ada,
    add_connection,
    request_id_of,
)
from tests.web.console.test_mapping import sign_in_admin
from tests.web.helpers import make_client

ACS_PATH = "/sso/idp/saml/acs"
TWO_FACTOR = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
ADFS_MFA = "http://schemas.microsoft.com/claims/multipleauthn"
MAPPING = f"""\
profile:
  email: mail
  name: displayName
groups: isMemberOf
roles:
  default: [staff]
  rules:
    - id: strong-sign-in
      grant: [admin]
      when: contains(auth_context.class_refs, '{TWO_FACTOR}')
"""


def start(client: TestClient) -> tuple[str, str, str]:
    """(RelayState, AuthnRequest ID, AuthnRequest XML) of a login started by ``client``."""
    r = client.get("/sso/idp/login", params={"return_to": "/me"})
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    query = parse_qs(urlsplit(location).query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()
    return query["RelayState"][0], request_id_of(location), xml


def sign_in(ctx: ServiceContext, idp: FakeSamlIdp, client: TestClient,
            class_ref: str) -> tuple[object, str]:
    relay_state, request_id, _ = start(client)
    saml_response = idp.response(
        acs_url=BASE_URL + ACS_PATH, audience=f"{BASE_URL}/sso/idp/saml/metadata",
        subject="ada", attributes=ada(), in_response_to=request_id, now=ctx.clock(),
        class_ref=class_ref)
    r = client.post(ACS_PATH, data={"SAMLResponse": saml_response, "RelayState": relay_state},
                    headers={"accept": "text/html"})
    return r, relay_state


def accounts(ctx: ServiceContext) -> int:
    with ctx.db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.account)).scalar_one())


def last_event(ctx: ServiceContext) -> dict[str, object]:
    event = list(audit_export.iter_events(ctx, "hospital"))[-1]
    return {"type": event.type, **event.data}


@pytest.fixture
def strict(ctx: ServiceContext) -> tuple[FakeSamlIdp, TestClient]:
    idp = add_connection(ctx, require_mfa=True, accepted_auth_contexts=[TWO_FACTOR, ADFS_MFA])
    admin.set_mapping(ctx, "idp", MAPPING, "mfa.yaml")
    return idp, make_client(ctx, dev_mode=False)


def test_the_authn_request_asks_for_the_accepted_class_refs_exactly(
        strict: tuple[FakeSamlIdp, TestClient]) -> None:
    _, client = strict
    _, _, xml = start(client)
    assert ('<samlp:RequestedAuthnContext Comparison="exact">'
            f"<saml:AuthnContextClassRef>{TWO_FACTOR}</saml:AuthnContextClassRef>"
            f"<saml:AuthnContextClassRef>{ADFS_MFA}</saml:AuthnContextClassRef>"
            "</samlp:RequestedAuthnContext></samlp:AuthnRequest>") in xml


def test_a_connection_without_require_mfa_requests_no_authn_context(
        ctx: ServiceContext) -> None:
    add_connection(ctx)
    _, _, xml = start(make_client(ctx, dev_mode=False))
    assert "RequestedAuthnContext" not in xml


def test_required_and_satisfied_signs_in_with_the_role_of_a_rule_on_auth_context(
        ctx: ServiceContext, strict: tuple[FakeSamlIdp, TestClient]) -> None:
    idp, client = strict
    r, _ = sign_in(ctx, idp, client, TWO_FACTOR)
    assert (r.status_code, r.headers.get("location")) == (303, "/me"), r.text  # type: ignore[attr-defined]
    assert client.get("/me").json()["roles"] == ["admin", "staff"]
    recorded = mapping_preview.recorded_login(ctx, "idp", "ada").claims
    assert recorded["auth_context"] == {"acr": None, "amr": [], "class_refs": [TWO_FACTOR]}


def test_required_and_not_satisfied_is_a_readable_refusal_and_creates_nothing(
        ctx: ServiceContext, strict: tuple[FakeSamlIdp, TestClient]) -> None:
    idp, client = strict
    r, _ = sign_in(ctx, idp, client, PASSWORD_PROTECTED_TRANSPORT)
    assert r.status_code == 403  # type: ignore[attr-defined]
    page = r.text  # type: ignore[attr-defined]
    assert "needs multi-factor authentication" in page
    assert PASSWORD_PROTECTED_TRANSPORT in page  # what the IdP said, for the helpdesk
    assert r.headers["x-request-id"] in page  # type: ignore[attr-defined]
    event = last_event(ctx)
    assert (event["type"], event["code"], event["subject"]) == ("login.denied", "mfa_required",
                                                               "ada")
    assert accounts(ctx) == 0
    assert client.get("/me").status_code in (302, 303, 401)


def test_a_denied_login_of_an_existing_account_changes_nothing(
        ctx: ServiceContext, strict: tuple[FakeSamlIdp, TestClient]) -> None:
    idp, client = strict
    sign_in(ctx, idp, client, TWO_FACTOR)
    [before] = admin.list_accounts(ctx, "hospital")
    client.cookies.clear()
    r, _ = sign_in(ctx, idp, client, PASSWORD_PROTECTED_TRANSPORT)
    assert r.status_code == 403  # type: ignore[attr-defined]
    [after] = admin.list_accounts(ctx, "hospital")
    assert after.account == before.account
    assert last_event(ctx)["code"] == "mfa_required"


def test_an_attribute_named_auth_context_cannot_forge_it(
        ctx: ServiceContext, strict: tuple[FakeSamlIdp, TestClient]) -> None:
    """An IdP attribute of that name is replaced by what the AuthnStatement says."""
    idp, client = strict
    relay_state, request_id, _ = start(client)
    saml_response = idp.response(
        acs_url=BASE_URL + ACS_PATH, audience=f"{BASE_URL}/sso/idp/saml/metadata",
        subject="ada", attributes={**ada(), "auth_context": [TWO_FACTOR]},
        in_response_to=request_id, now=ctx.clock())
    r = client.post(ACS_PATH, data={"SAMLResponse": saml_response, "RelayState": relay_state})
    assert r.status_code == 403
    assert last_event(ctx)["code"] == "mfa_required"


def test_without_require_mfa_the_claim_is_there_and_the_login_works(
        ctx: ServiceContext) -> None:
    idp = add_connection(ctx)
    client = make_client(ctx, dev_mode=False)
    r, _ = sign_in(ctx, idp, client, PASSWORD_PROTECTED_TRANSPORT)
    assert r.status_code == 303  # type: ignore[attr-defined]
    recorded = mapping_preview.recorded_login(ctx, "idp", "ada").claims
    assert recorded["auth_context"] == {"acr": None, "amr": [],
                                        "class_refs": [PASSWORD_PROTECTED_TRANSPORT]}


def test_a_deny_rule_on_auth_context_reads_the_recorded_claim(ctx: ServiceContext) -> None:
    """"Admins must use MFA" without refusing everyone: a deny rule on the claim, tested on
    a recorded login (what ``mapping test --recorded`` and the console editor do)."""
    idp = add_connection(ctx)
    sign_in(ctx, idp, make_client(ctx, dev_mode=False), PASSWORD_PROTECTED_TRANSPORT)
    deny = (MAPPING + "deny:\n  - id: weak\n    when: \"!contains(auth_context.class_refs, "
            f"'{TWO_FACTOR}')\"\n    reason: a second factor is required\n")
    result = mapping_preview.test_mapping(ctx, "idp", recorded_subject="ada", mapping=deny)
    assert (result.as_dict()["decision"], result.as_dict()["rule"]) == ("deny", "weak")


def test_admin_api_sets_the_requirement_and_refuses_bad_values(ctx: ServiceContext) -> None:
    admin.create_tenant(ctx, "hospital")
    _, token = admin.create_admin_token(ctx, "ops")
    client = make_client(ctx, dev_mode=False)
    auth = {"authorization": f"Bearer {token}"}
    metadata = FakeSamlIdp().metadata().decode()
    r = client.post("/api/connections/saml", headers=auth, json={
        "tenant": "hospital", "slug": "adfs", "idp_metadata_xml": metadata,
        "require_mfa": True, "accepted_auth_contexts": [ADFS_MFA]})
    assert r.status_code == 201, r.text
    assert (r.json()["require_mfa"], r.json()["accepted_auth_contexts"]) == (True, [ADFS_MFA])
    assert admin.get_connection(ctx, "adfs").config["accepted_auth_contexts"] == [ADFS_MFA]
    r = client.post("/api/connections/oidc", headers=auth, json={
        "tenant": "hospital", "slug": "entra", "check_provider": False,
        "client_secret": "s3cret-s3cret", "require_mfa": True,
        "config": {"issuer": "https://login.example/v2.0", "client_id": "app"}})
    assert r.status_code == 201, r.text
    assert (r.json()["require_mfa"], r.json()["accepted_auth_contexts"]) == (True, ["mfa"])
    for slug, body in (
            ("no-values", {"require_mfa": True}),
            ("not-a-uri", {"require_mfa": True, "accepted_auth_contexts": ["mfa"]}),
            ("unrequired", {"accepted_auth_contexts": [ADFS_MFA]}),
            ("spaces", {"require_mfa": True, "accepted_auth_contexts": ["urn:a b"]}),
            ("by-options", {"options": {"require_mfa": "yes"}})):
        r = client.post("/api/connections/saml", headers=auth, json={
            "tenant": "hospital", "slug": slug, "idp_metadata_xml": metadata, **body})
        assert r.status_code == 400, (slug, r.text)
        assert "SAML connection" in r.text, r.text
    r = client.post("/api/connections/oidc", headers=auth, json={
        "tenant": "hospital", "slug": "bad", "check_provider": False, "client_secret": "x",
        "config": {"issuer": "https://login.example/v2.0", "client_id": "app",
                   "require_mfa": "true"}})
    assert r.status_code == 400, r.text
    assert [c.slug for c in admin.list_connections(ctx, "hospital")] == ["adfs", "entra"]


def test_the_console_form_sets_the_requirement(ctx: ServiceContext) -> None:
    admin.create_tenant(ctx, "hospital")
    with make_client(ctx) as client:
        csrf = sign_in_admin(ctx, client)
        form = client.get("/admin/connections/new").text
        assert 'name="auth_contexts"' in form and 'name="saml_auth_contexts"' in form
        metadata = FakeSamlIdp().metadata().decode()
        r = client.post("/admin/connections/saml", data={
            "csrf_token": csrf, "tenant": "hospital", "slug": "adfs", "metadata_xml": metadata,
            "saml_auth_contexts": f"{ADFS_MFA} {TWO_FACTOR}"})
        assert r.status_code == 303, r.text
        config = admin.get_connection(ctx, "adfs").config
        assert (config["require_mfa"], config["accepted_auth_contexts"]) == (
            True, [ADFS_MFA, TWO_FACTOR])
        r = client.post("/admin/connections/oidc", data={
            "csrf_token": csrf, "tenant": "hospital", "slug": "okta", "client_secret": "s3",
            "issuer": "https://hospital.okta.example", "client_id": "app",
            "auth_contexts": "urn:okta:loa:2fa:any mfa"})
        assert r.status_code == 303, r.text
        config = admin.get_connection(ctx, "okta").config
        assert (config["require_mfa"], config["accepted_auth_contexts"]) == (
            True, ["urn:okta:loa:2fa:any", "mfa"])
        r = client.post("/admin/connections/saml", data={
            "csrf_token": csrf, "tenant": "hospital", "slug": "bad", "metadata_xml": metadata,
            "saml_auth_contexts": "mfa"})
        assert r.status_code == 400
        assert "not a SAML AuthnContextClassRef URI" in r.text
        assert re.search(r'name="saml_auth_contexts"[^>]*value="mfa"', r.text)
