"""``jitprov connection add-oidc|add-saml --require-mfa [--auth-context VALUE ...]``: what is
stored, what is printed, and the one-line error of a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitprov.services import admin
from jitprov.testing.saml_idp import FakeSamlIdp
from tests.cli.test_cli import cli_context, run
from tests.conftest import TEST_SECRET_KEY

OKTA_2FA = "urn:okta:loa:2fa:any"
TWO_FACTOR = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_BASE_URL", "https://sso.hospital.example")
    (tmp_path / "idp.xml").write_bytes(FakeSamlIdp().metadata())
    ctx = cli_context()
    admin.create_tenant(ctx, "hospital")
    ctx.db.dispose()
    return tmp_path


def add_oidc(capsys: pytest.CaptureFixture[str], slug: str,
             *flags: str) -> tuple[int, str, str]:
    return run(capsys, "connection", "add-oidc", "--tenant", "hospital", "--slug", slug,
               "--issuer", "https://hospital.okta.example", "--client-id", "jitprov",
               "--client-secret", "s3cret-s3cret", "--scopes", "openid email profile groups",
               "--no-check", *flags)


def add_saml(capsys: pytest.CaptureFixture[str], slug: str,
             *flags: str) -> tuple[int, str, str]:
    return run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug", slug,
               "--idp-metadata-file", "idp.xml", *flags)


def stored(slug: str) -> tuple[object, object]:
    ctx = cli_context()
    config = admin.get_connection(ctx, slug).config
    ctx.db.dispose()
    return config.get("require_mfa"), config.get("accepted_auth_contexts")


def test_add_oidc_require_mfa_stores_the_accepted_values_and_says_so(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, err = add_oidc(capsys, "okta", "--require-mfa", "--auth-context", OKTA_2FA,
                              "--auth-context", "mfa")
    assert (code, err) == (0, ""), err
    assert f"multi-factor authentication required; accepted: {OKTA_2FA} mfa" in out
    assert stored("okta") == (True, [OKTA_2FA, "mfa"])


def test_add_oidc_require_mfa_alone_accepts_the_amr_mfa(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, err = add_oidc(capsys, "entra", "--require-mfa")
    assert (code, err) == (0, ""), err
    assert "multi-factor authentication required; accepted: mfa" in out
    assert stored("entra") == (True, [])


def test_add_oidc_without_require_mfa_prints_nothing_about_it(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, _ = add_oidc(capsys, "plain")
    assert code == 0
    assert "multi-factor" not in out
    assert stored("plain") == (False, [])


@pytest.mark.parametrize(("flags", "message"), [
    (["--auth-context", "mfa"], "is used only with require_mfa (--require-mfa)"),
    (["--require-mfa", "--auth-context", "two words"], "'two words' is not a value"),
    (["--require-mfa", "--auth-context", "caf\u00e9"], "printable ASCII"),
])
def test_add_oidc_refuses_bad_auth_contexts_in_one_line(
        capsys: pytest.CaptureFixture[str], workdir: Path, flags: list[str],
        message: str) -> None:
    code, out, err = add_oidc(capsys, "bad", *flags)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out


def test_add_saml_require_mfa_stores_the_class_refs(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, err = add_saml(capsys, "adfs", "--require-mfa", "--auth-context", TWO_FACTOR)
    assert (code, err) == (0, ""), err
    assert f"accepted: {TWO_FACTOR}" in out
    assert stored("adfs") == (True, [TWO_FACTOR])


@pytest.mark.parametrize(("flags", "message"), [
    (["--require-mfa"], "needs at least one accepted AuthnContextClassRef"),
    (["--require-mfa", "--auth-context", "mfa"], "'mfa' is not a SAML AuthnContextClassRef URI"),
    (["--auth-context", TWO_FACTOR], "is used only with require_mfa"),
])
def test_add_saml_refuses_bad_auth_contexts_in_one_line(
        capsys: pytest.CaptureFixture[str], workdir: Path, flags: list[str],
        message: str) -> None:
    code, _, err = add_saml(capsys, "bad", *flags)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    ctx = cli_context()
    assert [c.slug for c in admin.list_connections(ctx, "hospital")] == []
    ctx.db.dispose()
