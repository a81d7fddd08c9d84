"""The admin console's store (store/console.py) on SQLite and PostgreSQL: bootstrap links
are spent once and only before they expire, admin sessions are active until revoked or
expired, users are searched and paged by an indexed walk, audit pages and daily counts."""

from __future__ import annotations

from datetime import timedelta

from jitprov.core.audit import AuditEvent
from jitprov.core.identity import RoleGrant
from jitprov.core.provisioning import Changes
from jitprov.store.console import AuditFilter
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock, execute_raw, seed_account

HASH = "b" * 64


def _link(db: Database, clock: Clock, tenant: TenantRecord | None,
          minutes: int = 15) -> int:
    with UnitOfWork(db) as uow:
        link_id = uow.console.links.create(
            token_hash=HASH, tenant_id=tenant.id if tenant else None, created_by="cli",
            now=clock(), expires_at=clock() + timedelta(minutes=minutes))
        uow.commit()
    return link_id


def _redeem(db: Database, clock: Clock, token_hash: str = HASH):  # type: ignore[no-untyped-def]
    with UnitOfWork(db) as uow:
        spent = uow.console.links.redeem(token_hash, clock())
        uow.commit()
    return spent


def test_a_bootstrap_link_is_spent_once(db: Database, clock: Clock,
                                        tenant: TenantRecord) -> None:
    link_id = _link(db, clock, tenant)

    first, second = _redeem(db, clock), _redeem(db, clock)

    assert (link_id, tenant.id, "acme") == (first.link_id, first.tenant_id, first.tenant_slug)
    assert second is None


def test_a_bootstrap_link_without_tenant_names_none(db: Database, clock: Clock) -> None:
    _link(db, clock, None)

    spent = _redeem(db, clock)

    assert (None, None) == (spent.tenant_id, spent.tenant_slug)


def test_an_expired_or_unknown_bootstrap_link_is_not_spent(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    _link(db, clock, tenant, minutes=15)
    clock.advance(minutes=15)

    assert _redeem(db, clock) is None
    assert _redeem(db, clock, "c" * 64) is None


def _session(db: Database, clock: Clock, session_id: str, *, account_id: str | None = None,
             tenant: TenantRecord | None = None, hours: int = 8) -> None:
    with UnitOfWork(db) as uow:
        uow.console.sessions.create(
            session_id=session_id, kind="sso" if account_id else "bootstrap",
            account_id=account_id, bootstrap_link_id=None,
            tenant_id=tenant.id if tenant else None, display_name="it@acme.example",
            user_agent="Mozilla/5.0", now=clock(), expires_at=clock() + timedelta(hours=hours))
        uow.commit()


def _active(db: Database, clock: Clock, session_id: str):  # type: ignore[no-untyped-def]
    with UnitOfWork(db, readonly=True) as uow:
        return uow.console.sessions.get_active(session_id, clock())


def test_an_admin_session_is_active_until_it_expires(db: Database, clock: Clock,
                                                     tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant)
    _session(db, clock, "s" * 64, account_id=account_id, tenant=tenant)
    created = clock()

    clock.advance(hours=7, minutes=59)
    found = _active(db, clock, "s" * 64)
    clock.advance(minutes=1)

    assert ("sso", account_id, "acme", created, created) == (
        found.kind, found.account_id, found.tenant_slug, found.created_at, found.last_seen_at)
    assert _active(db, clock, "s" * 64) is None


def test_touch_moves_last_seen(db: Database, clock: Clock) -> None:
    _session(db, clock, "s" * 64)
    clock.advance(minutes=5)

    with UnitOfWork(db) as uow:
        uow.console.sessions.touch("s" * 64, clock())
        uow.commit()

    assert clock() == _active(db, clock, "s" * 64).last_seen_at


def test_revoke_and_revoke_all_end_sessions(db: Database, clock: Clock,
                                            tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant)
    for sid in ("1" * 64, "2" * 64):
        _session(db, clock, sid, account_id=account_id, tenant=tenant)
    _session(db, clock, "3" * 64)

    with UnitOfWork(db) as uow:
        first = uow.console.sessions.revoke("1" * 64, clock())
        again = uow.console.sessions.revoke("1" * 64, clock())
        of_account = uow.console.sessions.revoke_all(clock(), account_id=account_id)
        uow.commit()

    assert (True, False, 1) == (first, again, of_account)
    assert [None, None] == [_active(db, clock, s) for s in ("1" * 64, "2" * 64)]
    assert _active(db, clock, "3" * 64) is not None


def _account(db: Database, clock: Clock, tenant: TenantRecord, email: str | None,
             name: str, roles: tuple[str, ...] = ()) -> str:
    profile: dict[str, tuple[object, object]] = {"name": (None, name)}
    if email is not None:
        profile["email"] = (None, email)
    return seed_account(db, clock, tenant, changes=Changes(
        profile=profile, grants_added=frozenset(RoleGrant(r, "rule:okta/r") for r in roles)),
        provisioned_by="scim")


def test_search_users_pages_through_every_account_once(
        db: Database, clock: Clock, tenant: TenantRecord, other_tenant: TenantRecord) -> None:
    ids = {_account(db, clock, tenant, f"user{i:02}@acme.example", f"User {i}")
           for i in range(7)}
    ids |= {_account(db, clock, tenant, None, f"No Mail {i}") for i in range(3)}
    _account(db, clock, other_tenant, "user00@globex.example", "Elsewhere")

    seen: list[str] = []
    cursor = None
    with UnitOfWork(db, readonly=True) as uow:
        for _ in range(10):
            page = uow.console.reads.search_users(tenant.id, cursor=cursor, limit=3)
            seen += [r.id for r in page.rows]
            cursor = page.next_cursor
            if cursor is None:
                break

    assert ids == set(seen)
    assert len(seen) == len(set(seen))


def test_search_users_matches_email_prefix_name_substring_status_and_role(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    ada = _account(db, clock, tenant, "ada@acme.example", "Ada Lovelace", roles=("nurse",))
    bob = _account(db, clock, tenant, "bob@acme.example", "Bob 100%_Sure")
    with UnitOfWork(db) as uow:
        uow.accounts.set_status(bob, "deactivated", clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        reads = uow.console.reads

        def ids(**kw: object) -> list[str]:
            return [r.id for r in reads.search_users(tenant.id, **kw).rows]  # type: ignore[arg-type]

        assert [ada] == ids(query="ADA@")
        assert [ada] == ids(query="lovel")
        assert [bob] == ids(query="100%_")
        assert [] == ids(query="%x_")  # wildcards are literal
        assert [bob] == ids(status="deactivated")
        assert [ada] == ids(role="nurse")


def test_a_malformed_cursor_reads_as_the_first_page(db: Database, clock: Clock,
                                                    tenant: TenantRecord) -> None:
    ada = _account(db, clock, tenant, "ada@acme.example", "Ada")

    with UnitOfWork(db, readonly=True) as uow:
        page = uow.console.reads.search_users(tenant.id, cursor="garbage")

    assert [ada] == [r.id for r in page.rows]


def test_grants_sessions_and_open_requests_of_an_account(
        db: Database, clock: Clock, tenant: TenantRecord, connection: ConnectionRecord) -> None:
    account_id = seed_account(db, clock, tenant, identity=(connection, "sub-ada"))
    with UnitOfWork(db) as uow:
        uow.sessions.create(session_id="e" * 64, account_id=account_id,
                            connection_id=connection.id, subject="sub-ada", now=clock(),
                            expires_at=clock() + timedelta(hours=1), user_agent="UA")
        uow.sessions.create(session_id="f" * 64, account_id=account_id,
                            connection_id=connection.id, subject="sub-ada", now=clock(),
                            expires_at=clock() + timedelta(hours=1), user_agent="UA")
        uow.sessions.revoke("f" * 64, clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        reads = uow.console.reads
        grants = reads.grants(account_id)
        sessions = reads.sessions(account_id, clock())
        requests = reads.open_requests(account_id)
        tenant_of_request = reads.request_tenant(requests[0].id)

    assert [("editor", "rule:engineers"), ("viewer", "rule:everyone")] == [
        (g.role, g.source) for g in grants]
    assert [("e" * 64, "okta")] == [(s.id, s.connection_slug) for s in sessions]
    assert [("admin", "rule:admins")] == [(r.role, r.source) for r in requests]
    assert "acme" == tenant_of_request


def _events(db: Database, clock: Clock, tenant: TenantRecord, *types: str) -> None:
    with UnitOfWork(db) as uow:
        for i, type_ in enumerate(types):
            uow.audit.append(tenant.id, tenant.slug, AuditEvent(
                type_, "cli" if i % 2 else "admin-console:x", {"i": i},
                account_id="acc-1" if i == 0 else None), clock())
        uow.commit()


def test_audit_page_filters_and_pages_newest_first(db: Database, clock: Clock,
                                                   tenant: TenantRecord,
                                                   other_tenant: TenantRecord) -> None:
    _events(db, clock, tenant, "login.succeeded", "login.denied", "account.created",
            "login.succeeded", "login.pending")
    _events(db, clock, other_tenant, "login.succeeded")

    with UnitOfWork(db, readonly=True) as uow:
        reads = uow.console.reads
        first = reads.audit_page(tenant.id, AuditFilter(), limit=2)
        second = reads.audit_page(tenant.id, AuditFilter(), before_seq=first.next_before,
                                  limit=2)
        logins = reads.audit_page(tenant.id, AuditFilter(type="login."))
        exact = reads.audit_page(tenant.id, AuditFilter(type="login.succeeded"))
        by_actor = reads.audit_page(tenant.id, AuditFilter(actor="console"))
        by_account = reads.audit_page(tenant.id, AuditFilter(account_id="acc-1"))
        later = reads.audit_page(tenant.id, AuditFilter(since=clock() + timedelta(seconds=1)))

    assert [5, 4] == [e.seq for e in first.events]
    assert [3, 2] == [e.seq for e in second.events]
    assert [5, 4, 2, 1] == [e.seq for e in logins.events]
    assert [4, 1] == [e.seq for e in exact.events]
    assert [5, 3, 1] == [e.seq for e in by_actor.events]
    assert [1] == [e.seq for e in by_account.events]
    assert (None, ()) == (logins.next_before, later.events)


def test_daily_counts_group_by_utc_day(db: Database, clock: Clock,
                                       tenant: TenantRecord) -> None:
    clock.now = clock.now.replace(hour=23, minute=59)
    _events(db, clock, tenant, "login.succeeded", "login.succeeded", "login.denied")
    clock.advance(minutes=2)
    _events(db, clock, tenant, "login.succeeded", "tenant.created")

    with UnitOfWork(db, readonly=True) as uow:
        counts = uow.console.reads.daily_counts(
            tenant.id, ["login.succeeded", "login.denied"], clock() - timedelta(days=14))

    assert [("2026-11-28", "login.denied", 1), ("2026-11-28", "login.succeeded", 2),
            ("2026-11-29", "login.succeeded", 1)] == sorted(
        (c.day, c.type, c.count) for c in counts)


def test_dashboard_counts(db: Database, clock: Clock, tenant: TenantRecord) -> None:
    seed_account(db, clock, tenant)  # with a pending grant (see seed.first_login_changes)
    idle = _account(db, clock, tenant, "old@acme.example", "Old")
    execute_raw(db, "UPDATE account SET last_login_at = :t WHERE id = :id",
                t=clock() - timedelta(days=100), id=idle)

    with UnitOfWork(db, readonly=True) as uow:
        reads = uow.console.reads
        pending = reads.pending_approvals(tenant.id)
        dormant = reads.dormant_accounts(tenant.id, clock() - timedelta(days=90))
        backlog = reads.webhook_backlog(tenant.id)

    assert (1, 1, (0, 0)) == (pending, dormant, backlog)
