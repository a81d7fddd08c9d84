"""``jitprov grants ...`` against a database, as an operator runs it; and expiry as
``users list`` and ``access-review`` show it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jitprov.services import accounts, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection
from tests.cli.test_cli import cli_context, run, workdir  # noqa: F401 - a fixture


@pytest.fixture
def cli_ctx(workdir: Path) -> Iterator[ServiceContext]:  # noqa: F811 - the fixture
    context = cli_context()
    setup_connection(context)
    yield context
    context.db.dispose()


@pytest.fixture
def account_id(cli_ctx: ServiceContext) -> str:
    result = provision_on_login(cli_ctx, "idp", nurse())
    assert result.account_id is not None
    return result.account_id


def test_add_list_and_revoke_a_manual_grant(capsys: pytest.CaptureFixture[str],
                                            cli_ctx: ServiceContext, account_id: str) -> None:
    code, out, _ = run(capsys, "grants", "add", "--tenant", "hospital", "--account", account_id,
                       "--role", "pharmacy:read", "--reason", "cover", "--expires-in-days", "3")
    assert code == 0
    assert out.startswith(f"account {account_id}: pharmacy:read granted (manual) until ")

    code, out, _ = run(capsys, "grants", "list", "--tenant", "hospital", "--json")
    listing = json.loads(out)
    [manual] = [g for g in listing["grants"] if g["source"] == "manual"]
    assert (manual["role"], manual["granted_by"]) == ("pharmacy:read", "cli")
    assert manual["expires_at"] is not None
    assert {(g["role"], g["source"]) for g in listing["grants"]} >= {
        ("nurse", "rule:idp/nurses"), ("staff", "rule:idp/default")}

    code, out, _ = run(capsys, "grants", "list", "--tenant", "hospital", "--account",
                       account_id)
    assert code == 0
    assert "\tpharmacy:read\tmanual\tby cli\t" in out

    code, out, _ = run(capsys, "grants", "revoke", "--tenant", "hospital", "--account",
                       account_id, "--role", "pharmacy:read", "--reason", "back")
    assert (code, out) == (0, f"account {account_id}: pharmacy:read revoked (manual)\n")
    [added, revoked] = [e for e in audit_export.iter_events(cli_ctx, "hospital")
                        if e.type.startswith("grant.")]
    assert (added.type, added.actor, revoked.type, revoked.data["reason"]) == (
        "grant.added", "cli", "grant.revoked", "back")


def test_a_rule_role_needs_block_and_unblock_lifts_it(capsys: pytest.CaptureFixture[str],
                                                      cli_ctx: ServiceContext,
                                                      account_id: str) -> None:
    base = ("--tenant", "hospital", "--account", account_id, "--role", "nurse")
    code, _, err = run(capsys, "grants", "revoke", *base, "--reason", "x")
    assert code == 2
    assert err == ("error: role nurse is granted by rule idp/nurses: it would come back at "
                   "the next login; revoke with --block to keep it off this account\n")

    code, out, _ = run(capsys, "grants", "revoke", *base, "--reason", "incident", "--block")
    assert (code, out) == (0, f"account {account_id}: nurse revoked (rule:idp/nurses); "
                              "blocked until `grants unblock`\n")
    provision_on_login(cli_ctx, "idp", nurse())
    code, out, _ = run(capsys, "users", "list", "--tenant", "hospital")
    assert "\tstaff\t" in out  # nurse stays off, the rule still matches
    code, out, _ = run(capsys, "grants", "list", "--tenant", "hospital")
    assert f"{account_id}\tana@hospital.example\tnurse\tBLOCKED\tby cli\t" in out
    assert out.rstrip().endswith("\tincident")
    code, _, err = run(capsys, "grants", "add", *base, "--reason", "x")
    assert (code, err) == (2, f"error: role nurse is blocked for account {account_id}; "
                              "unblock it first (grants unblock)\n")

    assert run(capsys, "grants", "unblock", *base, "--reason", "cleared")[0] == 0
    provision_on_login(cli_ctx, "idp", nurse())
    code, out, _ = run(capsys, "users", "list", "--tenant", "hospital")
    assert "\tnurse,staff\t" in out


@pytest.mark.parametrize(("argv", "message"), [
    (("grants", "add", "--tenant", "nowhere", "--account", "{a}", "--role", "r",
      "--reason", "x"), "error: no tenant 'nowhere'"),
    (("grants", "add", "--tenant", "hospital", "--account", "nobody", "--role", "r",
      "--reason", "x"), "error: no account 'nobody' in tenant hospital"),
    (("grants", "add", "--tenant", "hospital", "--account", "{a}", "--role", "bad role",
      "--reason", "x"), "error: invalid role name 'bad role'"),
    (("grants", "revoke", "--tenant", "hospital", "--account", "{a}", "--role", "auditor",
      "--reason", "x"), "error: account {a} does not hold role auditor"),
    (("grants", "unblock", "--tenant", "hospital", "--account", "{a}", "--role", "nurse",
      "--reason", "x"), "error: role nurse is not blocked for account {a}"),
    (("grants", "list", "--tenant", "hospital", "--account", "nobody"),
     "error: no account 'nobody' in tenant hospital"),
])
def test_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                          account_id: str, argv: tuple[str, ...],
                                          message: str) -> None:
    code, out, err = run(capsys, *(a.replace("{a}", account_id) for a in argv))
    assert code == 2
    assert err.startswith(message.replace("{a}", account_id))
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_an_expired_approval_leaves_users_list_and_the_access_review(
        capsys: pytest.CaptureFixture[str], cli_ctx: ServiceContext) -> None:
    # approved three days ago for one day (the CLI reads the real clock)
    past = dataclasses.replace(cli_ctx, clock=lambda: datetime.now(UTC) - timedelta(days=3))
    provision_on_login(past, "idp", nurse(groups=["Nurses", "Charge Nurses"]))
    [request] = accounts.list_requests(past, "hospital")
    accounts.decide_request(past, request.id, approve=True, reason="cover", approver="cli:a",
                            valid_for=timedelta(days=1))

    code, out, _ = run(capsys, "users", "list", "--tenant", "hospital", "--json")
    [user] = json.loads(out)
    assert (code, user["roles"]) == (0, ["nurse", "staff"])
    assert "charge-nurse" not in run(capsys, "users", "list", "--tenant", "hospital")[1]
    code, out, _ = run(capsys, "access-review", "--tenant", "hospital")
    assert (code, "charge-nurse" in out) == (0, False)
    code, out, _ = run(capsys, "grants", "list", "--tenant", "hospital", "--json")
    assert "charge-nurse" not in {g["role"] for g in json.loads(out)["grants"]}


def test_adding_the_same_role_again_replaces_the_grant(capsys: pytest.CaptureFixture[str],
                                                       cli_ctx: ServiceContext,
                                                       account_id: str) -> None:
    base = ("grants", "add", "--tenant", "hospital", "--account", account_id,
            "--role", "keys", "--reason")

    def manual() -> list[dict[str, object]]:
        _, out, _ = run(capsys, "grants", "list", "--tenant", "hospital", "--json")
        return [g for g in json.loads(out)["grants"] if g["source"] == "manual"]

    assert run(capsys, *base, "night", "--expires-in-days", "2")[0] == 0
    [first] = manual()
    assert run(capsys, *base, "week", "--expires-in-days", "7")[0] == 0
    [second] = manual()  # one grant, with the new expiry
    assert isinstance(first["expires_at"], str) and isinstance(second["expires_at"], str)
    later = datetime.fromisoformat(second["expires_at"]) - datetime.fromisoformat(
        first["expires_at"])  # the CLI runs on the real clock
    assert timedelta(days=5) <= later < timedelta(days=5, minutes=1)
    code, out, _ = run(capsys, *base, "for good")
    assert (code, out) == (0, f"account {account_id}: keys granted (manual)\n")
    [third] = manual()  # and now none
    assert third["expires_at"] is None
    assert [e.data["expires_at"] is None for e in audit_export.iter_events(cli_ctx, "hospital")
            if e.type == "grant.added"] == [False, False, True]
