"""``jitprov connection add-oidc``: the scope check (a claim the mapping reads that the scopes
are unlikely to bring is named, with the rules that read it) and the logout URIs to register;
``jitprov mapping test --recorded``: the claims the rules read that a recorded login lacked.
Against a real provider's discovery document: tests/interop/test_oidc_scope_check.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitprov.core.identity import ExternalIdentity
from jitprov.services import admin
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import setup_connection
from tests.cli.test_cli import GOOD, cli_context, run
from tests.conftest import TEST_SECRET_KEY


def add_oidc(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run(capsys, "connection", "add-oidc", "--tenant", "hospital", "--slug", "okta",
               "--issuer", "https://example.okta.com", "--client-id", "0oa1",
               "--client-secret", "s3cret", "--mapping", "hospital.yaml", "--no-check", *extra)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_BASE_URL", "https://sso.hospital.example")
    (tmp_path / "hospital.yaml").write_text(GOOD)
    return tmp_path


@pytest.fixture
def tenant(workdir: Path) -> Path:
    ctx = cli_context()
    admin.create_tenant(ctx, "hospital")
    ctx.db.dispose()
    return workdir


def test_add_oidc_warns_about_groups_without_a_groups_scope(
        capsys: pytest.CaptureFixture[str], tenant: Path) -> None:
    code, out, err = add_oidc(capsys)  # default scopes: openid email profile

    assert code == 0
    [warning] = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warning.startswith("warning: claim 'groups' (read by groups (line 5), roles rule "
                              "nurses (line 9), roles rule charge-nurses (line 12)) is likely "
                              "absent: ")
    assert "connection okta (oidc) added" in out


def test_add_oidc_with_the_groups_scope_does_not_warn(capsys: pytest.CaptureFixture[str],
                                                      tenant: Path) -> None:
    code, _, err = add_oidc(capsys, "--scopes", "openid email profile groups")

    assert (code, err) == (0, "")


def test_add_oidc_names_the_standard_scope_a_claim_needs(capsys: pytest.CaptureFixture[str],
                                                         tenant: Path) -> None:
    code, _, err = add_oidc(capsys, "--scopes", "openid profile groups")

    assert code == 0
    assert "warning: claim 'email' (read by profile.email (line 2)) is likely absent: add " \
           "the scope 'email'" in err


def test_add_oidc_prints_the_logout_uris_to_register(capsys: pytest.CaptureFixture[str],
                                                     tenant: Path) -> None:
    code, out, _ = add_oidc(capsys, "--scopes", "openid email profile groups")

    assert code == 0
    assert "  post-logout redirect URI to register: " \
           "https://sso.hospital.example/sso/okta/oidc/signed-out\n" in out
    assert "  back-channel logout URI to register: " \
           "https://sso.hospital.example/sso/okta/backchannel-logout\n" in out


def test_add_oidc_can_turn_idp_logout_off(capsys: pytest.CaptureFixture[str],
                                          tenant: Path) -> None:
    assert add_oidc(capsys, "--no-idp-logout")[0] == 0
    ctx = cli_context()
    try:
        assert admin.get_connection(ctx, "okta").config["idp_logout"] is False
    finally:
        ctx.db.dispose()


@pytest.fixture
def recorded(workdir: Path) -> Path:
    """The mock connection ``idp`` with the hospital mapping; ``bo`` signed in without a
    groups claim, ``ana`` with one."""
    ctx = cli_context()
    setup_connection(ctx)
    claims = {"email": "bo@hospital.example", "email_verified": True, "name": "Bo"}
    provision_on_login(ctx, "idp", ExternalIdentity("https://idp.example", "bo", claims))
    provision_on_login(ctx, "idp", ExternalIdentity(
        "https://idp.example", "ana", {**claims, "email": "ana@hospital.example",
                                       "groups": ["Nurses"], "department": "Ward 3"}))
    ctx.db.dispose()
    return workdir


def test_mapping_test_on_a_recorded_login_names_the_absent_claims(
        capsys: pytest.CaptureFixture[str], recorded: Path) -> None:
    code, out, err = run(capsys, "mapping", "test", "--connection", "idp", "--recorded", "bo")

    assert (code, err) == (0, "")
    assert "absent claim: 'groups', read by groups (line 5), roles rule nurses (line 9), " \
           "roles rule charge-nurses (line 12)" in out
    assert "absent claim: 'department', read by profile.department (line 4)" in out
    assert out.rstrip().endswith("(dry run: nothing was written)")


def test_mapping_test_on_a_complete_login_names_nothing_absent(
        capsys: pytest.CaptureFixture[str], recorded: Path) -> None:
    code, out, _ = run(capsys, "mapping", "test", "--connection", "idp", "--recorded", "ana",
                       "--json")

    assert code == 0
    result = json.loads(out)
    assert ("absent_claims" in result, result["decision"]) == (False, "no_change")


def test_mapping_test_json_lists_absent_claims(capsys: pytest.CaptureFixture[str],
                                               recorded: Path) -> None:
    code, out, _ = run(capsys, "mapping", "test", "--connection", "idp", "--recorded", "bo",
                       "--json")

    assert code == 0
    assert sorted(json.loads(out)["absent_claims"]) == ["department", "groups"]


@pytest.mark.parametrize("args", [(), ("--recorded", "bo", "--claims", "x.json")])
def test_mapping_test_needs_exactly_one_source_of_claims(
        capsys: pytest.CaptureFixture[str], recorded: Path, args: tuple[str, ...]) -> None:
    code, _, err = run(capsys, "mapping", "test", "--connection", "idp", *args)

    assert code == 2
    assert "give --claims FILE or --recorded SUBJECT" in err


def test_mapping_test_of_an_unknown_recorded_subject_is_a_clear_error(
        capsys: pytest.CaptureFixture[str], recorded: Path) -> None:
    code, _, err = run(capsys, "mapping", "test", "--connection", "idp", "--recorded", "zed")

    assert code != 0
    assert "no recorded login of 'zed'" in err
