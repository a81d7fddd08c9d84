"""``jitprov tenant add-domain | remove-domain | domains``: exit codes, one-line errors, the
audit trail of each change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitprov.cli.main import main
from jitprov.services import audit_export
from jitprov.services.context import build_context
from jitprov.settings import load_settings
from jitprov.store.database import Database
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def tenants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    """hospital (connection ``idp``) and clinic (``clinic-idp``) on the CLI's database."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    ctx = build_context(load_settings(), Database.connect(database_url, pool_size=1))
    setup_connection(ctx, tenant="hospital", slug="idp")
    setup_connection(ctx, tenant="clinic", slug="clinic-idp")
    ctx.db.dispose()


def domain_events(database_url: str, tenant: str) -> list[tuple[str, str, dict[str, object]]]:
    ctx = build_context(load_settings(), Database.connect(database_url, pool_size=1))
    try:
        return [(e.type, e.actor, dict(e.data)) for e in audit_export.iter_events(ctx, tenant)
                if e.type.startswith("domain.")]
    finally:
        ctx.db.dispose()


@pytest.mark.usefixtures("tenants")
def test_add_list_and_remove_a_domain(capsys: pytest.CaptureFixture[str],
                                      database_url: str) -> None:
    code, out, err = run(capsys, "tenant", "add-domain", "hospital", "Hospital.EXAMPLE",
                         "--connection", "idp", "--verified-by", "ana")
    assert (code, out, err) == (
        0, "domain hospital.example verified for tenant hospital: sign-in through idp\n", "")
    code, out, _ = run(capsys, "tenant", "add-domain", "hospital", "bücher.example",
                       "--connection", "idp")
    assert (code, out.split()[1]) == (0, "xn--bcher-kva.example")
    code, out, _ = run(capsys, "tenant", "domains", "hospital", "--json")
    listed = json.loads(out)
    assert code == 0
    assert [(d["domain"], d["connection"], d["verified_by"]) for d in listed] == [
        ("hospital.example", "idp", "cli:ana"), ("xn--bcher-kva.example", "idp", "cli")]
    code, out, _ = run(capsys, "tenant", "domains", "hospital")
    assert out.splitlines()[0].split() == ["DOMAIN", "CONNECTION", "VERIFIED_BY",
                                           "VERIFIED_AT"]
    code, out, _ = run(capsys, "tenant", "remove-domain", "hospital", "HOSPITAL.example")
    assert (code, out) == (0, "domain hospital.example removed from tenant hospital\n")
    assert run(capsys, "tenant", "domains", "clinic")[1] == "none\n"
    assert domain_events(database_url, "hospital") == [
        ("domain.verified", "cli:ana", {"domain": "hospital.example", "connection": "idp"}),
        ("domain.verified", "cli", {"domain": "xn--bcher-kva.example", "connection": "idp"}),
        ("domain.removed", "cli", {"domain": "hospital.example", "connection": "idp"})]


@pytest.mark.usefixtures("tenants")
@pytest.mark.parametrize(("argv", "said"), [
    (("add-domain", "clinic", "hospital.example", "--connection", "clinic-idp"),
     "error: the domain hospital.example is verified by another tenant"),
    (("add-domain", "hospital", "x.example", "--connection", "clinic-idp"),
     "error: connection 'clinic-idp' belongs to tenant 'clinic', not 'hospital'"),
    (("add-domain", "hospital", "localhost", "--connection", "idp"),
     "error: domain: 'localhost' is not a domain name"),
    (("add-domain", "nope", "x.example", "--connection", "idp"), "error: no tenant 'nope'"),
    (("add-domain", "hospital", "x.example", "--connection", "nope"),
     "error: no connection 'nope'"),
    (("add-domain", "hospital", "x.example"), "error: Missing option '--connection'"),
    (("remove-domain", "clinic", "hospital.example"),
     "error: the tenant has no verified domain hospital.example"),
    (("domains", "nope"), "error: no tenant 'nope'"),
])
def test_mistakes_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                          argv: tuple[str, ...], said: str) -> None:
    assert run(capsys, "tenant", "add-domain", "hospital", "hospital.example",
               "--connection", "idp")[0] == 0
    code, out, err = run(capsys, "tenant", *argv)
    assert code == 2
    assert err.startswith(said), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
