"""Break-glass: two admins, one use, scoped roles, a short session, everything reported."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitprov.core.errors import Conflict, InvalidInput
from jitprov.services import admin, audit_export, break_glass
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.sessions import current_session
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import setup_connection
from tests.conftest import Clock


def issue(ctx: ServiceContext, minutes: int = 60) -> break_glass.IssuedCode:
    request_id = break_glass.request_access(ctx, "hospital", roles=["nurse", "pharmacist"],
                                            reason="IdP outage, ward 3", valid_minutes=minutes,
                                            requested_by="alice")
    return break_glass.approve_access(ctx, request_id, approved_by="bob")


def test_code_gives_a_short_session_with_exactly_the_requested_roles(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    issued = issue(ctx, minutes=180)
    session = break_glass.redeem(ctx, issued.code)
    assert session.expires_at == clock.now + timedelta(hours=1)
    me = current_session(ctx, session.session_token)
    assert me is not None
    body = me.as_me()
    assert (body["roles"], body["provisioned_by"]) == (["nurse", "pharmacist"], "manual")
    [view] = admin.list_accounts(ctx, "hospital")
    assert view.account.kind == "break_glass"
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert [t for t in types if t.startswith("break_glass.")] == [
        "break_glass.requested", "break_glass.issued", "break_glass.used"]
    with UnitOfWork(ctx.db, readonly=True) as uow:
        alerts = [kind for _, kind, _ in uow.outbox.pending()]
    assert "break_glass.used" in alerts
    clock.advance(minutes=61)
    assert current_session(ctx, session.session_token) is None


def test_the_requester_cannot_approve_their_own_request(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    request_id = break_glass.request_access(ctx, "hospital", roles=["nurse"], reason="outage",
                                            requested_by="alice")
    with pytest.raises(InvalidInput, match="dual control"):
        break_glass.approve_access(ctx, request_id, approved_by="alice")
    issued = break_glass.approve_access(ctx, request_id, approved_by="bob")
    with pytest.raises(Conflict):
        break_glass.approve_access(ctx, request_id, approved_by="carol")
    assert issued.code.startswith("bg-")


def test_a_code_works_once_and_not_after_it_expires(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    first = issue(ctx)
    break_glass.redeem(ctx, first.code)
    with pytest.raises(LoginRefused):
        break_glass.redeem(ctx, first.code)
    late = issue(ctx, minutes=30)
    clock.advance(minutes=31)
    with pytest.raises(LoginRefused):
        break_glass.redeem(ctx, late.code)
    with pytest.raises(LoginRefused):
        break_glass.redeem(ctx, "bg-made-up")


def test_a_request_needs_roles_and_a_reason(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(InvalidInput):
        break_glass.request_access(ctx, "hospital", roles=[], reason="x", requested_by="a")
    with pytest.raises(InvalidInput):
        break_glass.request_access(ctx, "hospital", roles=["nurse"], reason=" ",
                                   requested_by="a")


def test_one_person_with_two_tokens_is_still_one_person(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    request_id = break_glass.request_access(ctx, "hospital", roles=["nurse"], reason="x",
                                            requested_by="admin-token:1:alice")
    with pytest.raises(InvalidInput, match="dual control"):
        break_glass.approve_access(ctx, request_id, approved_by="admin-token:2:Alice")


def test_an_unapproved_request_expires(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    request_id = break_glass.request_access(ctx, "hospital", roles=["nurse"], reason="x",
                                            requested_by="alice")
    clock.advance(hours=2)
    with pytest.raises(InvalidInput, match="expired"):
        break_glass.approve_access(ctx, request_id, approved_by="bob")
