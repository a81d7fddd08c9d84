"""services/entitlements.py: ``scim_groups`` at login, and the re-evaluation of rule grants
when SCIM changes membership (in the request's transaction, or queued for the job)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from jitprov.core.identity import ExternalIdentity
from jitprov.services import admin, audit_export, entitlements
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import dry_run_login, provision_on_login
from jitprov.services.scim import bulk
from jitprov.services.scim import groups as scim_groups
from jitprov.services.scim import users as scim_users
from jitprov.services.scim.tokens import ScimPrincipal
from jitprov.store import tables as t
from jitprov.store.entitlements import EntitlementStore
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import nurse
from tests.pipelines import label
from tests.services.scim.helpers import BASE, GROUP_SCHEMA, patch, scim_client, user

MAPPING = """\
profile:
  email: email
groups: groups
roles:
  default: [staff]
  rules:
    - id: pharmacy
      grant: [pharmacist]
      when: contains(scim_groups, 'Pharmacy')
    - id: controlled
      grant: [controlled-drugs]
      when: contains(scim_groups, 'Controlled Drugs')
      approval: required
deny:
  - id: left
    when: contains(scim_groups, 'Leavers')
    reason: left the hospital
linking:
  by_email: never
"""


def _setup(ctx: ServiceContext) -> ScimPrincipal:
    admin.create_tenant(ctx, "hospital")
    admin.add_mock_connection(ctx, tenant="hospital", slug="idp", mapping=MAPPING,
                              mapping_source="pharmacy.yaml")
    return scim_client(ctx, setup=False)


def _group(name: str, *members: str) -> dict[str, Any]:
    return {"schemas": [GROUP_SCHEMA], "displayName": name,
            "members": [{"value": m} for m in members]}


def _login(ctx: ServiceContext, subject: str = "u-1") -> str:
    return provision_on_login(ctx, "idp", nurse(subject, email=f"{subject}@h.example")
                              ).account_id


def _roles(ctx: ServiceContext, account_id: str) -> set[tuple[str, str]]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return {(g.role, g.source) for g in uow.accounts.get(account_id).grants}


def _create_group(ctx: ServiceContext, principal: ScimPrincipal, name: str,
                  *members: str) -> str:
    body = scim_groups.create_group(ctx, principal, BASE, _group(name, *members)).body
    assert body is not None
    return str(body["id"])


def test_a_scim_created_account_gets_its_group_roles_at_its_first_login(
        ctx: ServiceContext) -> None:
    principal = _setup(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user(externalId="u-9")).body["id"]  # type: ignore[index]
    _create_group(ctx, principal, "Pharmacy", user_id)
    # never signed in: no recorded claims, so the group gives nothing yet
    assert _roles(ctx, user_id) == set()
    assert _login(ctx, "u-9") == user_id
    assert _roles(ctx, user_id) == {("staff", "rule:idp/default"),
                                    ("pharmacist", "rule:idp/pharmacy")}


def test_a_mapping_without_scim_groups_costs_no_read(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    principal = scim_client(ctx)  # the hospital mapping: no scim_groups
    account_id = provision_on_login(ctx, "idp", nurse()).account_id

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("read although no mapping names scim_groups")

    monkeypatch.setattr(EntitlementStore, "login_groups", forbidden)
    monkeypatch.setattr(EntitlementStore, "recorded_identities", forbidden)
    monkeypatch.setattr(EntitlementStore, "enqueue", forbidden)
    provision_on_login(ctx, "idp", nurse())
    _create_group(ctx, principal, "Pharmacy", account_id)


def test_dry_run_sees_scim_groups(ctx: ServiceContext) -> None:
    principal = _setup(ctx)
    account_id = _login(ctx)
    _create_group(ctx, principal, "Pharmacy", account_id)
    run = dry_run_login(ctx, "idp", nurse("u-1", email="u-1@h.example"))
    assert ("pharmacist", "rule:idp/pharmacy") in {
        (g.role, g.source) for g in run.mapped.grants}


def test_removal_revokes_with_audit_and_outbox_and_provenance(ctx: ServiceContext) -> None:
    principal = _setup(ctx)
    account_id = _login(ctx)
    group_id = _create_group(ctx, principal, "Pharmacy", account_id)
    assert ("pharmacist", "rule:idp/pharmacy") in _roles(ctx, account_id)
    scim_groups.patch_group(ctx, principal, BASE, group_id, patch(
        {"op": "remove", "path": f'members[value eq "{account_id}"]'}), request_id="req-7")
    assert _roles(ctx, account_id) == {("staff", "rule:idp/default")}
    events = [e for e in audit_export.iter_events(ctx, "hospital")
              if e.type == "account.updated" and e.actor == "scim:entra"]
    assert [e.data["changes"] for e in events] == [
        {"grants_added": [{"role": "pharmacist", "source": "rule:idp/pharmacy"}]},
        {"grants_revoked": [{"role": "pharmacist", "source": "rule:idp/pharmacy"}]}]
    assert events[-1].request_id == "req-7"
    assert events[-1].data["scim_groups"] == []
    with UnitOfWork(ctx.db, readonly=True) as uow:
        sent = [(k, p.get("role"), p.get("account_id")) for _, k, p in uow.outbox.pending(1000)]
    assert ("role.granted", "pharmacist", account_id) in sent
    assert ("role.revoked", "pharmacist", account_id) in sent


def test_the_grant_records_the_scim_client_as_granted_by(ctx: ServiceContext) -> None:
    principal = _setup(ctx)
    account_id = _login(ctx)
    _create_group(ctx, principal, "Pharmacy", account_id)
    with ctx.db.engine.connect() as conn:
        granted_by = conn.execute(sa.select(t.role_grant.c.granted_by).where(
            t.role_grant.c.account_id == account_id,
            t.role_grant.c.role == "pharmacist")).scalar_one()
    assert granted_by == "scim:entra"


def test_approval_rules_open_and_withdraw_requests(ctx: ServiceContext) -> None:
    principal = _setup(ctx)
    account_id = _login(ctx)
    group_id = _create_group(ctx, principal, "Controlled Drugs", account_id)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        assert {p.role for p in uow.accounts.get(account_id).pending} == {"controlled-drugs"}
        assert "approval.requested" in [k for _, k, _ in uow.outbox.pending(1000)]
    scim_groups.replace_group(ctx, principal, BASE, group_id, _group("Controlled Drugs"))
    with UnitOfWork(ctx.db, readonly=True) as uow:
        assert uow.accounts.get(account_id).pending == frozenset()
        [request] = uow.grants.requests(uow.config.tenants.get("hospital").id,
                                        status="withdrawn")
    assert request.role == "controlled-drugs"


def test_a_deny_rule_neither_denies_nor_deactivates(ctx: ServiceContext) -> None:
    """A matching deny rule changes nothing until the next login, which refuses."""
    principal = _setup(ctx)
    account_id = _login(ctx)
    group_id = _create_group(ctx, principal, "Leavers", account_id)
    _create_group(ctx, principal, "Pharmacy", account_id)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        account = uow.accounts.get(account_id)
    assert account.status == "active"
    assert {(g.role, g.source) for g in account.grants} == {("staff", "rule:idp/default")}
    scim_groups.delete_group(ctx, principal, group_id)  # no longer denied: evaluated
    assert ("pharmacist", "rule:idp/pharmacy") in _roles(ctx, account_id)


def test_purged_claims_leave_the_grants_to_the_next_login(ctx: ServiceContext) -> None:
    principal = _setup(ctx)
    account_id = _login(ctx)
    group_id = _create_group(ctx, principal, "Pharmacy", account_id)
    with UnitOfWork(ctx.db) as uow:
        uow.identities.claims.purge(uow.config.tenants.get("hospital").id,
                                    ctx.clock() + timedelta(days=1))
        uow.commit()
    scim_groups.delete_group(ctx, principal, group_id)
    assert ("pharmacist", "rule:idp/pharmacy") in _roles(ctx, account_id)
    _login(ctx)
    assert ("pharmacist", "rule:idp/pharmacy") not in _roles(ctx, account_id)


def test_bulk_goes_through_the_same_use_cases(ctx: ServiceContext) -> None:
    principal = _setup(ctx)
    account_id = _login(ctx)
    group_id = _create_group(ctx, principal, "Pharmacy", account_id)
    [outcome] = bulk.run_bulk(ctx, principal, BASE, [{
        "method": "PATCH", "path": f"/Groups/{group_id}",
        "data": patch({"op": "remove", "path": "members",
                       "value": [{"value": account_id}]})}], None, None)
    assert outcome["status"] == "204", outcome
    assert ("pharmacist", "rule:idp/pharmacy") not in _roles(ctx, account_id)


def test_a_large_change_is_queued_and_a_crashed_batch_resumes(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx.reevaluation_inline_max = 3
    principal = _setup(ctx)
    ids = [_login(ctx, f"u-{i}") for i in range(7)]
    group_id = _create_group(ctx, principal, "Pharmacy", *ids)
    assert entitlements.backlog(ctx) == 7
    assert all(("pharmacist", "rule:idp/pharmacy") not in _roles(ctx, a) for a in ids)

    real = entitlements.reevaluate
    calls = []

    def crash(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        real(*args, **kwargs)
        raise RuntimeError("node killed mid-batch")

    monkeypatch.setattr(entitlements, "reevaluate", crash)
    with pytest.raises(RuntimeError):
        entitlements.process_queue(ctx, batch=4)
    assert entitlements.backlog(ctx) == 7  # rolled back whole: nothing half-applied
    assert all(("pharmacist", "rule:idp/pharmacy") not in _roles(ctx, a) for a in ids)
    monkeypatch.setattr(entitlements, "reevaluate", real)

    assert entitlements.process_queue(ctx, batch=4) == 4
    assert entitlements.backlog(ctx) == 3
    assert entitlements.process_queue(ctx, batch=4) == 3
    assert entitlements.process_queue(ctx, batch=4) == 0
    assert all(("pharmacist", "rule:idp/pharmacy") in _roles(ctx, a) for a in ids)

    scim_groups.delete_group(ctx, principal, group_id)  # 7 > 3: queued again, in one INSERT
    assert entitlements.backlog(ctx) == 7
    while entitlements.process_queue(ctx, batch=4):
        pass
    assert all(("pharmacist", "rule:idp/pharmacy") not in _roles(ctx, a) for a in ids)
    [report] = audit_export.verify(ctx, "hospital")
    assert report.intact, report.problems


def test_a_login_finds_the_membership_a_scim_client_set_for_its_subject(
        ctx: ServiceContext) -> None:
    """The account a login signs in to is the one bound to its identity, else the one a
    SCIM client of this connection created with the subject as externalId."""
    principal = _setup(ctx)
    user_id = scim_users.create_user(ctx, principal, BASE, user(externalId="u-5")).body["id"]  # type: ignore[index]
    _create_group(ctx, principal, "Pharmacy", user_id)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        conn = uow.config.connections.get("idp")
        assert uow.entitlements.login_groups(conn.tenant_id, conn.id, "u-5") == ["Pharmacy"]
        assert uow.entitlements.login_groups(conn.tenant_id, conn.id, "u-6") == []
    identity = ExternalIdentity("https://idp.example", "u-5",
                                {"email": "ana@hospital.example", "groups": ["x"],
                                 "scim_groups": ["Controlled Drugs"]})  # an IdP cannot inject
    provision_on_login(ctx, "idp", identity)
    assert _roles(ctx, user_id) == {("staff", "rule:idp/default"),
                                    ("pharmacist", "rule:idp/pharmacy")}


@pytest.mark.postgres
def test_with_scim_groups_a_logins_claims_are_checked_before_its_lock(
        ctx: ServiceContext) -> None:
    """A mapping that reads SCIM membership takes the identity's login lock before that read:
    the login's claims (here a guard's, as the SAML ACS records an assertion ID) are sent and
    checked first, on their own, so claims come before the lock on every path; a second use
    is refused."""
    if ctx.db.dialect != "postgresql":
        pytest.skip("SQLite: each claim runs at once, and no lock is taken")
    _setup(ctx)
    connection_id = ctx.connections.get("idp").id

    def guard(uow: UnitOfWork) -> Callable[[], None]:
        recorded = uow.logins.saml_replay.remember(connection_id, "_one",
                                                   ctx.clock() + timedelta(minutes=5))

        def check() -> None:
            if not recorded.taken:
                raise LoginRefused("replay", "already used", None)
        return check

    executed: list[str] = []

    def note(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        executed.append(label(sql))

    sa.event.listen(ctx.db.engine, "before_cursor_execute", note)
    try:
        provision_on_login(ctx, "idp", nurse("u-1", email="u-1@h.example"), guard=guard)
        first = executed.index("saml_replay")
        assert first < executed.index("lock"), executed
        with pytest.raises(LoginRefused) as refused:
            provision_on_login(ctx, "idp", nurse("u-1", email="u-1@h.example"), guard=guard)
        assert refused.value.code == "replay"
    finally:
        sa.event.remove(ctx.db.engine, "before_cursor_execute", note)
