"""Dormant accounts are warned, then deactivated; special accounts are left alone."""

from __future__ import annotations

import pytest

from jitprov.core.errors import InvalidInput
from jitprov.core.provisioning import Changes
from jitprov.services import accounts, admin, audit_export, lifecycle
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.sessions import current_session
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock


def seed(ctx: ServiceContext, *, kind: str = "user", provisioned_by: str = "scim") -> None:
    with UnitOfWork(ctx.db) as uow:
        uow.accounts.create(tenant_id=uow.config.tenants.get("hospital").id, kind=kind,  # type: ignore[arg-type]
                            provisioned_by=provisioned_by,  # type: ignore[arg-type]
                            changes=Changes(profile={"email": (None, f"{kind}@h.example")}),
                            now=ctx.clock())
        uow.commit()


def test_dormant_account_is_warned_then_deactivated(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    lifecycle.set_dormant_policy(ctx, "hospital", warn_days=80, deactivate_days=90)
    login = provision_on_login(ctx, "idp", nurse())
    clock.advance(days=81)
    [report] = lifecycle.sweep(ctx)
    assert (len(report.warned), report.deactivated) == (1, [])
    [again] = lifecycle.sweep(ctx)
    assert again.warned == []  # warned once, not at every sweep
    clock.advance(days=10)
    [report] = lifecycle.sweep(ctx)
    assert len(report.deactivated) == 1
    assert current_session(ctx, login.session_token) is None
    with pytest.raises(LoginRefused):
        provision_on_login(ctx, "idp", nurse())
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types.count("account.dormant") == 1
    assert "account.deactivated" in types


def test_a_sign_in_clears_the_warning(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    lifecycle.set_dormant_policy(ctx, "hospital", warn_days=30, deactivate_days=60)
    provision_on_login(ctx, "idp", nurse())
    clock.advance(days=31)
    assert len(lifecycle.sweep(ctx)[0].warned) == 1
    provision_on_login(ctx, "idp", nurse())
    clock.advance(days=31)
    assert len(lifecycle.sweep(ctx)[0].warned) == 1  # warned again after the new idle spell


def test_dry_run_changes_nothing(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    lifecycle.set_dormant_policy(ctx, "hospital", warn_days=None, deactivate_days=30)
    provision_on_login(ctx, "idp", nurse())
    clock.advance(days=31)
    [report] = lifecycle.sweep(ctx, dry_run=True)
    assert len(report.deactivated) == 1
    assert [v.account.status for v in admin.list_accounts(ctx, "hospital")] == ["active"]


def test_special_and_never_signed_in_accounts_are_not_deactivated(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    lifecycle.set_dormant_policy(ctx, "hospital", warn_days=None, deactivate_days=30)
    seed(ctx, kind="break_glass")
    seed(ctx, kind="service")
    seed(ctx, kind="user", provisioned_by="scim")  # pre-provisioned, never signed in
    clock.advance(days=100)
    [report] = lifecycle.sweep(ctx)
    assert report.deactivated == []
    assert report.never_signed_in == ["user@h.example (scim, created 2026-11-28)"]
    assert {v.account.status for v in admin.list_accounts(ctx, "hospital")} == {"active"}


def test_no_policy_means_no_sweep(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    clock.advance(days=1000)
    [report] = lifecycle.sweep(ctx)
    assert (report.policy.enabled, report.deactivated) == (False, [])


def test_policy_must_warn_before_it_deactivates(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(InvalidInput):
        lifecycle.set_dormant_policy(ctx, "hospital", warn_days=90, deactivate_days=30)


def test_deactivated_accounts_are_deleted_after_the_grace_period(
        ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    lifecycle.set_dormant_policy(ctx, "hospital", warn_days=None, deactivate_days=None,
                                 delete_after_days=30)
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    accounts.set_account_status(ctx, account_id, "deactivated", reason="left")
    clock.advance(days=29)
    assert lifecycle.sweep(ctx)[0].deleted == []
    clock.advance(days=2)
    [report] = lifecycle.sweep(ctx)
    assert len(report.deleted) == 1
    assert admin.list_accounts(ctx, "hospital") == []
    events = [e for e in audit_export.iter_events(ctx, "hospital") if e.type == "account.deleted"]
    assert [e.account_id for e in events] == [account_id]
    assert all(r.intact for r in audit_export.verify(ctx, "hospital"))
    # the identity is free again: the next login is a new account, not a resurrection
    again = provision_on_login(ctx, "idp", nurse())
    assert again.account_id != account_id


def test_audit_retention_prunes_old_events_and_the_chain_still_verifies(
        ctx: ServiceContext, clock: Clock) -> None:
    import sqlalchemy as sa

    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    lifecycle.set_audit_retention(ctx, "hospital", 30)
    clock.advance(days=31)
    provision_on_login(ctx, "idp", nurse())
    [report] = lifecycle.sweep(ctx)
    assert report.audit_pruned == 4  # tenant, connection, account, policy: older than 30 days
    [verified] = audit_export.verify(ctx, "hospital")
    assert (verified.intact, verified.events) == (True, 2)  # the login and audit.pruned
    with ctx.db.engine.begin() as conn:  # someone deletes the first kept event
        conn.execute(sa.text("DELETE FROM audit_event WHERE seq = 5"))
    provision_on_login(ctx, "idp", nurse())
    [broken] = audit_export.verify(ctx, "hospital")
    assert not broken.intact


def test_a_forged_retention_anchor_is_caught(ctx: ServiceContext) -> None:
    import sqlalchemy as sa

    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    with ctx.db.engine.begin() as conn:  # delete the start and move the anchor to match
        row = conn.execute(sa.text("SELECT seq, hash FROM audit_event WHERE seq = 2")).one()
        conn.execute(sa.text("DELETE FROM audit_event WHERE seq <= 2"))
        conn.execute(sa.text("UPDATE audit_head SET anchor_seq = :s, anchor_hash = :h"),
                     {"s": row.seq, "h": row.hash})
    [report] = audit_export.verify(ctx, "hospital")
    assert not report.intact
    assert "no audit.pruned event" in str(report.problems[0])


def test_retention_has_a_floor(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(InvalidInput):
        lifecycle.set_audit_retention(ctx, "hospital", 1)


def test_a_sign_in_that_races_the_sweep_wins(ctx: ServiceContext, clock: Clock,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from jitprov.store.accounts import AccountRepository

    setup_connection(ctx)
    lifecycle.set_dormant_policy(ctx, "hospital", warn_days=None, deactivate_days=30)
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    stale_login = clock.now
    clock.advance(days=40)
    provision_on_login(ctx, "idp", nurse())  # signs in just before the sweep writes

    def stale(self: AccountRepository, tenant_id: int, before: object) -> list[object]:
        return [(account_id, "ana@hospital.example", stale_login, None)]

    monkeypatch.setattr(AccountRepository, "inactive_since", stale)
    [report] = lifecycle.sweep(ctx)
    assert report.deactivated == []
    assert [v.account.status for v in admin.list_accounts(ctx, "hospital")] == ["active"]


def test_sweep_writes_in_batches_and_each_change_once(ctx: ServiceContext, clock: Clock,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    setup_connection(ctx)
    lifecycle.set_dormant_policy(ctx, "hospital", warn_days=30, deactivate_days=60)
    for i in range(5):
        provision_on_login(ctx, "idp", nurse(subject=f"n{i}", email=f"n{i}@hospital.example"))
    commits = 0
    real_commit = UnitOfWork.commit

    def counting_commit(self: UnitOfWork) -> None:
        nonlocal commits
        commits += 1
        real_commit(self)

    monkeypatch.setattr(lifecycle, "BATCH", 2)
    monkeypatch.setattr(UnitOfWork, "commit", counting_commit)
    clock.advance(days=31)
    [report] = lifecycle.sweep(ctx)
    assert (len(report.warned), commits) == (5, 3)  # 2 + 2 + 1
    clock.advance(days=30)
    [report] = lifecycle.sweep(ctx)
    assert (len(report.deactivated), report.warned) == (5, [])
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert (types.count("account.dormant"), types.count("account.deactivated")) == (5, 5)


def test_a_warning_planned_before_a_sign_in_is_not_written(
        ctx: ServiceContext, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    from jitprov.store.accounts import AccountRepository

    setup_connection(ctx)
    lifecycle.set_dormant_policy(ctx, "hospital", warn_days=30, deactivate_days=60)
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    stale_login = clock.now
    clock.advance(days=31)
    provision_on_login(ctx, "idp", nurse())  # signs in after the sweep planned its warning

    def stale(self: AccountRepository, tenant_id: int, before: object) -> list[object]:
        return [(account_id, "ana@hospital.example", stale_login, None)]

    monkeypatch.setattr(AccountRepository, "inactive_since", stale)
    [report] = lifecycle.sweep(ctx)
    assert report.warned == []
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert "account.dormant" not in types
