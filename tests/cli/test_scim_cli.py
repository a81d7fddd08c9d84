"""``jitprov scim-token create|list|revoke`` and the SCIM keys of ``tenant set-policy``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitprov.services.scim import tokens as scim_tokens
from jitprov.store.unit_of_work import UnitOfWork
from tests.cli.test_cli import cli_context, run
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    return tmp_path


def test_create_prints_the_token_once_and_list_never_shows_it(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert run(capsys, "tenant", "create", "hospital")[0] == 0
    code, out, _ = run(capsys, "scim-token", "create", "--tenant", "hospital", "--name",
                       "entra", "--expires-in", "90")
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert token.startswith("jps_")
    ctx = cli_context()
    try:
        principal = scim_tokens.authenticate(ctx, "hospital", token)
        assert principal is not None and principal.actor == "scim:entra"
    finally:
        ctx.db.dispose()
    code, out, _ = run(capsys, "scim-token", "list", "--tenant", "hospital", "--json")
    assert code == 0 and token not in out
    [listed] = json.loads(out)
    assert (listed["name"], listed["state"]) == ("entra", "active") and listed["expires"]
    code, out, _ = run(capsys, "scim-token", "list", "--tenant", "hospital")
    assert out.split("\n")[0].split() == ["ID", "NAME", "STATE", "EXPIRES", "CREATED",
                                          "LAST_USED"]
    assert out.split("\n")[1].split()[1:3] == ["entra", "active"] and token not in out


def test_revoke_and_errors(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    run(capsys, "tenant", "create", "hospital")
    _, out, _ = run(capsys, "scim-token", "create", "--tenant", "hospital")
    token_id = out.split()[2]
    code, out, _ = run(capsys, "scim-token", "revoke", token_id, "--tenant", "hospital")
    assert (code, out.strip()) == (0, f"SCIM token {token_id} revoked")
    assert "revoked" in run(capsys, "scim-token", "list", "--tenant", "hospital")[1]
    code, _, err = run(capsys, "scim-token", "create", "--tenant", "nowhere")
    assert code == 2 and err.startswith("error: ")
    code, _, err = run(capsys, "scim-token", "create", "--tenant", "hospital",
                       "--connection", "missing")
    assert code == 2 and "Traceback" not in err


def test_set_policy_takes_the_scim_keys(capsys: pytest.CaptureFixture[str],
                                        workdir: Path) -> None:
    run(capsys, "tenant", "create", "hospital")
    code, _, _ = run(capsys, "tenant", "set-policy", "hospital", "--scim-delete", "erase",
                     "--scim-on-existing", "adopt")
    assert code == 0
    ctx = cli_context()
    try:
        with UnitOfWork(ctx.db, readonly=True) as uow:
            settings = uow.config.tenants.settings(uow.config.tenants.get("hospital").id)
    finally:
        ctx.db.dispose()
    assert (settings["scim_delete"], settings["scim_on_existing"]) == ("erase", "adopt")
    code, _, err = run(capsys, "tenant", "set-policy", "hospital", "--scim-delete", "shred")
    assert code == 2 and "scim_delete must be one of" in err
