"""The CLI as an operator reads it: policies that change only what is given and say what is
stored, tables and JSON for lists, event names checked against the catalogue, settings and
arguments checked at start, a version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from jitprov import __version__
from jitprov.cli.main import main
from jitprov.core.events import WEBHOOK_EVENTS
from jitprov.services import admin, devices
from jitprov.services.context import ServiceContext
from jitprov.settings import SettingsError, load_settings
from jitprov.store.unit_of_work import UnitOfWork
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import make_client


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str,
            capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_WEBHOOK_ALLOW_PRIVATE", "1")
    assert run(capsys, "tenant", "create", "hospital", "--name", "St Mary")[0] == 0
    return tmp_path


def shown(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code, out, _ = run(capsys, "tenant", "show", "hospital", "--json")
    assert code == 0
    policy: dict[str, object] = json.loads(out)
    return policy


def test_a_policy_change_touches_only_the_options_given(capsys: pytest.CaptureFixture[str],
                                                        workdir: Path) -> None:
    code, out, _ = run(capsys, "tenant", "set-policy", "hospital", "--dormant-warn-days", "80",
                       "--dormant-deactivate-days", "90", "--delete-after-days", "30",
                       "--audit-retention-days", "400")
    assert code == 0
    assert "dormant warning:            after 80 days without a sign-in" in out
    assert "audit retention:            400 days" in out
    stored = shown(capsys)
    for option, key, value in [("--delete-after-days", "delete_after_days", 10),
                               ("--dormant-warn-days", "dormant_warn_days", 60),
                               ("--dormant-deactivate-days", "dormant_deactivate_days", 100),
                               ("--audit-retention-days", "audit_retention_days", 365),
                               ("--scim-delete", "scim_delete", "erase"),
                               ("--scim-on-existing", "scim_on_existing", "adopt")]:
        code, out, err = run(capsys, "tenant", "set-policy", "hospital", option, str(value))
        assert code == 0, err
        stored[key] = value
        assert shown(capsys) == stored, option  # the others kept
    assert "SCIM DELETE of a user:      erase" in out
    code, _, _ = run(capsys, "tenant", "set-policy", "hospital", "--dormant-warn-days", "0")
    stored["dormant_warn_days"] = None  # 0 turns one option off
    assert shown(capsys) == stored


def test_a_policy_the_kept_options_contradict_is_refused_and_nothing_changes(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    run(capsys, "tenant", "set-policy", "hospital", "--dormant-warn-days", "80",
        "--dormant-deactivate-days", "90")
    before = shown(capsys)
    code, _, err = run(capsys, "tenant", "set-policy", "hospital", "--dormant-warn-days", "100")
    assert code == 2
    assert err == ("error: the warning (100 days) must come before the deactivation "
                   "(90 days)\n")
    assert shown(capsys) == before
    code, _, err = run(capsys, "tenant", "set-policy", "hospital", "--clear",
                       "--dormant-warn-days", "5")
    assert code == 2 and "--clear" in err


def test_tenant_show_says_what_is_stored(capsys: pytest.CaptureFixture[str],
                                         workdir: Path) -> None:
    code, out, _ = run(capsys, "tenant", "show", "hospital")
    assert code == 0
    assert out.splitlines() == [
        "tenant hospital",
        "  dormant warning:            off",
        "  dormant deactivation:       off",
        "  deletion:                   off",
        "  audit retention:            forever",
        "  SCIM DELETE of a user:      deactivate",
        "  SCIM POST of a JIT account: conflict"]
    code, _, err = run(capsys, "tenant", "show", "nowhere")
    assert code == 2 and err.startswith("error: ")


def test_lists_are_tables_none_when_empty_and_json_on_request(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    for argv in (["webhooks", "list", "--tenant", "hospital"],
                 ["device", "list", "--tenant", "hospital"],
                 ["scim-token", "list", "--tenant", "hospital"],
                 ["approvals", "list", "--tenant", "hospital"],
                 ["connection", "list"], ["admin-token", "list"]):
        assert run(capsys, *argv)[1] == "none\n", argv
        assert json.loads(run(capsys, *argv, "--json")[1]) == [], argv
    run(capsys, "tenant", "create", "clinic", "--name", "Riverside Clinic")
    _, out, _ = run(capsys, "tenant", "list")
    assert out.splitlines() == ["SLUG      NAME", "clinic    Riverside Clinic",
                                "hospital  St Mary"]
    _code, out, _ = run(capsys, "tenant", "list", "--json")
    assert json.loads(out) == [{"slug": "clinic", "name": "Riverside Clinic"},
                               {"slug": "hospital", "name": "St Mary"}]


def test_webhook_events_are_checked_against_the_catalogue(capsys: pytest.CaptureFixture[str],
                                                          workdir: Path) -> None:
    code, _, err = run(capsys, "webhooks", "add", "--tenant", "hospital", "--url",
                       "http://127.0.0.1:9/hook", "--events", "account.created,bogus.event")
    assert code == 2
    assert err.startswith("error: unknown event type(s) bogus.event: use * or names from "
                          "`jitprov webhooks events`")
    assert run(capsys, "webhooks", "list", "--tenant", "hospital")[1] == "none\n"
    code, out, _ = run(capsys, "webhooks", "add", "--tenant", "hospital", "--url",
                       "http://127.0.0.1:9/hook", "--events", "account.created,role.granted")
    assert code == 0
    listed = json.loads(run(capsys, "webhooks", "list", "--tenant", "hospital", "--json")[1])
    assert listed[0]["events"] == ["account.created", "role.granted"]
    code, out, _ = run(capsys, "webhooks", "events", "--json")
    assert {row["event"] for row in json.loads(out)} == set(WEBHOOK_EVENTS)
    code, _, err = run(capsys, "webhooks", "deliveries", "--tenant", "hospital",
                       "--status", "bogus")
    assert code == 2
    assert err == "error: status must be one of pending, delivered, dead, not 'bogus'\n"


def test_the_admin_api_checks_event_names_too(ctx: ServiceContext) -> None:
    admin.create_tenant(ctx, "hospital")
    _, token = admin.create_admin_token(ctx, "ops")
    client: TestClient
    with make_client(ctx, dev_mode=True) as client:
        answer = client.post("/api/tenants/hospital/webhooks",
                             headers={"Authorization": f"Bearer {token}"},
                             json={"url": "http://127.0.0.1:9/hook",
                                   "event_types": ["account.created", "acount.updated"]})
        assert answer.status_code == 400
        assert "acount.updated" in answer.text
        answer = client.get("/api/tenants/hospital/webhook-deliveries?status=bogus",
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 400


def test_the_outbox_refuses_an_event_type_outside_the_catalogue(ctx: ServiceContext) -> None:
    admin.create_tenant(ctx, "hospital")
    with UnitOfWork(ctx.db) as uow:
        tenant = uow.config.tenants.get("hospital")
        with pytest.raises(ValueError, match=r"not in core\.events\.WEBHOOK_EVENTS"):
            uow.outbox.add(tenant.id, "acount.created", {}, ctx.clock())


def test_device_policy_is_printed_for_people(capsys: pytest.CaptureFixture[str],
                                             workdir: Path) -> None:
    code, out, _ = run(capsys, "device", "set-policy", "--tenant", "hospital", "--shifts",
                       "07:00,19:00", "--timezone", "Europe/Lisbon", "--idle-seconds", "120")
    assert code == 0
    assert out.splitlines() == ["tenant hospital frontline policy:",
                                "  idle lock after:       120 s",
                                "  shift boundaries:      07:00, 19:00 (Europe/Lisbon)",
                                "  IdP roles trusted for: 168 h",
                                "  offline sessions last: 30 min",
                                "  page language:         each reader's browser language"]


def test_a_device_policy_change_touches_only_the_options_given(
        capsys: pytest.CaptureFixture[str], workdir: Path, ctx: ServiceContext) -> None:
    stored = devices.get_policy(ctx, "hospital").as_dict()
    for option, value, key, kept in [
            ("--idle-seconds", "120", "idle_seconds", 120),
            ("--shifts", "07:00,19:00", "shifts", ["07:00", "19:00"]),
            ("--timezone", "Europe/Lisbon", "timezone", "Europe/Lisbon"),
            ("--roles-max-age-hours", "24", "roles_max_age_seconds", 24 * 3600),
            ("--offline-minutes", "10", "offline_seconds", 600),
            ("--locale", "pt", "locale", "pt")]:
        code, out, err = run(capsys, "device", "set-policy", "--tenant", "hospital",
                             option, value)
        assert code == 0, err
        stored[key] = kept
        assert devices.get_policy(ctx, "hospital").as_dict() == stored, option  # others kept
    assert out.splitlines()[-1] == "  page language:         pt"
    code, out, _ = run(capsys, "device", "set-policy", "--tenant", "hospital",
                       "--locale", "browser")
    stored["locale"] = ""  # back to each reader's browser language
    assert (code, devices.get_policy(ctx, "hospital").as_dict()) == (0, stored)


def test_a_language_that_is_not_shipped_is_refused_in_one_line(
        capsys: pytest.CaptureFixture[str], workdir: Path, ctx: ServiceContext) -> None:
    code, out, err = run(capsys, "device", "set-policy", "--tenant", "hospital",
                         "--locale", "fr")
    assert (code, out) == (2, "")
    assert err == "error: language 'fr' is not one of the shipped ones: en, pt, es\n"
    assert devices.get_policy(ctx, "hospital").locale == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"jitprov {__version__}\n", "")


@pytest.mark.parametrize("ttl", ["-5", "0", "abc", "99999999"])
def test_a_session_lifetime_that_is_not_a_positive_duration_is_refused(ttl: str) -> None:
    with pytest.raises(SettingsError, match="JITPROV_SESSION_TTL_MINUTES must be"):
        load_settings({"JITPROV_SECRET_KEY": TEST_SECRET_KEY,
                       "JITPROV_SESSION_TTL_MINUTES": ttl})


@pytest.mark.parametrize("argv", [
    ["keys", "rotate", "--overlap-hours", "999999999"],
    ["users", "list", "--tenant", "x", "--database-url", "sqlite:///"],
    ["users", "list", "--tenant", "x", "--database-url", "sqlite:///notes.txt"],
    ["db", "upgrade", "--database-url", "sqlite:///notes.txt"],
    ["tenant", "set-policy", "hospital", "--delete-after-days", "99999999"],
])
def test_bad_values_are_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str],
                                                 workdir: Path, argv: list[str]) -> None:
    (workdir / "notes.txt").write_text("not a database\n" * 100)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


def test_a_usage_mistake_is_one_line_naming_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "users", "list")
    assert (code, err) == (2, "error: Missing option '--tenant'. "
                              "(see `jitprov users list --help`)\n")
