"""The CLI as a user meets it: exit codes, one-line errors naming file and line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from jitprov.cli.main import main
from jitprov.services import admin
from jitprov.services.context import ServiceContext, build_context
from jitprov.settings import load_settings
from jitprov.store.database import Database, normalise_url
from jitprov.testing.builders import HOSPITAL, setup_connection
from tests.conftest import TEST_SECRET_KEY

GOOD = HOSPITAL.format(linking="never")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


def cli_context() -> ServiceContext:
    """A context on the database the CLI under test uses (from the environment)."""
    settings = load_settings()
    return build_context(settings, Database.connect(settings.database_url, pool_size=1))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    (tmp_path / "hospital.yaml").write_text(GOOD)
    return tmp_path


def test_mapping_check_accepts_a_good_file(capsys: pytest.CaptureFixture[str],
                                           workdir: Path) -> None:
    code, out, _ = run(capsys, "mapping", "check", "hospital.yaml")
    assert code == 0
    assert out.startswith("hospital.yaml: ok")


def test_mapping_check_names_file_line_and_rule(capsys: pytest.CaptureFixture[str],
                                                workdir: Path) -> None:
    bad = GOOD.replace("when: contains(groups, 'Nurses')", "when: contains(groups, 'Nurses'")
    (workdir / "bad.yaml").write_text(bad)
    code, out, err = run(capsys, "mapping", "check", "bad.yaml")
    assert code == 2
    assert err.startswith("error: bad.yaml:11: ")
    assert "nurses" in err
    assert "Traceback" not in err + out


def test_mapping_check_reports_an_unreadable_file(capsys: pytest.CaptureFixture[str],
                                                  workdir: Path) -> None:
    code, _, err = run(capsys, "mapping", "check", "missing.yaml")
    assert code == 2
    assert err.startswith("error: cannot read missing.yaml")


def test_unmigrated_database_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    code, _, err = run(capsys, "users", "list", "--tenant", "x",
                       "--database-url", f"sqlite:///{tmp_path}/empty.db")
    assert code == 2
    assert "jitprov db upgrade" in err


def test_tenant_create_twice_is_a_conflict(capsys: pytest.CaptureFixture[str],
                                           workdir: Path) -> None:
    assert run(capsys, "tenant", "create", "clinic")[0] == 0
    code, _, err = run(capsys, "tenant", "create", "clinic")
    assert code == 2
    assert err == "error: tenant 'clinic' already exists\n"


def test_mapping_test_prints_decision_and_trace_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    ctx = cli_context()
    setup_connection(ctx)
    (workdir / "claims.json").write_text(json.dumps(
        {"sub": "u-7", "email": "a@b.c", "email_verified": True, "groups": ["Nurses"]}))
    code, out, _ = run(capsys, "mapping", "test", "--connection", "idp", "--claims",
                       "claims.json", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["decision"] == "create"
    assert {"role": "nurse", "source": "rule:idp/nurses"} in result["changes"]["grants_added"]
    assert admin.list_accounts(ctx, "hospital") == []
    ctx.db.dispose()


def test_mapping_test_reports_bad_json_with_its_line(capsys: pytest.CaptureFixture[str],
                                                     workdir: Path) -> None:
    (workdir / "claims.json").write_text('{\n  "sub": "x",\n  oops\n}')
    code, _, err = run(capsys, "mapping", "test", "--connection", "idp", "--claims",
                       "claims.json")
    assert code == 2
    assert err.startswith("error: claims.json:3: not valid JSON")


def test_audit_verify_exits_1_when_an_event_was_edited(capsys: pytest.CaptureFixture[str],
                                                       workdir: Path,
                                                       database_url: str) -> None:
    run(capsys, "tenant", "create", "clinic")
    code, out, _ = run(capsys, "audit", "verify")
    assert (code, out) == (0, "tenant clinic: 1 events, chain intact\n")
    engine = sa.create_engine(normalise_url(database_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_event SET actor = 'someone-else'"))
    engine.dispose()
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1
    assert "BROKEN" in out


def test_audit_export_csv_has_a_header_and_one_row_per_event(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    run(capsys, "tenant", "create", "clinic")
    code, out, _ = run(capsys, "audit", "export", "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("tenant,seq,occurred_at,type")
    assert lines[1].startswith("clinic,1,")


def test_serve_refuses_the_dev_only_demo_idp(capsys: pytest.CaptureFixture[str],
                                             workdir: Path) -> None:
    ctx = cli_context()
    setup_connection(ctx)
    ctx.db.dispose()
    code, _, err = run(capsys, "serve", "--port", "1")
    assert code == 2
    assert "dev-only kind mock" in err


def test_console_script_is_installed() -> None:
    result = subprocess.run([str(Path(sys.executable).with_name("jitprov")), "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "mapping" in result.stdout


@pytest.mark.parametrize("url", ["nonsense", "mysql://root@127.0.0.1/test"])
def test_unusable_database_url_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    code, _, err = run(capsys, "users", "list", "--tenant", "x", "--database-url", url)
    assert code == 2
    assert err.startswith("error: cannot use the database URL")
    assert len(err.strip().splitlines()) == 1


def test_users_deactivate_and_reactivate(capsys: pytest.CaptureFixture[str],
                                         workdir: Path) -> None:
    from jitprov.services.login.flow import provision_on_login
    from jitprov.testing.builders import nurse

    ctx = cli_context()
    setup_connection(ctx)
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    code, out, _ = run(capsys, "users", "deactivate", account_id, "--reason", "left")
    assert (code, out) == (0, f"account {account_id} deactivated; 1 session(s) revoked\n")
    code, _, err = run(capsys, "users", "deactivate", account_id, "--reason", "again")
    assert (code, err) == (2, f"error: account {account_id} is already deactivated\n")
    assert run(capsys, "users", "reactivate", account_id, "--reason", "back")[0] == 0
    assert [v.account.status for v in admin.list_accounts(ctx, "hospital")] == ["active"]
    ctx.db.dispose()


def test_approvals_list_and_approve(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    from jitprov.services.login.flow import provision_on_login
    from jitprov.testing.builders import nurse

    ctx = cli_context()
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Charge Nurses"]))
    code, out, _ = run(capsys, "approvals", "list", "--tenant", "hospital", "--json")
    [waiting] = json.loads(out)
    request_id = str(waiting["id"])
    assert (code, waiting["role"], waiting["account"]) == (0, "charge-nurse",
                                                            "ana@hospital.example")
    code, out, _ = run(capsys, "approvals", "approve", request_id, "--reason", "lead",
                       "--approver", "matron")
    assert (code, out) == (0, f"request {request_id}: charge-nurse granted to "
                              "ana@hospital.example\n")
    ctx.db.dispose()


def test_lifecycle_sweep_dry_run_prints_what_would_change(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    from jitprov.services.login.flow import provision_on_login
    from jitprov.testing.builders import nurse

    ctx = cli_context()
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    ctx.db.dispose()
    assert run(capsys, "tenant", "set-policy", "hospital", "--dormant-deactivate-days",
               "1")[0] == 0
    code, out, _ = run(capsys, "lifecycle", "sweep", "--dry-run")
    assert code == 0
    # the login above happened at the real clock's "now": nothing is a day old yet
    assert out.startswith("tenant hospital: would deactivate 0, warn 0")


def test_set_policy_changes_only_what_is_given(capsys: pytest.CaptureFixture[str],
                                               workdir: Path) -> None:
    from jitprov.store.unit_of_work import UnitOfWork

    run(capsys, "tenant", "create", "clinic")
    assert run(capsys, "tenant", "set-policy", "clinic", "--dormant-deactivate-days", "90")[0] == 0
    assert run(capsys, "tenant", "set-policy", "clinic", "--audit-retention-days", "400")[0] == 0
    ctx = cli_context()
    with UnitOfWork(ctx.db, readonly=True) as uow:
        settings = uow.config.tenants.settings(uow.config.tenants.get("clinic").id)
    ctx.db.dispose()
    assert settings["dormant"]["deactivate_days"] == 90  # type: ignore[index]
    assert settings["audit_retention_days"] == 400
    assert run(capsys, "tenant", "set-policy", "clinic")[0] == 2
