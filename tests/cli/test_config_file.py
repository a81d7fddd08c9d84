"""``jitprov export`` and ``jitprov apply`` through the console script's ``main``, on SQLite
and PostgreSQL: a configuration built by apply, a changed mapping planned with its impact
preview, idempotence without audit events, refusals naming file, line and key, the
rollback of a failure mid-apply, ``--prune``, and the round trip through export."""

from __future__ import annotations

import base64
import hashlib
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from jitprov.cli.main import main
from jitprov.protocols.saml import generate_sp_keypair
from jitprov.services import admin, audit_export, config_file, webhooks
from jitprov.services.context import ServiceContext, build_context
from jitprov.services.login.flow import provision_on_login
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.testing.builders import HOSPITAL, nurse
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import make_client

OKTA_SECRET = "okta-client-secret-value"
HOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
IDP_CERT = generate_sp_keypair("test idp")[1]
MAPPING = HOSPITAL.format(linking="never")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    """The CLI's environment: the test database, the key, the secrets the files name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver is on loopback
    monkeypatch.setenv("CFG_HOSPITAL_OKTA_CLIENT_SECRET", OKTA_SECRET)
    monkeypatch.setenv("CFG_HOSPITAL_WEBHOOK_1_SECRET", HOOK_SECRET)
    return tmp_path


@pytest.fixture
def ctx(database_url: str) -> Iterator[ServiceContext]:
    """A context on the CLI's database, to look at what the commands did."""
    context = build_context(Settings(secret_key=TEST_SECRET_KEY),
                            Database.connect(database_url, pool_size=1))
    yield context
    context.db.dispose()


def hospital_file(*, okta_mapping: str = MAPPING, extra_tenant: str = "",
                  webhook_url: str = "http://127.0.0.1:9/hooks") -> str:
    """A tenant with an OIDC and a SAML connection, a verified domain, a webhook and
    policies."""
    indented = textwrap.indent(okta_mapping, " " * 10)
    saml_mapping = textwrap.indent("profile:\n  email: email\ngroups: groups\n", " " * 10)
    cert = textwrap.indent(IDP_CERT, " " * 12).rstrip("\n")
    return f"""\
version: 1
tenants:
  hospital:
    name: St Mary's
    policy:
      dormant_warn_days: 80
      dormant_deactivate_days: 90
      audit_retention_days: 400
      scim_delete: erase
    frontline:
      idle_seconds: 120
      shifts: ["07:00", "19:00"]
      timezone: Europe/Lisbon
      locale: pt
    connections:
      okta:
        mapping: |
{indented}
        oidc:
          issuer: https://okta.example
          client_id: jitprov
          client_secret: ${{CFG_HOSPITAL_OKTA_CLIENT_SECRET}}
          scopes: [openid, email, profile, groups]
      adfs:
        enabled: false
        mapping: |
{saml_mapping}
        saml:
          idp_entity_id: https://adfs.example/adfs/services/trust
          idp_sso_url: https://adfs.example/adfs/ls/
          idp_certs:
          - |
{cert}
          require_signed_assertion: true
          require_mfa: true
          accepted_auth_contexts:
          - http://schemas.microsoft.com/claims/multipleauthn
    domains:
      hospital.example: okta
    webhooks:
    - url: {webhook_url}
      events: [account.created, account.deactivated]
      secret: ${{CFG_HOSPITAL_WEBHOOK_1_SECRET}}
{extra_tenant}"""


def events(ctx: ServiceContext, tenant: str) -> list[tuple[str, str]]:
    return [(e.type, e.actor) for e in audit_export.iter_events(ctx, tenant)]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def test_builds_plans_a_mapping_change_with_its_impact_applies_and_round_trips(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    first = hospital_file()
    (cli / "jitprov.yaml").write_text(first)
    code, out, err = run(capsys, "apply", "-f", "jitprov.yaml")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "create tenant hospital",
        "update policy hospital: dormant_warn_days, dormant_deactivate_days, "
        "audit_retention_days, scim_delete",
        "update frontline hospital: idle_seconds, shifts, timezone, locale",
        "create connection hospital/okta",
        "create connection hospital/adfs",
        "create domain hospital/hospital.example",
        "create webhook hospital/http://127.0.0.1:9/hooks",
        f"7 change(s) applied as apply:{digest(first)}"]
    okta, adfs = admin.get_connection(ctx, "okta"), admin.get_connection(ctx, "adfs")
    assert ctx.secretbox.open(okta.secrets or "")["client_secret"] == OKTA_SECRET
    assert (adfs.enabled, adfs.config["require_signed_assertion"]) == (False, True)
    assert webhooks.endpoint_secret(ctx, webhooks.list_endpoints(ctx, "hospital")[0].id) \
        == HOOK_SECRET
    assert {actor for _, actor in events(ctx, "hospital")} == {f"apply:{digest(first)}"}
    provision_on_login(ctx, "okta", nurse())  # a recorded login for the preview

    changed = hospital_file(okta_mapping=MAPPING.replace("grant: [nurse]",
                                                         "grant: [nurse, ward-3]"))
    (cli / "jitprov.yaml").write_text(changed)
    code, out, _ = run(capsys, "apply", "-f", "jitprov.yaml", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        "update connection hospital/okta: mapping",
        "    1 recorded login(s) replayed: 1 changed, 0 newly denied, 0 no longer denied, "
        "1 role(s) gained, 0 lost",
        "    ana@hospital.example (u-1):",
        "      + ward-3 (rule nurses)",
        "(dry run: 1 change(s) planned, nothing was written)"]
    assert "ward-3" not in admin.get_connection(ctx, "okta").mapping
    code, out, _ = run(capsys, "apply", "-f", "jitprov.yaml")
    assert (code, out.splitlines()[0]) == (0, "update connection hospital/okta: mapping")
    assert "ward-3" in admin.get_connection(ctx, "okta").mapping
    assert events(ctx, "hospital")[-1] == ("connection.mapping_changed",
                                           f"apply:{digest(changed)}")

    code, exported, _ = run(capsys, "export")
    assert code == 0 and OKTA_SECRET not in exported and HOOK_SECRET not in exported
    (cli / "exported.yaml").write_text(exported)
    assert run(capsys, "apply", "-f", "exported.yaml")[1] == "no changes\n"
    written, read_back = yaml.safe_load(changed), yaml.safe_load(exported)
    hospital = read_back["tenants"]["hospital"]
    assert hospital["connections"]["okta"]["mapping"] == \
        written["tenants"]["hospital"]["connections"]["okta"]["mapping"]
    assert hospital["connections"]["okta"]["oidc"]["client_secret"] == \
        "${CFG_HOSPITAL_OKTA_CLIENT_SECRET}"
    assert hospital["connections"]["adfs"]["saml"]["idp_certs"] == [IDP_CERT]
    assert hospital["webhooks"] == [{
        "url": "http://127.0.0.1:9/hooks", "events": ["account.created",
                                                      "account.deactivated"],
        "secret": "${CFG_HOSPITAL_WEBHOOK_1_SECRET}"}]
    assert (hospital["name"], hospital["policy"]["scim_delete"],
            hospital["frontline"]["shifts"], hospital["frontline"]["locale"],
            hospital["domains"]) == (
        "St Mary's", "erase", ["07:00", "19:00"], "pt", {"hospital.example": "okta"})


def test_applying_the_same_file_twice_changes_nothing_and_writes_no_audit_event(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    (cli / "jitprov.yaml").write_text(hospital_file())
    assert run(capsys, "apply", "-f", "jitprov.yaml")[0] == 0
    before = events(ctx, "hospital")
    assert run(capsys, "apply", "-f", "jitprov.yaml") == (0, "no changes\n", "")
    assert run(capsys, "apply", "-f", "jitprov.yaml", "--dry-run") == (
        0, "(dry run: 0 change(s) planned, nothing was written)\n", "")
    assert events(ctx, "hospital") == before


def test_a_setting_left_out_of_the_file_goes_back_to_its_default(
        cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cli / "jitprov.yaml").write_text(hospital_file())
    run(capsys, "apply", "-f", "jitprov.yaml")
    (cli / "jitprov.yaml").write_text(hospital_file().replace("      scim_delete: erase\n", ""))
    assert run(capsys, "apply", "-f", "jitprov.yaml")[1].splitlines()[0] == \
        "update policy hospital: scim_delete"
    assert run(capsys, "tenant", "show", "hospital")[0] == 0
    out = run(capsys, "tenant", "show", "hospital", "--json")[1]
    assert yaml.safe_load(out)["scim_delete"] == "deactivate"


def test_the_idp_fields_of_a_metadata_url_are_left_to_the_metadata_refresh(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    with_url = hospital_file().replace(
        "          require_signed_assertion: true\n",
        "          require_signed_assertion: true\n"
        "          metadata_url: https://adfs.example/FederationMetadata.xml\n")
    (cli / "jitprov.yaml").write_text(with_url)
    run(capsys, "apply", "-f", "jitprov.yaml")
    other_cert = textwrap.indent(generate_sp_keypair("rolled over")[1], " " * 12)
    rolled = with_url.replace(textwrap.indent(IDP_CERT, " " * 12), other_cert).replace(
        "https://adfs.example/adfs/ls/", "https://adfs.example/adfs/ls2/")
    assert rolled != with_url
    (cli / "jitprov.yaml").write_text(rolled)
    assert run(capsys, "apply", "-f", "jitprov.yaml")[1] == "no changes\n"
    (cli / "jitprov.yaml").write_text(rolled.replace("  metadata_url: https://adfs.example/",
                                                     "  metadata_url: https://adfs2.example/"))
    assert run(capsys, "apply", "-f", "jitprov.yaml")[1].splitlines()[0] == \
        "update connection hospital/adfs: idp_sso_url, idp_certs, metadata_url"
    assert admin.get_connection(ctx, "adfs").config["idp_sso_url"] == \
        "https://adfs.example/adfs/ls2/"


def test_authn_requests_left_unsigned_by_the_file(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    """``sign_authn_requests: false`` is a setting like the others: planned, applied, then
    the connection's login start sends no signature; with ``want_authn_requests_signed`` (the
    file stating what the IdP's metadata says) it signs again; back out of the file, signed."""
    signed = hospital_file().replace("        enabled: false\n", "")  # adfs enabled
    (cli / "jitprov.yaml").write_text(signed)
    run(capsys, "apply", "-f", "jitprov.yaml")
    lean = signed.replace("          require_signed_assertion: true\n",
                          "          require_signed_assertion: true\n"
                          "          sign_authn_requests: false\n")
    (cli / "jitprov.yaml").write_text(lean)
    assert run(capsys, "apply", "-f", "jitprov.yaml")[1].splitlines()[0] == \
        "update connection hospital/adfs: sign_authn_requests"
    client = make_client(ctx, dev_mode=False)
    location = client.get("/sso/adfs/login").headers["location"]
    assert "SAMLRequest=" in location and "Signature=" not in location
    assert b'AuthnRequestsSigned="false"' in client.get("/sso/adfs/saml/metadata").content
    # the file says the IdP asks for signed requests: signed, whatever the connection's choice
    (cli / "jitprov.yaml").write_text(lean.replace(
        "          sign_authn_requests: false\n",
        "          sign_authn_requests: false\n          want_authn_requests_signed: true\n"))
    assert run(capsys, "apply", "-f", "jitprov.yaml")[1].splitlines()[0] == \
        "update connection hospital/adfs: want_authn_requests_signed"
    ctx.connections.forget("adfs")
    assert "&Signature=" in client.get("/sso/adfs/login").headers["location"]
    assert b'AuthnRequestsSigned="true"' in client.get("/sso/adfs/saml/metadata").content
    (cli / "jitprov.yaml").write_text(signed)
    assert run(capsys, "apply", "-f", "jitprov.yaml")[1].splitlines()[0] == \
        "update connection hospital/adfs: want_authn_requests_signed, sign_authn_requests"
    ctx.connections.forget("adfs")
    assert "&Signature=" in client.get("/sso/adfs/login").headers["location"]


def test_a_changed_secret_is_applied_without_showing_it(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (cli / "jitprov.yaml").write_text(hospital_file())
    run(capsys, "apply", "-f", "jitprov.yaml")
    monkeypatch.setenv("CFG_HOSPITAL_OKTA_CLIENT_SECRET", "rotated-secret")
    code, out, err = run(capsys, "apply", "-f", "jitprov.yaml")
    assert (code, out.splitlines()[0]) == (
        0, "update connection hospital/okta: client_secret")
    assert "rotated-secret" not in out + err
    okta = admin.get_connection(ctx, "okta")
    assert ctx.secretbox.open(okta.secrets or "")["client_secret"] == "rotated-secret"
    assert [e.data for e in audit_export.iter_events(ctx, "hospital")
            if e.type == "connection.updated"] == [
        {"connection": "okta", "changed": ["client_secret"], "version": okta.version}]


#: (what, (text, replaced by), the line the error names (its text), the error)
BAD_FILES = [
    ("unknown key", ("          client_id: jitprov\n",
                     "          client_id: jitprov\n          client_idd: x\n"),
     "client_idd: x",
     "tenants.hospital.connections.okta.oidc.client_idd: Extra inputs are not permitted"),
    ("wrong type", ("      idle_seconds: 120", '      idle_seconds: "120"'),
     'idle_seconds: "120"',
     "tenants.hospital.frontline.idle_seconds: Input should be a valid integer"),
    ("unshipped language", ("      locale: pt", "      locale: fr"),
     "locale: fr",
     "tenants.hospital.frontline.locale: Value error, language 'fr' is not one of the "
     "shipped ones: en, pt, es"),
    ("jitprov's own setting", ("CFG_HOSPITAL_OKTA_CLIENT_SECRET}", "JITPROV_SECRET_KEY}"),
     "JITPROV_SECRET_KEY}",
     "tenants.hospital.connections.okta.oidc.client_secret: ${JITPROV_SECRET_KEY}: a "
     "reference may not name JITPROV_* or PG* variables"),
    ("libpq's setting", ("CFG_HOSPITAL_WEBHOOK_1_SECRET}", "PGPASSWORD}"),
     "PGPASSWORD}",
     "tenants.hospital.webhooks[0].secret: ${PGPASSWORD}: a reference may not name "
     "JITPROV_* or PG* variables"),
    ("missing env", ("CFG_HOSPITAL_WEBHOOK_1_SECRET}", "CFG_NOT_SET}"),
     "CFG_NOT_SET}",
     "tenants.hospital.webhooks[0].secret: the environment variable CFG_NOT_SET is "
     "not set"),
    ("mapping", ("contains(groups, 'Nurses')", "contains(groups, 'Nurses'"),
     "contains(groups, 'Nurses'\n",
     "tenants.hospital.connections.okta.mapping: roles.rules[1] (id nurses): when: "
     "invalid expression"),
    ("duplicate", ("      hospital.example: okta\n",
                   "      hospital.example: okta\n      hospital.example: adfs\n"),
     "hospital.example: adfs",
     "tenants.hospital.domains.hospital.example: this key is given twice"),
    ("oidc rule", ("scopes: [openid, email, profile, groups]", "scopes: [email]"),
     "scopes: [email]",
     "tenants.hospital.connections.okta.oidc.scopes: Value error, the scopes must include "
     "openid"),
    ("domain's connection", ("hospital.example: okta", "hospital.example: nowhere"),
     "hospital.example: nowhere",
     "tenants.hospital.domains.hospital.example: no connection 'nowhere' in this "
     "tenant's connections"),
    ("saml", ("idp_sso_url: https://adfs.example/adfs/ls/",
              "idp_sso_url: http://adfs.example/adfs/ls/"),
     "idp_sso_url: http://",
     "tenants.hospital.connections.adfs.saml.idp_sso_url: SAML connection idp_sso_url: "
     "must be an https URL"),
]


@pytest.mark.parametrize(("edit", "marker", "said"), [b[1:] for b in BAD_FILES],
                         ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_is_refused_whole_naming_its_line_and_key(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], marker: str,
        said: str) -> None:
    monkeypatch.setenv("PGPASSWORD", "the-database-password")  # set, and still refused
    text = hospital_file()
    assert edit[0] in text
    text = text.replace(edit[0], edit[1], 1)
    (cli / "jitprov.yaml").write_text(text)
    code, out, err = run(capsys, "apply", "-f", "jitprov.yaml")
    assert (code, out) == (2, "")
    line = text[:text.index(marker)].count("\n") + 1
    assert err.startswith(f"error: jitprov.yaml:{line}: {said}"), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert admin.list_tenants(ctx) == []


def test_a_failure_mid_apply_rolls_every_change_back(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook step (after the tenant, its policies, connections and domain were
    written in the transaction) is refused by the outbound guard: nothing stays."""
    monkeypatch.delenv("JITPROV_WEBHOOK_ALLOW_PRIVATE")
    text = hospital_file()
    (cli / "jitprov.yaml").write_text(text)
    code, out, err = run(capsys, "apply", "-f", "jitprov.yaml")
    line = text[:text.index("- url:")].count("\n") + 1
    assert (code, out) == (2, "")
    assert err.startswith(f"error: jitprov.yaml:{line}: tenants.hospital.webhooks[0]: create "
                          "webhook hospital/http://127.0.0.1:9/hooks: the webhook URL "
                          "cannot be used"), err
    assert admin.list_tenants(ctx) == [] and admin.list_connections(ctx) == []


def test_a_conflict_with_another_tenant_rolls_back_the_whole_file(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    other = """\
version: 1
tenants:
  clinic:
    connections:
      clinic-idp: {mapping: "groups: groups\\n", mock: {}}
    domains: {hospital.example: clinic-idp}
"""
    (cli / "clinic.yaml").write_text(other)
    assert run(capsys, "apply", "-f", "clinic.yaml")[0] == 0
    before = events(ctx, "clinic")
    (cli / "jitprov.yaml").write_text(hospital_file())
    code, _, err = run(capsys, "apply", "-f", "jitprov.yaml")
    assert code == 2
    assert "tenants.hospital.domains.hospital.example: create domain " \
           "hospital/hospital.example: the domain hospital.example is verified by another " \
           "tenant" in err
    assert [t.slug for t in admin.list_tenants(ctx)] == ["clinic"]
    assert events(ctx, "clinic") == before


def test_prune_deletes_only_with_the_option_and_only_in_the_files_tenants(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    clinic = """\
  clinic:
    connections:
      clinic-idp: {mapping: "groups: groups\\n", mock: {}}
"""
    (cli / "jitprov.yaml").write_text(hospital_file(extra_tenant=clinic))
    assert run(capsys, "apply", "-f", "jitprov.yaml")[0] == 0
    smaller = yaml.safe_load(hospital_file())
    hospital = smaller["tenants"]["hospital"]
    del hospital["connections"]["adfs"]
    hospital["domains"], hospital["webhooks"] = {}, []
    (cli / "smaller.yaml").write_text(yaml.safe_dump(smaller))
    assert run(capsys, "apply", "-f", "smaller.yaml") == (0, "no changes\n", "")
    code, out, _ = run(capsys, "apply", "-f", "smaller.yaml", "--prune")
    assert code == 0
    assert out.splitlines()[:3] == [
        "delete domain hospital/hospital.example",
        "delete webhook hospital/http://127.0.0.1:9/hooks",
        "delete connection hospital/adfs"]
    assert [c.slug for c in admin.list_connections(ctx)] == ["clinic-idp", "okta"]
    assert webhooks.list_endpoints(ctx, "hospital") == []
    assert [(t, a.split(":")[0]) for t, a in events(ctx, "hospital")][-3:] == [
        ("domain.removed", "apply"), ("webhook.removed", "apply"),
        ("connection.removed", "apply")]


def test_a_connection_with_identities_is_not_pruned(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    (cli / "jitprov.yaml").write_text(hospital_file())
    run(capsys, "apply", "-f", "jitprov.yaml")
    provision_on_login(ctx, "okta", nurse())
    smaller = yaml.safe_load(hospital_file())
    del smaller["tenants"]["hospital"]["connections"]["okta"]
    smaller["tenants"]["hospital"]["domains"] = {}
    (cli / "smaller.yaml").write_text(yaml.safe_dump(smaller))
    code, _, err = run(capsys, "apply", "-f", "smaller.yaml", "--prune")
    assert code == 2 and "connection 'okta' has 1 identities: disable it instead" in err
    assert {c.slug for c in admin.list_connections(ctx)} == {"okta", "adfs"}
    assert [d for d in yaml.safe_load(run(capsys, "export")[1])["tenants"]["hospital"]
            ["domains"]] == ["hospital.example"]


def test_a_mapping_file_is_read_relative_to_the_configuration_file(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    (cli / "conf" / "mappings").mkdir(parents=True)
    (cli / "conf" / "mappings" / "okta.yaml").write_text(MAPPING)
    text = hospital_file().replace("        mapping: |\n" + textwrap.indent(MAPPING, " " * 10),
                                   "        mapping: {file: mappings/okta.yaml}\n", 1)
    (cli / "conf" / "jitprov.yaml").write_text(text)
    code, _, err = run(capsys, "apply", "-f", "conf/jitprov.yaml")
    assert (code, err) == (0, "")
    assert admin.get_connection(ctx, "okta").mapping == MAPPING
    (cli / "conf" / "mappings" / "okta.yaml").write_text(MAPPING + "bogus: 1\n")
    code, _, err = run(capsys, "apply", "-f", "conf/jitprov.yaml")
    assert code == 2
    line = text[:text.index("mapping: {file:")].count("\n") + 1
    assert err.startswith(f"error: conf/jitprov.yaml:{line}: "
                          "tenants.hospital.connections.okta.mapping.file: "
                          "mappings/okta.yaml:"), err


def test_export_of_one_tenant_and_of_none(
        cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "export") == (0, run(capsys, "export")[1], "")
    assert "tenants: {}" in run(capsys, "export")[1]
    code, _, err = run(capsys, "export", "--tenant", "nowhere")
    assert (code, err) == (2, "error: no tenant 'nowhere'\n")


def test_a_connections_kind_and_tenant_cannot_change(
        cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cli / "jitprov.yaml").write_text(hospital_file())
    run(capsys, "apply", "-f", "jitprov.yaml")
    as_mock = yaml.safe_load(hospital_file())
    okta = as_mock["tenants"]["hospital"]["connections"]["okta"]
    del okta["oidc"]
    okta["mock"] = {}
    (cli / "mock.yaml").write_text(yaml.safe_dump(as_mock))
    code, _, err = run(capsys, "apply", "-f", "mock.yaml")
    assert code == 2
    assert "tenants.hospital.connections.okta.mock: connection okta is oidc: a " \
           "connection's kind cannot change" in err
    moved = {"version": 1, "tenants": {"clinic": {"connections": {
        "okta": {"mapping": "groups: groups\n", "mock": {}}}}}}
    (cli / "moved.yaml").write_text(yaml.safe_dump(moved))
    code, _, err = run(capsys, "apply", "-f", "moved.yaml")
    assert code == 2
    assert err.startswith("error: moved.yaml:4: tenants.clinic.connections.okta: connection "
                          "okta belongs to tenant hospital"), err


@pytest.mark.parametrize(("text", "line", "said"), [
    ("version: 1\ntenants:\n  a: &t {name: A}\n  b: *t\n", 3,
     "tenants.b: YAML aliases (*name) are not supported"),
    ("version: 1\ntenants: &x\n  a: [*x]\n", 2, "tenants.a[0]: YAML aliases"),
    ("version: 1\ntenants:\n  a: {name: [}\n", 3, "not valid YAML"),
    ("- just a list\n", 1, "the file must be a mapping with version and tenants"),
])
def test_yaml_that_is_not_a_plain_document_is_refused(
        cli: Path, capsys: pytest.CaptureFixture[str], text: str, line: int,
        said: str) -> None:
    (cli / "jitprov.yaml").write_text(text)
    code, _, err = run(capsys, "apply", "-f", "jitprov.yaml")
    assert code == 2 and err.startswith(f"error: jitprov.yaml:{line}: {said}"), err
    assert len(err.splitlines()) == 1



def test_a_webhook_url_that_may_carry_a_token_is_exported_as_a_reference(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A query or a token-like path segment (Slack's, Discord's) stays out of the exported
    file and out of the plan; the file it makes applies as no change and round-trips."""
    token = "Zx81kQ2mN7pL4vR9tB3cW6yH"
    url = f"http://127.0.0.1:9/services/T01/B02/{token}?sig=s3cr3t"
    (cli / "jitprov.yaml").write_text(hospital_file(webhook_url=url))
    code, out, err = run(capsys, "apply", "-f", "jitprov.yaml")
    assert (code, err) == (0, "")
    assert "create webhook hospital/http://127.0.0.1:9/services/T01/B02/..." in out
    assert token not in out and "s3cr3t" not in out
    code, exported, _ = run(capsys, "export")
    assert code == 0 and token not in exported and "s3cr3t" not in exported
    hook = yaml.safe_load(exported)["tenants"]["hospital"]["webhooks"][0]
    assert hook["url"] == "${CFG_HOSPITAL_WEBHOOK_1_URL}"
    (cli / "exported.yaml").write_text(exported)
    code, _, err = run(capsys, "apply", "-f", "exported.yaml")
    assert code == 2 and "the environment variable CFG_HOSPITAL_WEBHOOK_1_URL is not set" \
        in err
    monkeypatch.setenv("CFG_HOSPITAL_WEBHOOK_1_URL", url)
    assert run(capsys, "apply", "-f", "exported.yaml") == (0, "no changes\n", "")
    assert run(capsys, "export")[1] == exported
    assert [h.url for h in webhooks.list_endpoints(ctx, "hospital")] == [url]
    monkeypatch.setenv("CFG_HOSPITAL_WEBHOOK_1_URL", "http://127.0.0.1:9/other?sig=new")
    code, out, _ = run(capsys, "apply", "-f", "exported.yaml", "--prune")
    assert (code, out.splitlines()[:2]) == (0, [
        "delete webhook hospital/http://127.0.0.1:9/services/T01/B02/...",
        "create webhook hospital/http://127.0.0.1:9/other"])
    assert [h.url for h in webhooks.list_endpoints(ctx, "hospital")] == [
        "http://127.0.0.1:9/other?sig=new"]


def mapping_file(cli: Path, name: str) -> str:
    """The hospital file in ``cli/conf/``, okta's mapping read from ``name``."""
    (cli / "conf").mkdir(exist_ok=True)
    text = hospital_file().replace("        mapping: |\n" + textwrap.indent(MAPPING, " " * 10),
                                   f"        mapping: {{file: '{name}'}}\n", 1)
    (cli / "conf" / "jitprov.yaml").write_text(text)
    return text


def test_a_mapping_file_stays_inside_the_configuration_files_directory(
        cli: Path, capsys: pytest.CaptureFixture[str], ctx: ServiceContext) -> None:
    outside = cli / "secret.yaml"
    outside.write_text(MAPPING)
    (cli / "conf").mkdir()
    (cli / "conf" / "link.yaml").symlink_to(outside)
    (cli / "conf" / "big.yaml").write_bytes(b"#" * (config_file.MAX_FILE_BYTES + 1))
    (cli / "conf" / "dir.yaml").mkdir()
    os.mkfifo(cli / "conf" / "fifo.yaml")  # would block a plain read
    for name, said in [
            (str(outside), f"{outside}: give a path relative to the configuration file's "
                           "directory, without '..'"),
            ("../secret.yaml", "../secret.yaml: give a path relative"),
            ("sub/../../secret.yaml", "sub/../../secret.yaml: give a path relative"),
            ("link.yaml", "link.yaml leads outside the configuration file's directory"),
            ("big.yaml", f"big.yaml: larger than {config_file.MAX_FILE_BYTES} bytes"),
            ("dir.yaml", "dir.yaml: not a regular file"),
            ("fifo.yaml", "fifo.yaml: not a regular file"),
            ("missing.yaml", "missing.yaml: cannot read it: No such file or directory")]:
        text = mapping_file(cli, name)
        code, out, err = run(capsys, "apply", "-f", "conf/jitprov.yaml")
        line = text[:text.index("{file:")].count("\n") + 1
        assert (code, out) == (2, ""), name
        assert err.startswith(f"error: conf/jitprov.yaml:{line}: tenants.hospital."
                              f"connections.okta.mapping.file: {said}"), err
    assert admin.list_tenants(ctx) == []


def test_a_configuration_file_is_read_only_up_to_its_limit(
        cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "apply", "-f", "/dev/zero")
    assert (code, out, err) == (
        2, "", f"error: /dev/zero: larger than {config_file.MAX_FILE_BYTES} bytes\n")
    code, _, err = run(capsys, "apply", "-f", "nowhere.yaml")
    assert (code, err) == (2, "error: nowhere.yaml: cannot read it: No such file or "
                              "directory\n")


@pytest.mark.parametrize("text", [
    "version: 1\ntenants: " + "[" * 5000,  # deeper than PyYAML's recursion can go
    "version: 1\ntenants: " + "[" * 40 + "]" * 40 + "\n",
    "version: 1\ntenants:\n  a: " + "{b: " * 40 + "1" + "}" * 40 + "\n",
])
def test_deeply_nested_yaml_is_refused_in_one_line(
        cli: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    (cli / "jitprov.yaml").write_text(text)
    code, out, err = run(capsys, "apply", "-f", "jitprov.yaml")
    assert (code, out) == (2, "")
    assert err.startswith("error: jitprov.yaml:") and err.endswith(
        ": nested more than 32 levels deep\n"), err
