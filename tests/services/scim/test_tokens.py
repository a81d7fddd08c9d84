"""SCIM client tokens: shown once, hashed, several active, tenant-bound, revocable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitprov.core.errors import InvalidInput, NotFound
from jitprov.services import admin
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import setup_connection
from tests.conftest import Clock


def test_only_the_hash_is_stored_and_several_tokens_work(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    _, first = scim_tokens.create_token(ctx, "hospital", "entra")
    _, second = scim_tokens.create_token(ctx, "hospital", "entra-next")
    assert first.startswith("jps_") and first != second
    with UnitOfWork(ctx.db, readonly=True) as uow:
        found = uow.scim.tokens.find_active(hash_token(first), ctx.clock())
    assert found is not None and found.token_hash == hash_token(first)
    assert scim_tokens.authenticate(ctx, "hospital", first) is not None
    principal = scim_tokens.authenticate(ctx, "hospital", second)
    assert principal is not None and principal.actor == "scim:entra-next"


def test_a_token_of_another_tenant_or_no_token_is_refused(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    admin.create_tenant(ctx, "clinic")
    _, token = scim_tokens.create_token(ctx, "hospital", "entra")
    assert scim_tokens.authenticate(ctx, "clinic", token) is None
    assert scim_tokens.authenticate(ctx, "nowhere", token) is None
    for bad in (None, "", "jps_", token + "x", "Bearer " + token, token.upper()):
        assert scim_tokens.authenticate(ctx, "hospital", bad) is None


def test_revoked_and_expired_tokens_are_refused(ctx: ServiceContext, clock: Clock) -> None:
    setup_connection(ctx)
    token_id, token = scim_tokens.create_token(ctx, "hospital", "entra")
    _, short = scim_tokens.create_token(ctx, "hospital", "short",
                                        expires_in=timedelta(days=1))
    assert scim_tokens.authenticate(ctx, "hospital", token) is not None
    scim_tokens.revoke_token(ctx, "hospital", token_id)
    assert scim_tokens.authenticate(ctx, "hospital", token) is None
    clock.advance(days=2)
    ctx.caches.clear()
    assert scim_tokens.authenticate(ctx, "hospital", short) is None
    listed = {t.name: t for t in scim_tokens.list_tokens(ctx, "hospital")}
    assert listed["entra"].revoked_at is not None


def test_a_token_bound_to_a_connection_of_another_tenant_is_refused(
        ctx: ServiceContext) -> None:
    setup_connection(ctx)
    setup_connection(ctx, tenant="clinic", slug="clinic-idp")
    with pytest.raises(InvalidInput):
        scim_tokens.create_token(ctx, "hospital", "x", connection="clinic-idp")
    with pytest.raises(NotFound):
        scim_tokens.revoke_token(ctx, "clinic", 1)


def test_scim_policy_is_validated_and_audited(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    with pytest.raises(InvalidInput):
        scim_tokens.set_scim_policy(ctx, "hospital", delete="shred")
    policy = scim_tokens.set_scim_policy(ctx, "hospital", delete="erase", on_existing="adopt")
    assert (policy.delete, policy.on_existing) == ("erase", "adopt")
    with UnitOfWork(ctx.db, readonly=True) as uow:
        settings = uow.config.tenants.settings(uow.config.tenants.get("hospital").id)
    assert scim_tokens.scim_policy(settings) == policy
