"""``jitprov mapping preview`` and ``mapping retention``: the impact of a mapping file on the
people who recently signed in, errors naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitprov.services import admin
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection
from tests.cli.test_cli import GOOD, cli_context, run
from tests.conftest import TEST_SECRET_KEY

STRICTER = GOOD.replace("when: contains(groups, 'Nurses')",
                        "when: contains(groups, 'Nurses') && department == 'Ward 3'")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    (tmp_path / "stricter.yaml").write_text(STRICTER)
    ctx = cli_context()
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(subject="ana", email="ana@hospital.example"))
    provision_on_login(ctx, "idp", nurse(subject="bo", email="bo@hospital.example",
                                         department="Ward 5"))
    ctx.db.dispose()
    return tmp_path


def test_preview_lists_who_loses_a_role_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, err = run(capsys, "mapping", "preview", "--connection", "idp", "stricter.yaml")

    assert (0, "") == (code, err)
    assert out.startswith("2 recorded login(s) replayed: 1 changed, 0 newly denied")
    assert "bo@hospital.example (bo):\n  - nurse\n" in out
    assert "ana@hospital.example" not in out
    ctx = cli_context()
    assert "contains(groups, 'Nurses')\n" in admin.get_connection(ctx, "idp").mapping
    ctx.db.dispose()


def test_preview_json_and_limit(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, _ = run(capsys, "mapping", "preview", "--connection", "idp", "stricter.yaml",
                       "--limit", "1", "--json")
    assert 0 == code
    report = json.loads(out)
    assert (1, 1) == (report["examined"], report["changed"])
    assert [{"roles_lost": ["nurse"], "subject": "bo"}] == [
        {k: p[k] for k in ("roles_lost", "subject")} for p in report["people"]]


def test_preview_of_a_bad_file_names_file_line_and_rule(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    (workdir / "bad.yaml").write_text(GOOD.replace("grant: [nurse]", "grant: [nurse"))
    code, out, err = run(capsys, "mapping", "preview", "--connection", "idp", "bad.yaml")
    assert 2 == code
    assert err.startswith("error: bad.yaml:")
    line = int(err.split(":")[2])
    assert 10 <= line <= 12
    assert "Traceback" not in out + err


def test_preview_refuses_a_limit_above_1000(capsys: pytest.CaptureFixture[str],
                                            workdir: Path) -> None:
    code, _, err = run(capsys, "mapping", "preview", "--connection", "idp", "stricter.yaml",
                       "--limit", "1001")
    assert 2 == code
    assert "1000" in err


def test_preview_of_an_unknown_connection_is_one_line(capsys: pytest.CaptureFixture[str],
                                                      workdir: Path) -> None:
    code, _, err = run(capsys, "mapping", "preview", "--connection", "nope", "stricter.yaml")
    assert (2, "error: no connection 'nope'\n") == (code, err)


def test_retention_is_set_per_tenant(capsys: pytest.CaptureFixture[str],
                                     workdir: Path) -> None:
    code, out, _ = run(capsys, "mapping", "retention", "--tenant", "hospital", "--days", "7")
    assert (0, "tenant hospital: recorded login claims kept 7 day(s)\n") == (code, out)
