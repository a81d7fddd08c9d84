"""AccountRepository: accounts with their profile, groups, grants (with sources), pending grants
and identities, written from a ``Changes`` and read back as equal core values."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from jitprov.core.errors import NotFound, RaceLost
from jitprov.core.identity import Account, PendingGrant, RoleGrant
from jitprov.core.provisioning import Changes, apply_changes
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, IdentityLink, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import ISSUER, Clock, first_login_changes, seed_account, seed_connection


def by_email(uow: UnitOfWork, tenant: TenantRecord, *, email: str,
             external_id: str) -> list[tuple[Account, str]]:
    """Candidates found from no connection (id 0): by email only."""
    return list(uow.accounts.find_link_candidates(tenant.id, connection_id=0, email=email,
                                                  external_id=external_id))


def test_create_then_find_by_identity_returns_an_equal_account(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    changes = first_login_changes(clock)
    with UnitOfWork(db) as uow:
        account_id = uow.accounts.create(tenant_id=tenant.id, changes=changes,
                                         provisioned_by="jit", now=clock())
        uow.identities.add_identity(account_id=account_id, connection_id=connection.id,
                                    subject="sub-ada", issuer=ISSUER, now=clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        found = uow.accounts.find_by_identity(connection.id, "sub-ada")

    expected = Account(
        id=account_id, tenant="acme", status="active", kind="user",
        profile={"email": "Ada@Example.COM", "name": "Ada Lovelace"},
        profile_sources={"email": "rule:profile.email", "name": "rule:profile.name"},
        groups=frozenset({"engineering", "oncall"}),
        grants=frozenset({
            RoleGrant("editor", "rule:engineers"),
            RoleGrant("viewer", "rule:everyone", expires_at=clock.now + timedelta(days=30)),
        }),
        pending=frozenset({PendingGrant("admin", "rule:admins")}),
        provisioned_by="jit", external_id=None)
    assert expected == found


def test_create_writes_the_account_its_grants_and_pending_grants_in_one_statement_on_postgresql(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    changes = Changes(
        profile={"email": (None, "grace@example.com")},
        grants_added=frozenset({RoleGrant(f"role-{n}", "rule:many") for n in range(5)}),
        pending_added=frozenset({PendingGrant("admin", "rule:admins"),
                                 PendingGrant("auditor", "rule:audit")}))
    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        with UnitOfWork(db) as uow:
            account_id = uow.accounts.create(tenant_id=tenant.id, changes=changes,
                                             provisioned_by="jit", now=clock(),
                                             granted_by="test")
            uow.commit()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)

    with UnitOfWork(db, readonly=True) as uow:
        account = uow.accounts.get(account_id)
        grants = uow.grants.grants(tenant.id, account_id=account_id)
        requests = uow.grants.requests(tenant.id)
    assert changes.grants_added == account.grants
    assert changes.pending_added == account.pending
    assert {("test", clock.now)} == {(g.granted_by, g.granted_at) for g in grants}
    assert [("admin", "pending", clock.now), ("auditor", "pending", clock.now)] == sorted(
        (r.role, r.status, r.requested_at) for r in requests)
    writes = [s for s in statements if s.lstrip().startswith(("INSERT", "WITH"))]
    assert len(writes) == (1 if db.dialect == "postgresql" else 3)


def test_create_without_grants_writes_only_the_account(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        account_id = uow.accounts.create(
            tenant_id=tenant.id, changes=Changes(profile={"email": (None, "a@b.test")}),
            provisioned_by="jit", now=clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        account = uow.accounts.get(account_id)
    assert (frozenset(), frozenset()) == (account.grants, account.pending)


def test_create_for_a_tenant_deleted_meanwhile_raises_race_lost_and_writes_nothing(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with pytest.raises(RaceLost), UnitOfWork(db) as uow:
        uow.accounts.create(tenant_id=tenant.id + 1000, changes=first_login_changes(clock),
                            provisioned_by="jit", now=clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert [] == uow.accounts.list(tenant.id + 1000)
        assert [] == uow.grants.grants(tenant.id + 1000)


def test_find_by_identity_of_an_unbound_subject_returns_none(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    seed_account(db, clock, tenant, identity=(connection, "sub-ada"))

    with UnitOfWork(db, readonly=True) as uow:
        assert uow.accounts.find_by_identity(connection.id, "sub-bob") is None


def test_create_stores_kind_provisioned_by_and_external_id(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    with UnitOfWork(db) as uow:
        account_id = uow.accounts.create(
            tenant_id=tenant.id, changes=Changes(profile={"email": (None, "ops@acme.test")}),
            provisioned_by="scim", now=clock(), kind="service", external_id="ext-42")
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        account = uow.accounts.get(account_id)
    assert ("service", "scim", "ext-42") == (account.kind, account.provisioned_by,
                                             account.external_id)


def test_apply_writes_profile_groups_grants_revocations_and_withdrawals(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant, changes=Changes(
        profile={"email": (None, "ada@old.example"), "name": (None, "Ada")},
        groups_added=frozenset({"engineering", "oncall"}),
        grants_added=frozenset({RoleGrant("editor", "rule:engineers"),
                                RoleGrant("viewer", "scim")}),
        pending_added=frozenset({PendingGrant("admin", "rule:admins"),
                                 PendingGrant("auditor", "rule:audit")})))
    changes = Changes(
        profile={"email": ("ada@old.example", "Ada@New.Example")},
        groups_added=frozenset({"research"}), groups_removed=frozenset({"oncall"}),
        grants_added=frozenset({RoleGrant("researcher", "rule:research")}),
        grants_revoked=frozenset({RoleGrant("editor", "rule:engineers")}),
        pending_withdrawn=frozenset({PendingGrant("admin", "rule:admins")}))
    clock.advance(hours=1)

    with UnitOfWork(db) as uow:
        before = uow.accounts.get(account_id)
        uow.accounts.apply(before, changes, clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        after = uow.accounts.view(account_id)
        by_new_email = by_email(uow, tenant, email="ada@new.example", external_id="none")
        by_old_email = by_email(uow, tenant, email="ada@old.example", external_id="none")
    assert apply_changes(before, changes) == after.account
    assert frozenset({RoleGrant("viewer", "scim"), RoleGrant("researcher", "rule:research")}) \
        == after.account.grants
    assert frozenset({PendingGrant("auditor", "rule:audit")}) == after.account.pending
    assert frozenset({"engineering", "research"}) == after.account.groups
    assert clock.now == after.updated_at
    assert [account_id] == [a.id for a, _ in by_new_email]
    assert [] == by_old_email


def test_apply_of_empty_changes_leaves_the_account_untouched(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant)
    created_at = clock.now
    clock.advance(hours=1)

    with UnitOfWork(db) as uow:
        before = uow.accounts.get(account_id)
        uow.accounts.apply(before, Changes(), clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        after = uow.accounts.view(account_id)
    assert (before, created_at) == (after.account, after.updated_at)


def test_find_link_candidates_matches_email_case_insensitively(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord) -> None:
    ada = seed_account(db, clock, tenant)  # email Ada@Example.COM
    seed_account(db, clock, other_tenant)  # same email, other tenant

    with UnitOfWork(db, readonly=True) as uow:
        lower = by_email(uow, tenant, email="ada@example.com", external_id="sub-x")
        upper = by_email(uow, tenant, email="ADA@EXAMPLE.COM", external_id="sub-x")
        other = by_email(uow, tenant, email="bob@example.com", external_id="sub-x")
    assert [(ada, "email")] == [(a.id, how) for a, how in lower]
    assert [(ada, "email")] == [(a.id, how) for a, how in upper]
    assert [] == other


def test_find_link_candidates_matches_external_id_only_for_its_connection(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    scim = seed_account(db, clock, tenant, provisioned_by="scim", external_id="sub-1",
                        external_id_connection_id=connection.id,
                        changes=Changes(profile={"email": (None, "scim@acme.test")}))
    seed_account(db, clock, tenant, provisioned_by="scim", external_id="sub-2",
                 changes=Changes(profile={"email": (None, "unbound@acme.test")}))

    with UnitOfWork(db, readonly=True) as uow:
        by_scim_id = uow.accounts.find_link_candidates(
            tenant.id, connection_id=connection.id, email=None, external_id="sub-1")
        from_other_connection = uow.accounts.find_link_candidates(
            tenant.id, connection_id=connection.id + 1, email=None, external_id="sub-1")
        unbound = uow.accounts.find_link_candidates(
            tenant.id, connection_id=connection.id, email=None, external_id="sub-2")
        by_both = uow.accounts.find_link_candidates(
            tenant.id, connection_id=connection.id, email="SCIM@acme.test", external_id="sub-1")
    assert [(scim, "external_id")] == [(a.id, how) for a, how in by_scim_id]
    assert [] == from_other_connection
    assert [] == unbound
    assert [(scim, "external_id")] == [(a.id, how) for a, how in by_both]


def test_email_is_stored_lowercase_for_lookup_and_as_given_in_the_profile(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant)

    with db.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT email, email_lower FROM account WHERE id = :id"),
                              {"id": account_id}).one()
    assert ("Ada@Example.COM", "ada@example.com") == tuple(stored)


def test_add_identity_twice_for_the_same_subject_raises_race_lost(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    first = seed_account(db, clock, tenant, identity=(connection, "sub-ada"))
    second = seed_account(db, clock, tenant)

    with UnitOfWork(db) as uow, pytest.raises(RaceLost):
        uow.identities.add_identity(account_id=second, connection_id=connection.id,
                                    subject="sub-ada", issuer=ISSUER, now=clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:  # the service runs the unit of work again
        still_bound = uow.accounts.find_by_identity(connection.id, "sub-ada")
    assert still_bound is not None
    assert first == still_bound.id


def test_the_same_subject_may_be_bound_once_per_connection(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    entra = seed_connection(db, clock, tenant, "entra")
    ada = seed_account(db, clock, tenant, identity=(connection, "sub-1"))
    bob = seed_account(db, clock, tenant, identity=(entra, "sub-1"))

    with UnitOfWork(db, readonly=True) as uow:
        found = (uow.accounts.find_by_identity(connection.id, "sub-1"),
                 uow.accounts.find_by_identity(entra.id, "sub-1"))
    assert (ada, bob) == tuple(a.id if a else None for a in found)


def test_list_and_view_include_identities(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    entra = seed_connection(db, clock, tenant, "entra")
    ada = seed_account(db, clock, tenant, identity=(connection, "sub-ada"))
    clock.advance(seconds=1)
    bob = seed_account(db, clock, tenant, identity=(entra, "sub-bob"))
    with UnitOfWork(db) as uow:
        uow.identities.add_identity(account_id=ada, connection_id=entra.id, subject="ada-2",
                                    issuer="https://entra.example", now=clock())
        uow.commit()
    seed_account(db, clock, other_tenant)

    with UnitOfWork(db, readonly=True) as uow:
        listed = uow.accounts.list(tenant.id)
        viewed = uow.accounts.view(ada)

    assert [(ada, "acme"), (bob, "acme")] == [(v.account.id, v.tenant_slug) for v in listed]
    assert (IdentityLink("okta", "sub-ada", ISSUER),
            IdentityLink("entra", "ada-2", "https://entra.example")) == viewed.identities
    assert viewed == listed[0]
    assert (IdentityLink("entra", "sub-bob", ISSUER),) == listed[1].identities


def test_list_pages_oldest_first(db: Database, clock: Clock, tenant: TenantRecord) -> None:
    ids = []
    for _ in range(3):
        ids.append(seed_account(db, clock, tenant))
        clock.advance(seconds=1)

    with UnitOfWork(db, readonly=True) as uow:
        pages = [[v.account.id for v in uow.accounts.list(tenant.id, limit=2, offset=o)]
                 for o in (0, 2)]
    assert [ids[:2], ids[2:]] == pages


def test_jit_account_is_created_logged_in_and_record_login_moves_last_login_at(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    created_at = clock.now
    account_id = seed_account(db, clock, tenant, identity=(connection, "sub-ada"))
    with UnitOfWork(db, readonly=True) as uow:
        at_creation = uow.accounts.view(account_id).last_login_at
    clock.advance(days=2, microseconds=250)

    with UnitOfWork(db) as uow:
        uow.identities.record_login(account_id=account_id, connection_id=connection.id,
                                    subject="sub-ada", now=clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert (created_at, clock.now) == (at_creation,
                                           uow.accounts.view(account_id).last_login_at)


def test_queue_link_returns_none_for_a_second_open_link(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    account_id = seed_account(db, clock, tenant)

    def queue(uow: UnitOfWork) -> int | None:
        return uow.identities.queue_link(
            tenant_id=tenant.id, connection_id=connection.id, subject="sub-new",
            issuer=ISSUER, account_id=account_id, email="ada@example.com",
            claims={"email": "ada@example.com"},
            now=clock())

    with UnitOfWork(db) as uow:
        first = queue(uow)
        uow.commit()
    with UnitOfWork(db) as uow:
        second = queue(uow)
        uow.commit()

    with db.engine.connect() as conn:
        open_links = conn.execute(sa.text(
            "SELECT subject, status FROM pending_link WHERE connection_id = :c"),
            {"c": connection.id}).all()
    assert (True, None) == (isinstance(first, int), second)
    assert [("sub-new", "pending")] == [tuple(r) for r in open_links]


def test_get_and_view_of_an_unknown_account_raise_not_found(db: Database) -> None:
    with UnitOfWork(db, readonly=True) as uow:
        with pytest.raises(NotFound):
            uow.accounts.get("00000000-0000-0000-0000-000000000000")
        with pytest.raises(NotFound):
            uow.accounts.view("00000000-0000-0000-0000-000000000000")
