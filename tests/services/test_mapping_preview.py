"""Recorded claims and the mapping editor's services: the login records redacted claims in
the same statement that touches the identity, the purge clears them after the retention, and
the impact preview tells who gains, loses or becomes denied. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jitprov.core.errors import InvalidInput, MappingError, NotFound
from jitprov.core.mapping import load_policy
from jitprov.core.mapping.impact import RecordedLogin, compare_policies
from jitprov.core.provisioning import Deny, NoChange, Update
from jitprov.core.recorded_claims import REDACTED, redact_claims
from jitprov.jobs.purge import purge_recorded_claims
from jitprov.services import admin, mapping_preview
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.store import tables as t
from jitprov.store.database import Database
from jitprov.testing.builders import HOSPITAL, nurse, setup_connection
from tests.conftest import Clock

CURRENT = HOSPITAL.format(linking="never")

# the pharmacists' rule is new, nurses now need the 'Ward 3' department, contractors are denied
PROPOSED = """\
profile:
  email: email
  name: name
  department: join(' ', ['Dept', department])
groups: groups
roles:
  default: [staff]
  rules:
    - id: nurses
      grant: [nurse]
      when: contains(groups, 'Nurses') && department == 'Ward 3'
    - id: pharmacists
      grant: [pharmacist]
      when: contains(groups, 'Pharmacy')
    - id: charge-nurses
      grant: [charge-nurse]
      when: contains(groups, 'Charge Nurses')
      approval: required
deny:
  - id: unverified
    when: "email_verified != `true`"
    reason: email not verified
  - id: contractors
    when: contains(groups, 'Contractors')
    reason: contractors sign in through the partner portal
"""


def recorded_rows(db: Database) -> dict[str, tuple[object, object]]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(t.identity.c.subject, t.identity.c.claims,
                                      t.identity.c.claims_at)).all()
    return {r.subject: (r.claims, r.claims_at) for r in rows}


# -- redaction (pure) ---------------------------------------------------------------------------

def test_redaction_replaces_tokens_secrets_and_assertions_and_keeps_the_rest() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    claims = {
        "email": "ana@hospital.example", "groups": ["Nurses", "Ward 3"],
        "access_token": "opaque", "id_token": jwt, "refresh_token": "r", "code": "c",
        "nonce": "n", "at_hash": "h", "c_hash": "h", "userPassword": "hunter2",
        "client-secret": "s", "x_api_key": "k",
        "raw": "<saml:Assertion ID='a'><ds:Signature/></saml:Assertion>",
        "nested": {"session_token": "t", "department": "Ward 3", "list": [jwt, "ok"]},
        "pem": "-----BEGIN PRIVATE KEY-----\nMII...",
    }
    redacted = redact_claims(claims)
    assert {
        "email": "ana@hospital.example", "groups": ["Nurses", "Ward 3"],
        "access_token": REDACTED, "id_token": REDACTED, "refresh_token": REDACTED,
        "code": REDACTED, "nonce": REDACTED, "at_hash": REDACTED, "c_hash": REDACTED,
        "userPassword": REDACTED, "client-secret": REDACTED, "x_api_key": REDACTED,
        "raw": REDACTED,
        "nested": {"session_token": REDACTED, "department": "Ward 3",
                   "list": [REDACTED, "ok"]},
        "pem": REDACTED,
    } == redacted
    assert claims["access_token"] == "opaque"  # a copy: the login's claims are untouched


# -- the login hook ----------------------------------------------------------------------------

def test_first_login_records_redacted_claims_in_the_identity_row(
        ctx: ServiceContext, db: Database, clock: Clock) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(access_token="secret-value", id_token="eyJ.x.y"))

    claims, claims_at = recorded_rows(db)["u-1"]
    assert isinstance(claims, dict)
    assert claims["groups"] == ["Nurses"]
    assert claims["access_token"] == REDACTED
    assert "secret-value" not in str(claims)
    assert claims_at is not None


def test_later_login_replaces_the_recorded_claims(ctx: ServiceContext, db: Database,
                                                  clock: Clock) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    clock.advance(hours=1)
    result = provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Charge Nurses"]))
    assert isinstance(result.decision, Update)
    provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Charge Nurses"]))  # no change

    [login] = mapping_preview.recent_logins(ctx, "idp")
    assert login.claims["groups"] == ["Nurses", "Charge Nurses"]
    assert login.recorded_at == clock.now
    assert login.label == "ana@hospital.example"


def test_a_denied_login_records_nothing(ctx: ServiceContext, db: Database) -> None:
    setup_connection(ctx)
    with pytest.raises(LoginRefused):
        provision_on_login(ctx, "idp", nurse(email_verified=False))
    assert {} == recorded_rows(db)


def test_login_touch_stays_one_statement_per_identity(ctx: ServiceContext) -> None:
    """The claims ride on the UPDATE that moves last_login_at: a returning login runs the
    same number of statements on the identity table as before (one; on PostgreSQL it also
    moves the account's, in one statement)."""
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    statements: list[str] = []

    @sa.event.listens_for(ctx.db.engine, "before_cursor_execute")
    def spy(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    provision_on_login(ctx, "idp", nurse())
    identity_writes = [s for s in statements
                       if re.search(r"\b(UPDATE identity|INSERT INTO identity)\b", s)]
    assert 1 == len(identity_writes)
    assert "claims" in identity_writes[0]


# -- retention ---------------------------------------------------------------------------------

def test_purge_clears_claims_older_than_the_default_retention(
        ctx: ServiceContext, db: Database, clock: Clock) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(subject="old", email="old@hospital.example"))
    clock.advance(days=31)
    provision_on_login(ctx, "idp", nurse(subject="new", email="new@hospital.example"))

    assert 1 == purge_recorded_claims(ctx)
    rows = recorded_rows(db)
    assert (None, None) == rows["old"]
    assert rows["new"][0] is not None
    assert 0 == purge_recorded_claims(ctx)
    assert ["new"] == [r.subject for r in mapping_preview.recent_logins(ctx, "idp")]


def test_tenant_retention_overrides_the_default(ctx: ServiceContext, db: Database,
                                                clock: Clock) -> None:
    setup_connection(ctx)
    admin.create_tenant(ctx, "clinic")
    admin.add_mock_connection(ctx, tenant="clinic", slug="clinic-idp", mapping=CURRENT,
                              mapping_source="clinic.yaml")
    provision_on_login(ctx, "idp", nurse(subject="h"))
    provision_on_login(ctx, "clinic-idp", nurse(subject="c"))
    mapping_preview.set_claims_retention(ctx, "clinic", 2)
    clock.advance(days=3)

    assert 1 == purge_recorded_claims(ctx)
    rows = recorded_rows(db)
    assert rows["c"] == (None, None)
    assert rows["h"][0] is not None


def test_retention_out_of_range_is_refused(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(InvalidInput):
        mapping_preview.set_claims_retention(ctx, "hospital", -1)


# -- impact preview -----------------------------------------------------------------------------

def sign_in_people(ctx: ServiceContext, clock: Clock) -> None:
    people = [
        ("ana", {"groups": ["Nurses"], "department": "Ward 3"}),
        ("bo", {"groups": ["Nurses"], "department": "Ward 5"}),
        ("cy", {"groups": ["Pharmacy"], "department": "Pharmacy"}),
        ("di", {"groups": ["Contractors", "Nurses"], "department": "Ward 3"}),
    ]
    for name, claims in people:
        provision_on_login(ctx, "idp", nurse(subject=name, email=f"{name}@hospital.example",
                                             **claims))
        clock.advance(minutes=1)


def test_impact_preview_lists_gains_losses_denials_and_profile_changes(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    sign_in_people(ctx, clock)

    report = mapping_preview.preview_impact(ctx, "idp", PROPOSED, "proposed.yaml")

    by_subject = {p.subject: p for p in report.people}
    assert 4 == report.examined
    assert ["di", "cy", "bo", "ana"] == [p.subject for p in report.people]  # newest first
    assert ("nurse",) == by_subject["bo"].roles_lost
    assert ("pharmacist",) == by_subject["cy"].roles_gained
    assert {"pharmacist": "pharmacists"} == dict(by_subject["cy"].granted_by)
    assert by_subject["di"].newly_denied
    assert "contractors sign in through the partner portal" == by_subject["di"].denied_after
    assert () == by_subject["di"].roles_lost  # denied: reported as denied, not as losing roles
    assert [("department", "Ward 3", "Dept Ward 3")] == [
        (c.field, c.before, c.after) for c in by_subject["ana"].profile]
    assert () == by_subject["ana"].roles_gained + by_subject["ana"].roles_lost
    assert [by_subject["di"]] == list(report.newly_denied)


def test_impact_preview_detects_people_who_stop_being_denied(ctx: ServiceContext,
                                                             clock: Clock) -> None:
    setup_connection(ctx)
    sign_in_people(ctx, clock)
    admin.set_mapping(ctx, "idp", PROPOSED, "proposed.yaml")

    report = mapping_preview.preview_impact(ctx, "idp", CURRENT, "back.yaml")

    [undenied] = report.undenied
    assert "di" == undenied.subject
    assert ("nurse", "staff") == undenied.roles_gained


def test_impact_preview_of_the_same_mapping_changes_nobody(ctx: ServiceContext,
                                                           clock: Clock) -> None:
    setup_connection(ctx)
    sign_in_people(ctx, clock)
    report = mapping_preview.preview_impact(ctx, "idp", CURRENT)
    assert (4, ()) == (report.examined, report.people)


def test_impact_preview_reads_only_the_last_n_logins(ctx: ServiceContext,
                                                     clock: Clock) -> None:
    setup_connection(ctx)
    sign_in_people(ctx, clock)
    report = mapping_preview.preview_impact(ctx, "idp", PROPOSED, limit=2)
    assert 2 == report.examined
    assert ["di", "cy"] == [p.subject for p in report.people]
    with pytest.raises(InvalidInput, match="1-1000"):
        mapping_preview.preview_impact(ctx, "idp", PROPOSED, limit=1001)


def test_impact_preview_of_a_bad_mapping_names_line_and_rule(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    bad = CURRENT.replace("contains(groups, 'Nurses')", "contains(groups, 'Nurses'")
    with pytest.raises(MappingError) as err:
        mapping_preview.preview_impact(ctx, "idp", bad, "bad.yaml")
    assert 11 == err.value.line
    assert "nurses" in (err.value.rule or "")


def test_compare_policies_is_pure_and_reports_pending_approvals() -> None:
    current = load_policy(CURRENT, "current")
    proposed = load_policy(CURRENT.replace("'Charge Nurses'", "'Nurses'"), "proposed")
    login = RecordedLogin(subject="s", account_id="a", recorded_at=Clock().now,
                          claims={"email": "a@x", "email_verified": True,
                                  "groups": ["Nurses"]})
    [person] = compare_policies(current, proposed, [login]).people
    assert ("charge-nurse",) == person.pending_gained
    assert () == person.roles_gained


# -- validate and test -------------------------------------------------------------------------

def test_validate_returns_line_and_rule_of_the_problem() -> None:
    bad = CURRENT.replace("grant: [charge-nurse]", "grant: charge nurse")
    [problem] = mapping_preview.validate_mapping(bad)
    assert 13 == problem.line
    assert "charge-nurses" in (problem.rule or "")
    assert [] == mapping_preview.validate_mapping(CURRENT)


def test_validate_never_raises_on_broken_yaml() -> None:
    [problem] = mapping_preview.validate_mapping("profile:\n  email: [\n")
    assert problem.message.startswith("invalid YAML")
    assert problem.line is not None


def test_parse_claims_names_the_line_of_bad_json() -> None:
    with pytest.raises(InvalidInput, match=r"claims:2: not valid JSON"):
        mapping_preview.parse_claims('{"email": "a@x",\n "groups": [,]}')
    with pytest.raises(InvalidInput, match="one JSON object"):
        mapping_preview.parse_claims("[1, 2]")


def test_test_with_a_recorded_login_shows_the_decision_under_an_unsaved_mapping(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    sign_in_people(ctx, clock)

    dry = mapping_preview.test_mapping(ctx, "idp", recorded_subject="di", mapping=PROPOSED)
    assert isinstance(dry.decision, Deny)
    assert "contractors" == dry.decision.rule

    same = mapping_preview.test_mapping(ctx, "idp", recorded_subject="ana")
    assert isinstance(same.decision, NoChange)
    with pytest.raises(NotFound):
        mapping_preview.test_mapping(ctx, "idp", recorded_subject="nobody")


def test_test_with_pasted_claims_traces_the_granting_rule(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    dry = mapping_preview.test_mapping(
        ctx, "idp", claims={"sub": "new", "email": "x@hospital.example",
                            "email_verified": True, "groups": ["Pharmacy"]},
        mapping=PROPOSED)
    granted = [(e.rule, e.roles) for e in dry.decision.trace if e.outcome == "granted"]
    assert [("default", ("staff",)), ("pharmacists", ("pharmacist",))] == granted
    assert [] == mapping_preview.recent_logins(ctx, "idp")  # a dry run writes nothing


def test_claims_age_out_of_the_preview_after_the_retention(ctx: ServiceContext,
                                                            clock: Clock) -> None:
    setup_connection(ctx)
    sign_in_people(ctx, clock)
    clock.advance(days=30, hours=1)
    purge_recorded_claims(ctx)
    assert 0 == mapping_preview.preview_impact(ctx, "idp", PROPOSED).examined
    assert timedelta(days=30) == mapping_preview.DEFAULT_CLAIMS_RETENTION
