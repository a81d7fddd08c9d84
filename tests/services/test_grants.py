"""Manual grants, blocks and expiry through the services and real logins: an expired grant
counts nowhere, is swept and announced, and a rule that still matches asks again."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import pytest

from jitprov.core.errors import Conflict, InvalidInput, NotFound
from jitprov.jobs.purge import purge_expired_grants
from jitprov.services import accounts, admin, audit_export, console
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.sessions import current_session
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock

CHARGE = ["Nurses", "Charge Nurses"]


@pytest.fixture(autouse=True)
def hospital(ctx: ServiceContext) -> None:
    setup_connection(ctx)


def outbox(ctx: ServiceContext) -> list[tuple[str, Mapping[str, object]]]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return [(kind, payload) for _, kind, payload in uow.outbox.pending(limit=1000)]


def events(ctx: ServiceContext, kind: str) -> list[object]:
    return [e for e in audit_export.iter_events(ctx, "hospital") if e.type == kind]


def roles_listed(ctx: ServiceContext) -> set[str]:
    [view] = admin.list_accounts(ctx, "hospital")
    return set(view.account.roles)


def signed_in(ctx: ServiceContext, groups: list[str] | None = None) -> str:
    result = provision_on_login(ctx, "idp", nurse(groups=groups or ["Nurses"]))
    assert result.account_id is not None
    return result.account_id


def approve(ctx: ServiceContext, **kw: object) -> int:
    [request] = accounts.list_requests(ctx, "hospital")
    accounts.decide_request(ctx, request.id, approve=True, reason="cover", approver="cli:a",
                            **kw)  # type: ignore[arg-type]
    return request.id


# -- expiry ------------------------------------------------------------------------------------

def test_an_expired_approval_counts_nowhere_and_the_next_login_asks_again(
        ctx: ServiceContext, clock: Clock) -> None:
    signed_in(ctx, CHARGE)
    first = approve(ctx, valid_for=timedelta(days=2))
    assert "charge-nurse" in roles_listed(ctx)
    clock.advance(days=2, seconds=1)

    assert "charge-nurse" not in roles_listed(ctx)
    review = audit_export.access_review_rows(ctx, "hospital")
    assert "charge-nurse" not in {r["role"] for r in review}
    assert "charge-nurse" not in {g.role for g in accounts.list_grants(ctx, "hospital").grants}
    assert console.search_users(ctx, "hospital", role="charge-nurse").rows == ()

    login = provision_on_login(ctx, "idp", nurse(groups=CHARGE))  # the rule still matches
    [again] = accounts.list_requests(ctx, "hospital")
    assert (again.role, again.id != first) == ("charge-nurse", True)
    me = current_session(ctx, login.session_token)
    assert me is not None and "charge-nurse" not in me.as_me()["roles"]  # type: ignore

    # approving again replaces the expired row (unique account, role, source): no error
    accounts.decide_request(ctx, again.id, approve=True, reason="again", approver="cli:a")
    assert "charge-nurse" in roles_listed(ctx)


def test_the_sweep_removes_expired_grants_and_announces_them_once(
        ctx: ServiceContext, clock: Clock) -> None:
    account_id = signed_in(ctx, CHARGE)
    approve(ctx, valid_for=timedelta(days=1))
    accounts.grant_role(ctx, "hospital", account_id, "ward-3:keys", reason="night",
                        actor="cli", expires_in_days=3)
    clock.advance(days=1, hours=1)

    assert purge_expired_grants(ctx) == 1
    assert purge_expired_grants(ctx) == 0  # idempotent: announced once
    [event] = events(ctx, "grant.expired")
    assert (event.actor, event.data["role"], event.data["source"]) == (  # type: ignore
        "lifecycle:expiry", "charge-nurse", "approval")
    revoked = [p for k, p in outbox(ctx) if k == "role.revoked"]
    assert revoked == [{"account_id": account_id, "tenant": "hospital",
                        "role": "charge-nurse", "source": "approval", "reason": "expired"}]
    assert {g.role for g in accounts.list_grants(ctx, "hospital").grants} == {
        "nurse", "staff", "ward-3:keys"}


# -- manual grants -----------------------------------------------------------------------------

def test_a_manual_grant_is_held_listed_audited_and_announced(ctx: ServiceContext,
                                                             clock: Clock) -> None:
    account_id = signed_in(ctx)
    change = accounts.grant_role(ctx, "hospital", account_id, "pharmacy:read",
                                 reason="covering pharmacy", actor="admin-token:1:ops",
                                 expires_in_days=7)
    assert change.expires_at == clock.now + timedelta(days=7)
    [grant] = [g for g in accounts.list_grants(ctx, "hospital", account_id=account_id).grants
               if g.role == "pharmacy:read"]
    assert (grant.source, grant.granted_by) == ("manual", "admin-token:1:ops")
    [event] = events(ctx, "grant.added")
    assert (event.actor, event.data["reason"]) == (  # type: ignore[attr-defined]
        "admin-token:1:ops", "covering pharmacy")
    assert ("role.granted", {"account_id": account_id, "tenant": "hospital",
                             "role": "pharmacy:read", "source": "manual",
                             "expires_at": change.expires_at.isoformat()}) in outbox(ctx)
    # a later login (rules) never touches it
    provision_on_login(ctx, "idp", nurse(groups=["Porters"]))
    assert "pharmacy:read" in roles_listed(ctx)
    clock.advance(days=7)
    assert "pharmacy:read" not in roles_listed(ctx)


def test_revoking_a_manual_grant(ctx: ServiceContext) -> None:
    account_id = signed_in(ctx)
    accounts.grant_role(ctx, "hospital", account_id, "auditor", reason="q4", actor="cli")
    change = accounts.revoke_role(ctx, "hospital", account_id, "auditor", reason="done",
                                  actor="cli")
    assert (change.source, change.blocked) == ("manual", False)
    assert "auditor" not in roles_listed(ctx)
    [event] = events(ctx, "grant.revoked")
    assert event.data == {"role": "auditor", "reason": "done",  # type: ignore[attr-defined]
                          "sources": ["manual"]}
    assert ("role.revoked", {"account_id": account_id, "tenant": "hospital", "role": "auditor",
                             "source": "manual", "reason": "revoked"}) in outbox(ctx)


def test_a_rule_role_is_refused_naming_the_rule_unless_blocked(ctx: ServiceContext) -> None:
    account_id = signed_in(ctx)
    with pytest.raises(InvalidInput, match="granted by rule idp/nurses"):
        accounts.revoke_role(ctx, "hospital", account_id, "nurse", reason="x", actor="cli")
    assert "nurse" in roles_listed(ctx)

    accounts.revoke_role(ctx, "hospital", account_id, "nurse", reason="suspended from ward",
                         actor="cli", block=True)
    assert "nurse" not in roles_listed(ctx)
    [block] = accounts.list_grants(ctx, "hospital").blocks
    assert (block.role, block.blocked_by, block.reason) == ("nurse", "cli",
                                                           "suspended from ward")
    provision_on_login(ctx, "idp", nurse())  # the rule still matches: the block wins
    assert "nurse" not in roles_listed(ctx)
    with pytest.raises(Conflict):
        accounts.revoke_role(ctx, "hospital", account_id, "nurse", reason="x", actor="cli",
                             block=True)
    with pytest.raises(InvalidInput, match="blocked"):
        accounts.grant_role(ctx, "hospital", account_id, "nurse", reason="x", actor="cli")

    accounts.unblock_role(ctx, "hospital", account_id, "nurse", reason="back", actor="cli")
    assert accounts.list_grants(ctx, "hospital").blocks == []
    provision_on_login(ctx, "idp", nurse())
    assert "nurse" in roles_listed(ctx)
    assert [e.type for e in audit_export.iter_events(ctx, "hospital")
            if e.type.startswith("grant.")] == ["grant.blocked", "grant.unblocked"]


def test_a_block_revokes_every_grant_of_the_role(ctx: ServiceContext) -> None:
    account_id = signed_in(ctx)
    accounts.grant_role(ctx, "hospital", account_id, "nurse", reason="agency", actor="cli")
    change = accounts.revoke_role(ctx, "hospital", account_id, "nurse", reason="x",
                                  actor="cli", block=True)
    assert change.source == "manual,rule:idp/nurses"
    assert roles_listed(ctx) == {"staff"}
    assert sorted(p["source"] for k, p in outbox(ctx)  # type: ignore[type-var]
                  if k == "role.revoked" and p["reason"] == "blocked") == [
        "manual", "rule:idp/nurses"]


def test_a_block_is_also_respected_when_no_grant_is_held(ctx: ServiceContext) -> None:
    account_id = signed_in(ctx, ["Porters"])
    accounts.revoke_role(ctx, "hospital", account_id, "nurse", reason="not on wards",
                         actor="cli", block=True)
    provision_on_login(ctx, "idp", nurse(groups=["Nurses"]))
    assert roles_listed(ctx) == {"staff"}


def test_a_block_revokes_at_the_next_login_even_without_a_groups_claim(
        ctx: ServiceContext) -> None:
    account_id = signed_in(ctx)
    with UnitOfWork(ctx.db) as uow:  # a block recorded without touching the grant
        uow.grants.block(account_id, "nurse", blocked_by="cli", reason="x", now=ctx.clock())
        uow.commit()
    assert roles_listed(ctx) == {"staff"}  # the block wins at read time already
    provision_on_login(ctx, "idp", nurse(groups=[]))  # groups missing: rule grants kept...
    assert roles_listed(ctx) == {"staff"}  # ...but not the blocked one, whose row goes
    with UnitOfWork(ctx.db, readonly=True) as uow:
        assert {g.role for g in uow.accounts.get(account_id).grants} == {"staff"}


@pytest.mark.parametrize("role", ["", "has space", "x" * 65, "naïve", "a/b", "<script>"])
def test_a_bad_role_name_is_a_clear_error_and_writes_nothing(ctx: ServiceContext,
                                                             role: str) -> None:
    account_id = signed_in(ctx)
    before = len(list(audit_export.iter_events(ctx, "hospital")))
    with pytest.raises(InvalidInput, match="invalid role name"):
        accounts.grant_role(ctx, "hospital", account_id, role, reason="x", actor="cli")
    assert len(list(audit_export.iter_events(ctx, "hospital"))) == before


def test_unknown_names_and_missing_reasons_are_clear_errors(ctx: ServiceContext) -> None:
    account_id = signed_in(ctx)
    admin.create_tenant(ctx, "clinic")
    with pytest.raises(NotFound):
        accounts.grant_role(ctx, "nowhere", account_id, "x", reason="x", actor="cli")
    with pytest.raises(NotFound, match="no account 'nobody' in tenant hospital"):
        accounts.grant_role(ctx, "hospital", "nobody", "x", reason="x", actor="cli")
    with pytest.raises(NotFound, match="in tenant clinic"):  # another tenant's account
        accounts.grant_role(ctx, "clinic", account_id, "x", reason="x", actor="cli")
    with pytest.raises(InvalidInput, match="does not hold role auditor"):
        accounts.revoke_role(ctx, "hospital", account_id, "auditor", reason="x", actor="cli")
    with pytest.raises(InvalidInput, match="not blocked"):
        accounts.unblock_role(ctx, "hospital", account_id, "auditor", reason="x", actor="cli")
    with pytest.raises(InvalidInput, match="reason"):
        accounts.grant_role(ctx, "hospital", account_id, "x", reason=" ", actor="cli")
    with pytest.raises(InvalidInput, match="expires in"):
        accounts.grant_role(ctx, "hospital", account_id, "x", reason="r", actor="cli",
                            expires_in_days=0)
    assert roles_listed(ctx) == {"nurse", "staff"}
    assert not [e for e in audit_export.iter_events(ctx, "hospital")
                if e.type.startswith("grant.")]


def test_approving_a_blocked_role_is_refused(ctx: ServiceContext) -> None:
    account_id = signed_in(ctx, CHARGE)
    [request] = accounts.list_requests(ctx, "hospital")
    # blocking withdraws nothing by itself; the approver is told the role is blocked
    accounts.revoke_role(ctx, "hospital", account_id, "charge-nurse", reason="no",
                         actor="cli", block=True)
    with pytest.raises(InvalidInput, match="blocked"):
        accounts.decide_request(ctx, request.id, approve=True, reason="ok", approver="a")
    provision_on_login(ctx, "idp", nurse(groups=CHARGE))  # the next login withdraws it
    assert accounts.list_requests(ctx, "hospital") == []
