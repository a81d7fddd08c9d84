"""``OneTransaction``: the units of work of several services run as savepoints of one
transaction, so ``jitprov apply`` commits all of them or none (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jitprov.core.errors import Conflict, InvalidInput
from jitprov.services import admin, audit_export, lifecycle
from jitprov.services.context import PolicyCache, ServiceContext
from jitprov.store.one_transaction import OneTransaction


def test_nothing_is_durable_before_the_outer_commit(ctx: ServiceContext) -> None:
    with OneTransaction(ctx.db) as db:
        inner = replace(ctx, db=db, policies=PolicyCache())
        admin.create_tenant(inner, "hospital")
        lifecycle.set_audit_retention(inner, "hospital", 400)
        assert [t.slug for t in admin.list_tenants(inner)] == ["hospital"]  # seen inside
    assert admin.list_tenants(ctx) == []


def test_a_commit_keeps_every_unit_of_work_and_their_audit_events(ctx: ServiceContext) -> None:
    transaction = OneTransaction(ctx.db)
    with transaction as db:
        inner = replace(ctx, db=db, policies=PolicyCache())
        admin.create_tenant(inner, "hospital")
        lifecycle.set_audit_retention(inner, "hospital", 400)
        transaction.commit()
    assert lifecycle.lifecycle_policy(ctx, "hospital")[1] == 400
    assert [e.type for e in audit_export.iter_events(ctx, "hospital")] == [
        "tenant.created", "tenant.policy_changed"]


def test_a_refused_step_rolls_back_its_own_savepoint_then_everything(
        ctx: ServiceContext) -> None:
    with pytest.raises(InvalidInput), OneTransaction(ctx.db) as db:
        inner = replace(ctx, db=db, policies=PolicyCache())
        admin.create_tenant(inner, "hospital")
        with pytest.raises(Conflict):
            admin.create_tenant(inner, "hospital")
        assert [t.slug for t in admin.list_tenants(inner)] == ["hospital"]  # still usable
        lifecycle.set_audit_retention(inner, "hospital", 1)  # under the minimum: refused
    assert admin.list_tenants(ctx) == []
