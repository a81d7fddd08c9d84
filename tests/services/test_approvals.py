"""Approvals: pending roles become grants only when an approver says yes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitprov.core.errors import Conflict, InvalidInput
from jitprov.core.provisioning import NoChange
from jitprov.services import accounts, admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.sessions import current_session
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock

CHARGE = ["Nurses", "Charge Nurses"]


def test_approved_request_becomes_a_grant_that_rules_never_revoke(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    login = provision_on_login(ctx, "idp", nurse(groups=CHARGE))
    [request] = accounts.list_requests(ctx, "hospital")
    assert (request.role, request.source) == ("charge-nurse", "rule:idp/charge-nurses")
    accounts.decide_request(ctx, request.id, approve=True, reason="ward lead",
                             approver="cli:head-nurse")
    me = current_session(ctx, login.session_token)
    assert me is not None
    assert me.as_me()["roles"] == ["charge-nurse", "nurse", "staff"]
    assert accounts.list_requests(ctx, "hospital") == []
    # the group is gone at the IdP: the rule grant goes, the approved grant stays
    provision_on_login(ctx, "idp", nurse(groups=["Porters"]))
    [view] = admin.list_accounts(ctx, "hospital")
    assert sorted((g.role, g.source) for g in view.account.grants) == [
        ("charge-nurse", "approval"), ("staff", "rule:idp/default")]
    [event] = [e for e in audit_export.iter_events(ctx, "hospital")
               if e.type == "grant.approved"]
    assert (event.actor, event.data["reason"]) == ("cli:head-nurse", "ward lead")


def test_a_login_after_approval_changes_nothing(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(groups=CHARGE))
    [request] = accounts.list_requests(ctx, "hospital")
    accounts.decide_request(ctx, request.id, approve=True, reason="ok", approver="a")
    again = provision_on_login(ctx, "idp", nurse(groups=CHARGE))
    assert isinstance(again.decision, NoChange)
    assert accounts.list_requests(ctx, "hospital") == []


def test_time_bound_approval_expires(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    login = provision_on_login(ctx, "idp", nurse(groups=CHARGE))
    [request] = accounts.list_requests(ctx, "hospital")
    decision = accounts.decide_request(ctx, request.id, approve=True, reason="cover",
                                        approver="a", valid_for=timedelta(hours=8))
    assert decision.expires_at == clock.now + timedelta(hours=8)
    clock.advance(hours=9)
    me = current_session(ctx, login.session_token)
    assert me is not None
    assert "charge-nurse" not in me.as_me()["roles"]  # type: ignore[operator]


def test_denied_request_grants_nothing_and_cannot_be_decided_twice(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(groups=CHARGE))
    [request] = accounts.list_requests(ctx, "hospital")
    accounts.decide_request(ctx, request.id, approve=False, reason="no", approver="a")
    with pytest.raises(Conflict):
        accounts.decide_request(ctx, request.id, approve=True, reason="yes", approver="b")
    [view] = admin.list_accounts(ctx, "hospital")
    assert "charge-nurse" not in view.account.roles
    assert [r.role for r in accounts.list_requests(ctx, "hospital", status="denied")] == [
        "charge-nurse"]


def test_a_decision_needs_a_reason(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(groups=CHARGE))
    [request] = accounts.list_requests(ctx, "hospital")
    with pytest.raises(InvalidInput):
        accounts.decide_request(ctx, request.id, approve=True, reason=" ", approver="a")


def test_a_later_login_asks_again_after_a_denial(ctx: ServiceContext) -> None:
    # The denial is audited; while the rule keeps matching, the next login raises a new
    # request, so an approver can change their mind without a separate "re-open" command.
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse(groups=CHARGE))
    [request] = accounts.list_requests(ctx, "hospital")
    accounts.decide_request(ctx, request.id, approve=False, reason="no", approver="a")
    provision_on_login(ctx, "idp", nurse(groups=CHARGE))
    [again] = accounts.list_requests(ctx, "hospital")
    assert (again.role, again.id != request.id) == ("charge-nurse", True)
