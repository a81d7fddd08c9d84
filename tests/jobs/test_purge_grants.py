"""The housekeeping thread of ``serve`` sweeps expired grants (and announces them)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jitprov.core.audit import AuditEvent
from jitprov.jobs import purge
from jitprov.services import accounts, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock


def test_the_periodic_housekeeping_removes_expired_grants(ctx: ServiceContext,
                                                          clock: Clock) -> None:
    setup_connection(ctx)
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    assert account_id is not None
    accounts.grant_role(ctx, "hospital", account_id, "keys", reason="night", actor="cli",
                        expires_in_days=1)
    clock.advance(days=1)
    stop = threading.Event()
    thread = purge.run_periodically(ctx, timedelta(seconds=0.05), stop)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [
                e for e in audit_export.iter_events(ctx, "hospital")
                if e.type == "grant.expired"]:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert [e.data["role"] for e in audit_export.iter_events(ctx, "hospital")
            if e.type == "grant.expired"] == ["keys"]
    with UnitOfWork(ctx.db, readonly=True) as uow:  # the row itself is gone
        stored = uow.grants.grants(uow.config.tenants.get("hospital").id)
    assert "keys" not in {g.role for g in stored}


def _waiting_on_a_lock(ctx: ServiceContext, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        while time.monotonic() < deadline:
            if c.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'")).scalar():
                return True
            time.sleep(0.02)
    return False


def _two_tenants_with_expired_grants(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    setup_connection(ctx, tenant="clinic", slug="clinic-idp")
    for tenant, slug in (("hospital", "idp"), ("clinic", "clinic-idp")):
        account_id = provision_on_login(ctx, slug, nurse()).account_id
        assert account_id is not None
        for n in range(5):
            accounts.grant_role(ctx, tenant, account_id, f"keys-{n}", reason="night",
                                actor="cli", expires_in_days=1)
    clock.advance(days=1)


def _stored(ctx: ServiceContext, tenant: str) -> set[str]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return {g.role for g in uow.grants.grants(uow.config.tenants.get(tenant).id)}


def test_the_sweep_commits_each_tenant_apart_and_never_waits_holding_another_head(
        ctx: ServiceContext, clock: Clock) -> None:
    """A login of one tenant holding its audit head does not hold up the other tenant's
    expiry: the sweep commits tenant by tenant, appending each tenant's events last."""
    if ctx.db.dialect != "postgresql":
        pytest.skip("SQLite runs write transactions one at a time (the write lock)")
    _two_tenants_with_expired_grants(ctx, clock)
    done: list[int] = []
    with UnitOfWork(ctx.db) as uow:  # a clinic write in progress, holding its chain head
        clinic = uow.config.tenants.get("clinic")
        uow.audit.append(clinic.id, clinic.slug, AuditEvent("test.hold", "test", {}),
                         clock.now)
        uow.audit.flush()  # written: the clinic's head is locked until this unit ends
        sweeper = threading.Thread(target=lambda: done.append(purge.purge_expired_grants(ctx)))
        sweeper.start()
        assert _waiting_on_a_lock(ctx)
        # the hospital's expiry is committed and announced while the clinic's waits
        assert not {r for r in _stored(ctx, "hospital") if r.startswith("keys")}
        assert len([e for e in audit_export.iter_events(ctx, "hospital")
                    if e.type == "grant.expired"]) == 5
        uow.commit()
    sweeper.join(30)
    assert done == [10]
    assert not {r for r in _stored(ctx, "clinic") if r.startswith("keys")}
    assert all(report.intact for report in audit_export.verify(ctx))


def test_two_sweepers_at_once_remove_and_announce_each_grant_once(
        ctx: ServiceContext, clock: Clock) -> None:
    _two_tenants_with_expired_grants(ctx, clock)
    start = threading.Barrier(2)
    removed: list[int] = []

    def sweep() -> None:
        start.wait()
        removed.append(accounts.remove_expired_grants(ctx, batch=3))

    sweepers = [threading.Thread(target=sweep) for _ in range(2)]
    for s in sweepers:
        s.start()
    for s in sweepers:
        s.join(30)
    assert sum(removed) == 10
    for tenant in ("hospital", "clinic"):
        expired = sorted(e.data["role"] for e in audit_export.iter_events(ctx, tenant)
                         if e.type == "grant.expired")
        assert expired == [f"keys-{n}" for n in range(5)]
    with UnitOfWork(ctx.db, readonly=True) as uow:
        revoked = [p for _, k, p in uow.outbox.pending(limit=1000) if k == "role.revoked"]
    assert len(revoked) == 10
    assert all(report.intact for report in audit_export.verify(ctx))
