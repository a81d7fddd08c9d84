"""The OIDC scope check over HTTP: the admin API's connection creation answers the warnings,
the console shows them after creating a connection, and the API's mapping dry run lists the
claims the rules read that the login lacked. The provider is the fake of the protocol tests
(its discovery document offers a ``groups`` scope)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import Database
from jitprov.testing.builders import HOSPITAL
from tests.conftest import TEST_SECRET_KEY, Clock
from tests.protocols.oidc_fakes import CLIENT_ID, ISSUER, FakeProvider
from tests.web.console.test_console import bootstrap_sign_in
from tests.web.helpers import make_client


@pytest.fixture
def octx(database_url: str, clock: Clock) -> Iterator[ServiceContext]:
    provider = FakeProvider()
    provider.discovery["scopes_supported"] = ["openid", "email", "profile", "groups"]
    http = provider.client()
    ctx = ServiceContext(db=Database.connect(database_url, pool_size=4),
                         secretbox=SecretBox(TEST_SECRET_KEY), clock=clock, http=http)
    admin.create_tenant(ctx, "hospital")
    yield ctx
    http.close()
    ctx.db.dispose()


@pytest.fixture
def api(octx: ServiceContext) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _, token = admin.create_admin_token(octx, "ops")
    with make_client(octx) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def create(api: tuple[TestClient, dict[str, str]], scopes: list[str],
           check_provider: bool = True) -> dict[str, object]:
    client, auth = api
    r = client.post("/api/connections/oidc", headers=auth, json={
        "tenant": "hospital", "slug": "okta", "client_secret": "s3cret",
        "config": {"issuer": ISSUER, "client_id": CLIENT_ID, "scopes": scopes},
        "mapping": HOSPITAL.format(linking="never"), "mapping_source": "hospital.yaml",
        "check_provider": check_provider})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def test_api_creation_warns_that_the_provider_offers_a_groups_scope_not_requested(
        api: tuple[TestClient, dict[str, str]]) -> None:
    body = create(api, ["openid", "email", "profile"])

    [warning] = body["warnings"]  # type: ignore[misc]
    assert warning == ("claim 'groups' (read by groups (line 5), roles rule nurses (line 9), "
                       "roles rule charge-nurses (line 12)) is likely absent: the provider "
                       "offers the scope 'groups', which is not requested")
    assert body["post_logout_redirect_uri"] == "http://testserver/sso/okta/oidc/signed-out"
    assert body["backchannel_logout_uri"] == "http://testserver/sso/okta/backchannel-logout"


def test_api_creation_with_the_groups_scope_has_no_warning(
        api: tuple[TestClient, dict[str, str]]) -> None:
    assert create(api, ["openid", "email", "profile", "groups"])["warnings"] == []


def test_api_creation_without_asking_the_provider_still_names_groups(
        api: tuple[TestClient, dict[str, str]]) -> None:
    [warning] = create(api, ["openid", "email", "profile"],
                       check_provider=False)["warnings"]  # type: ignore[misc]
    assert "claim 'groups'" in warning
    assert "no requested scope asks for it" in warning


def test_api_dry_run_lists_the_claims_the_login_lacked(
        api: tuple[TestClient, dict[str, str]]) -> None:
    create(api, ["openid", "email", "profile", "groups"])
    client, auth = api
    r = client.post("/api/connections/okta/mapping/test", headers=auth, json={
        "subject": "u-1", "claims": {"email": "a@hospital.example", "email_verified": True,
                                     "name": "A"}})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["absent_claims"]) == ["department", "groups"]
    assert r.json()["absent_claims"]["department"] == ["profile.department (line 4)"]


def test_console_shows_the_warnings_after_creating_the_connection(
        octx: ServiceContext) -> None:
    with make_client(octx) as client:
        csrf = bootstrap_sign_in(client, octx)
        r = client.post("/admin/connections/oidc", data={
            "csrf_token": csrf, "tenant": "hospital", "slug": "okta", "issuer": ISSUER,
            "client_id": CLIENT_ID, "client_secret": "s3cret", "scopes": "openid email profile",
            "check_provider": "on"})
        assert r.status_code == 303, r.text
        page = client.get(r.headers["location"])
        plain = client.get("/admin/connections?tenant=hospital")

    assert page.status_code == 200
    assert 'id="scope-warnings"' in page.text
    assert "claim &#39;groups&#39; (read by groups (line 6))" in page.text
    assert "the provider offers the scope &#39;groups&#39;" in page.text
    assert "/sso/okta/backchannel-logout" in page.text
    assert 'id="scope-warnings"' not in plain.text  # only right after the creation
