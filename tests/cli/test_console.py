"""``jitprov admin bootstrap|revoke-sessions``: the way into the admin console."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jitprov.services import console
from tests.cli.test_cli import cli_context, run
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_BASE_URL", "https://jitprov.example.org")
    return tmp_path


def test_bootstrap_prints_a_one_time_link_that_opens_one_session(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert run(capsys, "tenant", "create", "hospital")[0] == 0

    code, out, _ = run(capsys, "admin", "bootstrap", "--tenant", "hospital")

    assert code == 0
    assert "for tenant hospital (single use" in out
    link = re.search(r"https://jitprov\.example\.org/admin/bootstrap#(jpb_\S+)", out)
    assert link is not None
    ctx = cli_context()
    try:
        opened = console.open_bootstrap_session(ctx, link.group(1), csrf_key="k")
        assert ("hospital",) == opened.principal.tenants
        with pytest.raises(console.AdminSignInRefused):
            console.open_bootstrap_session(ctx, link.group(1), csrf_key="k")
    finally:
        ctx.db.dispose()
    code, out, _ = run(capsys, "admin", "revoke-sessions")
    assert (0, "1 admin session(s) revoked") == (code, out.strip())


def test_bootstrap_for_an_unknown_tenant_is_an_error(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, _, err = run(capsys, "admin", "bootstrap", "--tenant", "nowhere")

    assert code == 2 and err.startswith("error: ")
