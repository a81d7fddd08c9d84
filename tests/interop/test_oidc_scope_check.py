"""The scope check against a real provider (panva/oidc-provider): ``jitprov connection
add-oidc`` reads its discovery document and names the ``groups`` claim the rules read when
the scopes do not ask for it; after a real login with those scopes, the group rule has seen
nothing, and ``jitprov mapping test --recorded`` says the claim was absent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.settings import Settings
from jitprov.testing.builders import HOSPITAL
from jitprov.web.app import create_app
from tests.cli.test_cli import cli_context, run
from tests.conftest import TEST_SECRET_KEY
from tests.interop.oidc_op import OpenIdProvider, complete_login

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("oidc_op_available")]

BASE_URL = "http://127.0.0.1:9"
SECRET = "op-client-secret-0123456789"
ANA = {"email": "ana@hospital.example", "email_verified": True, "name": "Ana Lima",
       "department": "Ward 3", "groups": ["Nurses"]}


@pytest.fixture
def op() -> Iterator[OpenIdProvider]:
    client = {"client_id": "okta", "client_secret": SECRET,
              "redirect_uris": [f"{BASE_URL}/sso/okta/oidc/callback"],
              "grant_types": ["authorization_code"], "response_types": ["code"],
              "token_endpoint_auth_method": "client_secret_basic"}
    with OpenIdProvider(clients=[client], accounts={"ana": ANA}) as provider:
        yield provider


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_BASE_URL", BASE_URL)
    monkeypatch.setenv("JITPROV_OUTBOUND_ALLOW", "127.0.0.1/32")  # the provider's loopback
    (tmp_path / "hospital.yaml").write_text(HOSPITAL.format(linking="never"))
    ctx = cli_context()
    admin.create_tenant(ctx, "hospital")
    ctx.db.dispose()
    return tmp_path


def add_oidc(capsys: pytest.CaptureFixture[str], op: OpenIdProvider,
             scopes: str) -> tuple[int, str, str]:
    return run(capsys, "connection", "add-oidc", "--tenant", "hospital", "--slug", "okta",
               "--issuer", op.issuer, "--client-id", "okta", "--client-secret", SECRET,
               "--mapping", "hospital.yaml", "--scopes", scopes)


def test_add_oidc_names_the_groups_claim_and_a_real_login_confirms_it_is_absent(
        capsys: pytest.CaptureFixture[str], workdir: Path, op: OpenIdProvider) -> None:
    code, _, err = add_oidc(capsys, op, "openid email profile")
    assert code == 0, err
    assert "warning: claim 'groups' (read by groups (line 5), roles rule nurses (line 9), " \
           "roles rule charge-nurses (line 12)) is likely absent: the provider offers the " \
           "scope 'groups', which is not requested" in err

    ctx = cli_context()
    try:
        settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
        with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                        follow_redirects=False) as browser:
            start = browser.get("/sso/okta/login")
            assert browser.get(complete_login(start.headers["location"], "ana")
                               ).status_code == 303
            assert browser.get("/me").json()["roles"] == ["staff"]  # no nurse: no groups
    finally:
        ctx.http.close()
        ctx.db.dispose()

    code, out, _ = run(capsys, "mapping", "test", "--connection", "okta", "--recorded", "ana")
    assert code == 0
    assert "absent claim: 'groups', read by groups (line 5), roles rule nurses (line 9)" in out


def test_add_oidc_with_the_groups_scope_is_quiet_and_the_rule_matches(
        capsys: pytest.CaptureFixture[str], workdir: Path, op: OpenIdProvider) -> None:
    code, _, err = add_oidc(capsys, op, "openid email profile groups")
    assert (code, err) == (0, "")
