"""``jitprov links``: list, approve, refuse and clear the links a first login asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitprov.services.common import LoginRefused
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection
from tests.cli.test_cli import cli_context, run
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    return tmp_path


def queue_a_link() -> str:
    """A tenant under ``linking.by_email: pending``, an account, and a second identity of the
    same email whose first login asked for the link; returns the account id."""
    ctx = cli_context()
    setup_connection(ctx, linking="pending")
    account_id = provision_on_login(ctx, "idp", nurse(subject="u-1")).account_id
    with pytest.raises(LoginRefused):
        provision_on_login(ctx, "idp", nurse(subject="u-2"))
    ctx.db.dispose()
    return account_id


def second_login() -> str:
    ctx = cli_context()
    try:
        return provision_on_login(ctx, "idp", nurse(subject="u-2")).account_id
    finally:
        ctx.db.dispose()


def test_links_list_and_approve(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    account_id = queue_a_link()

    code, out, _ = run(capsys, "links", "list", "--tenant", "hospital", "--json")
    assert code == 0
    [link] = json.loads(out)
    assert (link["status"], link["subject"], link["account_id"]) == ("pending", "u-2",
                                                                     account_id)
    assert link["claims"]["email"] == "ana@hospital.example"
    code, out, _ = run(capsys, "links", "list", "--tenant", "hospital")
    assert out.startswith(f"{link['id']}\tidp/u-2\t-> ana@hospital.example (active)")

    code, out, err = run(capsys, "links", "approve", str(link["id"]), "--tenant", "hospital",
                         "--reason", "same nurse", "--approver", "ops")
    assert (code, err) == (0, "")
    assert out == f"link {link['id']}: idp/u-2 now signs in to ana@hospital.example\n"
    assert second_login() == account_id
    code, out, _ = run(capsys, "links", "list", "--tenant", "hospital")
    assert out == "tenant hospital: no pending links\n"


def test_links_refuse_holds_until_cleared(capsys: pytest.CaptureFixture[str],
                                          workdir: Path) -> None:
    queue_a_link()
    [link] = json.loads(run(capsys, "links", "list", "--tenant", "hospital", "--json")[1])

    code, out, _ = run(capsys, "links", "refuse", str(link["id"]), "--tenant", "hospital",
                       "--reason", "not her")
    assert code == 0
    assert out == (f"link {link['id']}: refused; idp/u-2 cannot sign in until "
                   f"`jitprov links clear {link['id']} --tenant hospital --reason ...`\n")
    with pytest.raises(LoginRefused) as refused:
        second_login()
    assert refused.value.code == "link_refused_by_admin"
    code, out, _ = run(capsys, "links", "list", "--tenant", "hospital", "--refused")
    assert out.startswith(f"{link['id']}\tidp/u-2")

    code, _, _ = run(capsys, "links", "clear", str(link["id"]), "--tenant", "hospital",
                     "--reason", "mistake")
    assert code == 0
    with pytest.raises(LoginRefused) as asked:
        second_login()
    assert asked.value.code == "pending_link"


def test_links_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str],
                                          workdir: Path) -> None:
    queue_a_link()
    [link] = json.loads(run(capsys, "links", "list", "--tenant", "hospital", "--json")[1])

    for argv, message in (
            (("approve", "4242", "--tenant", "hospital", "--reason", "x"),
             "error: no pending link 4242\n"),
            (("approve", str(link["id"]), "--tenant", "nowhere", "--reason", "x"),
             "error: no tenant 'nowhere'\n"),
            (("approve", str(link["id"]), "--tenant", "hospital", "--reason", " "),
             "error: a reason is required\n"),
            (("clear", str(link["id"]), "--tenant", "hospital", "--reason", "x"),
             f"error: pending link {link['id']} is not refused\n")):
        code, out, err = run(capsys, "links", *argv)
        assert (code, out, err) == (2, "", message)
    code, _, err = run(capsys, "links", "list", "--tenant", "nowhere")
    assert code == 2
