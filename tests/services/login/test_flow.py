"""provision_on_login on SQLite and PostgreSQL: one transaction, audit and outbox included."""

from __future__ import annotations

import pytest

from jitprov.core.provisioning import Create, Link, NoChange, Update
from jitprov.services import admin, audit_export
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import dry_run_login, provision_on_login
from jitprov.services.sessions import current_session, end_session
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import HOSPITAL, nurse, setup_connection
from tests.conftest import Clock
from tests.pipelines import spy_pipelines


def audit_types(ctx: ServiceContext, tenant: str = "hospital") -> list[str]:
    return [e.type for e in audit_export.iter_events(ctx, tenant)]


def outbox_types(ctx: ServiceContext) -> list[str]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return [kind for _, kind, _ in uow.outbox.pending()]


def test_first_login_creates_account_with_rule_roles_audit_and_outbox(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    result = provision_on_login(ctx, "idp", nurse())
    assert isinstance(result.decision, Create)
    me = current_session(ctx, result.session_token)
    assert me is not None
    body = me.as_me()
    assert (body["email"], body["name"], body["roles"]) == (
        "ana@hospital.example", "Ana Lima", ["nurse", "staff"])
    assert body["attributes"] == {"department": "Ward 3"}
    assert body["grants"] == [{"role": "nurse", "source": "rule:idp/nurses", "expires_at": None},
                              {"role": "staff", "source": "rule:idp/default", "expires_at": None}]
    assert (body["connection"], body["external_id"], body["provisioned_by"]) == (
        "idp", "u-1", "jit")
    assert audit_types(ctx)[-1] == "account.created"
    assert outbox_types(ctx) == ["account.created", "role.granted", "role.granted"]


def test_second_login_with_same_claims_changes_nothing(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    first = provision_on_login(ctx, "idp", nurse())
    second = provision_on_login(ctx, "idp", nurse())
    assert isinstance(second.decision, NoChange)
    assert second.account_id == first.account_id
    assert len(admin.list_accounts(ctx, "hospital")) == 1
    assert audit_types(ctx)[-2:] == ["account.created", "login.succeeded"]
    assert outbox_types(ctx) == ["account.created", "role.granted", "role.granted"]


def test_changed_claims_update_profile_and_revoke_rule_role(ctx: ServiceContext,
                                                            clock: Clock) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    clock.advance(hours=8)
    result = provision_on_login(ctx, "idp", nurse(department="ICU", groups=["Porters"]))
    assert isinstance(result.decision, Update)
    [view] = admin.list_accounts(ctx, "hospital")
    assert view.account.roles == frozenset({"staff"})
    assert view.account.profile["department"] == "ICU"
    assert view.account.groups == frozenset({"Porters"})
    event = list(audit_export.iter_events(ctx, "hospital"))[-1]
    assert event.type == "account.updated"
    assert event.data["changes"]["grants_revoked"] == [  # type: ignore[index]
        {"role": "nurse", "source": "rule:idp/nurses"}]


def test_denied_login_writes_only_its_audit_event(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(email_verified=False))
    assert refused.value.code == "denied_by_rule"
    assert refused.value.reason == "email not verified"
    assert admin.list_accounts(ctx, "hospital") == []
    assert outbox_types(ctx) == []
    event = list(audit_export.iter_events(ctx, "hospital"))[-1]
    assert (event.type, event.data["rule"]) == ("login.denied", "unverified")


def test_approval_role_is_pending_not_granted(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    result = provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Charge Nurses"]))
    me = current_session(ctx, result.session_token)
    assert me is not None
    assert me.as_me()["roles"] == ["nurse", "staff"]
    assert me.as_me()["pending_roles"] == [{"role": "charge-nurse",
                                           "source": "rule:idp/charge-nurses"}]


def test_second_identity_with_known_email_is_denied_by_default(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(subject="u-1"))
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(subject="u-2", email="ANA@hospital.example"))
    assert refused.value.code == "email_in_use"
    assert len(admin.list_accounts(ctx, "hospital")) == 1


def test_verified_email_links_second_identity_to_same_account(ctx: ServiceContext) -> None:
    setup_connection(ctx, linking="verified_email")
    first = provision_on_login(ctx, "idp", nurse(subject="u-1"))
    second = provision_on_login(ctx, "idp", nurse(subject="u-2"))
    assert isinstance(second.decision, Link)
    assert second.account_id == first.account_id
    [view] = admin.list_accounts(ctx, "hospital")
    assert [i.subject for i in view.identities] == ["u-1", "u-2"]


def test_pending_linking_refuses_login_and_queues_the_link(ctx: ServiceContext) -> None:
    setup_connection(ctx, linking="pending")
    provision_on_login(ctx, "idp", nurse(subject="u-1"))
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(subject="u-2"))
    assert refused.value.code == "pending_link"
    assert audit_types(ctx)[-1] == "login.pending"


def test_deactivated_account_is_refused_and_not_resurrected(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    result = provision_on_login(ctx, "idp", nurse())
    with ctx.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE account SET status = 'deactivated'")
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Admins"]))
    assert refused.value.code == "account_inactive"
    [view] = admin.list_accounts(ctx, "hospital")
    assert view.account.status == "deactivated"
    assert current_session(ctx, result.session_token) is None


def test_login_rotates_the_previous_session(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    first = provision_on_login(ctx, "idp", nurse())
    second = provision_on_login(ctx, "idp", nurse(), previous_session=first.session_token)
    assert current_session(ctx, first.session_token) is None
    assert current_session(ctx, second.session_token) is not None


def test_logout_revokes_the_session(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    result = provision_on_login(ctx, "idp", nurse())
    assert end_session(ctx, result.session_token) is True
    assert current_session(ctx, result.session_token) is None


def test_session_expires_after_its_ttl(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    result = provision_on_login(ctx, "idp", nurse())
    clock.advance(hours=12, seconds=1)
    assert current_session(ctx, result.session_token) is None


def test_changed_mapping_applies_at_next_login_without_restart(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    admin.set_mapping(ctx, "idp", HOSPITAL.format(linking="never").replace(
        "default: [staff]", "default: [staff, badge-holder]"), "hospital-v2.yaml")
    result = provision_on_login(ctx, "idp", nurse())
    assert isinstance(result.decision, Update)
    [view] = admin.list_accounts(ctx, "hospital")
    assert "badge-holder" in view.account.roles


def test_dry_run_reports_decision_and_writes_nothing(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    before = audit_types(ctx)
    result = dry_run_login(ctx, "idp", nurse(groups=["Nurses"]))
    assert result.as_dict()["decision"] == "create"
    assert any(e["rule"] == "nurses" for e in result.as_dict()["trace"])  # type: ignore[attr-defined]
    assert admin.list_accounts(ctx, "hospital") == []
    assert audit_types(ctx) == before


def test_audit_chain_of_a_login_history_verifies(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    for groups in (["Nurses"], ["Porters"], ["Nurses"]):
        provision_on_login(ctx, "idp", nurse(groups=groups))
    [report] = audit_export.verify(ctx, "hospital")
    assert (report.intact, report.events) == (True, 5)


def test_string_false_email_verified_is_denied(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(email_verified="false"))
    assert refused.value.code == "denied_by_rule"
    assert admin.list_accounts(ctx, "hospital") == []


def test_later_login_cannot_take_another_accounts_email(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(subject="ana", email="ana@hospital.example"))
    provision_on_login(ctx, "idp", nurse(subject="mallory", email="mallory@hospital.example"))
    result = provision_on_login(ctx, "idp", nurse(subject="mallory",
                                                  email="ANA@hospital.example"))
    assert isinstance(result.decision, NoChange)
    emails = sorted(v.account.email or "" for v in admin.list_accounts(ctx, "hospital"))
    assert emails == ["ana@hospital.example", "mallory@hospital.example"]
    assert any(e.rule == "profile.email" and e.outcome == "kept" for e in result.decision.trace)


def seed_scim_account(ctx: ServiceContext, *, external_id: str, connection: str | None,
                      kind: str = "user") -> str:
    from jitprov.core.provisioning import Changes

    with UnitOfWork(ctx.db) as uow:
        tenant = uow.config.tenants.get("hospital")
        conn_id = uow.config.connections.get(connection).id if connection else None
        account_id = uow.accounts.create(
            tenant_id=tenant.id, provisioned_by="scim", now=ctx.clock(), kind=kind,  # type: ignore[arg-type]
            external_id=external_id, external_id_connection_id=conn_id,
            changes=Changes(profile={"email": (None, "pre@hospital.example")}))
        uow.commit()
    return account_id


def test_first_login_links_the_account_provisioned_for_this_connection(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    pre = seed_scim_account(ctx, external_id="00u-ana", connection="idp")
    result = provision_on_login(ctx, "idp", nurse(subject="00u-ana",
                                                  email="pre@hospital.example"))
    assert isinstance(result.decision, Link)
    assert result.account_id == pre
    assert len(admin.list_accounts(ctx, "hospital")) == 1


def test_another_connection_cannot_claim_an_external_id(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    admin.add_mock_connection(ctx, tenant="hospital", slug="other",
                              mapping=HOSPITAL.format(linking="never"), mapping_source="m")
    seed_scim_account(ctx, external_id="00u-ana", connection="idp")
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "other", nurse(subject="00u-ana", email="pre@hospital.example"))
    assert refused.value.code == "email_in_use"
    result = provision_on_login(ctx, "other", nurse(subject="00u-ana",
                                                    email="someone@hospital.example"))
    assert isinstance(result.decision, Create)


def test_break_glass_account_is_never_linked_by_external_id(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    seed_scim_account(ctx, external_id="00u-bg", connection="idp", kind="break_glass")
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(subject="00u-bg", email="x@hospital.example"))
    assert refused.value.code == "link_refused"


def test_pending_link_to_a_break_glass_account_is_refused(ctx: ServiceContext) -> None:
    setup_connection(ctx, linking="pending")
    seed_scim_account(ctx, external_id="bg", connection=None, kind="break_glass")
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(subject="u-9", email="pre@hospital.example"))
    assert refused.value.code == "link_refused"


def test_lost_unique_race_is_retried_not_surfaced(ctx: ServiceContext,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from jitprov.core.errors import RaceLost
    from jitprov.store.identities import IdentityRepository

    setup_connection(ctx)
    real = IdentityRepository.add_identity
    calls = {"n": 0}

    def flaky(self: IdentityRepository, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RaceLost("injected")
        real(self, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(IdentityRepository, "add_identity", flaky)
    result = provision_on_login(ctx, "idp", nurse())
    assert isinstance(result.decision, Create)
    assert calls["n"] == 2
    assert len(admin.list_accounts(ctx, "hospital")) == 1
    assert audit_types(ctx).count("account.created") == 1


def test_overlong_subject_is_a_clear_refusal(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(LoginRefused) as refused:
        provision_on_login(ctx, "idp", nurse(subject="s" * 256))
    assert refused.value.code == "invalid_identity"


def test_two_linked_connections_keep_their_rule_grants_apart(ctx: ServiceContext) -> None:
    setup_connection(ctx, linking="verified_email")
    contractors = HOSPITAL.format(linking="verified_email").replace(
        "grant: [nurse]", "grant: [contractor]")
    admin.add_mock_connection(ctx, tenant="hospital", slug="agency", mapping=contractors,
                              mapping_source="agency.yaml")
    provision_on_login(ctx, "idp", nurse(subject="ana-at-idp"))
    linked = provision_on_login(ctx, "agency", nurse(subject="ana-at-agency"))
    assert isinstance(linked.decision, Link)
    again = provision_on_login(ctx, "idp", nurse(subject="ana-at-idp"))
    assert isinstance(again.decision, NoChange)
    [view] = admin.list_accounts(ctx, "hospital")
    assert sorted((g.role, g.source) for g in view.account.grants) == [
        ("contractor", "rule:agency/nurses"), ("nurse", "rule:idp/nurses"),
        ("staff", "rule:agency/default"), ("staff", "rule:idp/default")]


def test_role_and_approval_events_are_announced_one_by_one(ctx: ServiceContext) -> None:
    from jitprov.store.unit_of_work import UnitOfWork

    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(groups=["Nurses", "Charge Nurses"]))
    provision_on_login(ctx, "idp", nurse(groups=["Porters"]))
    with UnitOfWork(ctx.db, readonly=True) as uow:
        events = [(kind, payload.get("role")) for _, kind, payload in uow.outbox.pending()]
    assert events == [("account.created", None), ("role.granted", "nurse"),
                      ("role.granted", "staff"), ("approval.requested", "charge-nurse"),
                      ("account.updated", None), ("role.revoked", "nurse")]


def test_a_write_sent_with_the_commit_that_fails_undoes_the_login_and_it_runs_again(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session, written with the commit (on PostgreSQL in its pipeline, after the account
    and identity; on SQLite at once), breaks a unique key: the whole unit fails as a lost
    race, nothing of that try is kept, and the login runs again."""
    from jitprov.services.common import hash_token
    from jitprov.store.sessions import SessionRepository

    setup_connection(ctx)
    taken = provision_on_login(ctx, "idp", nurse(subject="u-0", email="other@hospital.example"))
    assert taken.session_token is not None
    real = SessionRepository.create
    tries: list[str] = []

    def colliding(self: SessionRepository, **kw: object) -> None:
        tries.append(str(kw["session_id"]))
        if len(tries) == 1:  # the first try takes the id of the session above
            kw["session_id"] = hash_token(taken.session_token or "")
        real(self, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(SessionRepository, "create", colliding)
    result = provision_on_login(ctx, "idp", nurse())
    assert isinstance(result.decision, Create)
    assert len(tries) == 2
    assert sorted(a.account.profile["email"] for a in admin.list_accounts(ctx, "hospital")) == [
        "ana@hospital.example", "other@hospital.example"]
    assert audit_types(ctx).count("account.created") == 2
    assert outbox_types(ctx).count("account.created") == 2
    assert current_session(ctx, result.session_token or "") is not None
    [report] = audit_export.verify(ctx, "hospital")
    assert report.intact


@pytest.mark.postgres
def test_on_postgresql_a_login_sends_its_lock_with_its_read_and_its_writes_with_the_commit(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The login lock goes with the identity's read (one round trip); after the decision, a
    first login's account, identity, outbox events, session and audit event go in one
    pipeline with the COMMIT; a returning login's touch and session too."""
    if ctx.db.dialect != "postgresql":
        pytest.skip("SQLite: no round trips, each write runs at once")
    setup_connection(ctx)
    calls = spy_pipelines(ctx, monkeypatch)
    provision_on_login(ctx, "idp", nurse())
    assert calls == [
        (["lock", "find"], False),
        (["account", "identity", "outbox_event", "session", "audit_head"], True)], calls
    calls.clear()
    provision_on_login(ctx, "idp", nurse())
    assert calls == [
        (["lock", "find"], False),
        (["account", "session", "audit_head"], True)], calls  # the touch: account, identity
