"""SessionRepository: a session is active while it is unrevoked, unexpired and its account is
active; revoke and revoke_all report what they revoked."""

from __future__ import annotations

from datetime import timedelta

from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, SessionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock, execute_raw, seed_account

SID = "a" * 64  # SHA-256 hex of a cookie value


def create(db: Database, clock: Clock, account_id: str, session_id: str = SID, *,
           connection: ConnectionRecord | None = None,
           lifetime: timedelta = timedelta(hours=8)) -> None:
    with UnitOfWork(db) as uow:
        uow.sessions.create(session_id=session_id, account_id=account_id,
                            connection_id=connection.id if connection else None,
                            subject="sub-ada" if connection else None, now=clock(),
                            expires_at=clock() + lifetime, user_agent="Mozilla/5.0")
        uow.commit()


def get_active(db: Database, clock: Clock, session_id: str = SID) -> SessionRecord | None:
    with UnitOfWork(db, readonly=True) as uow:
        return uow.sessions.get_active(session_id, clock())


def test_get_active_returns_the_created_session(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    account_id = seed_account(db, clock, tenant, identity=(connection, "sub-ada"))
    create(db, clock, account_id, connection=connection)
    created_at = clock.now
    clock.advance(hours=7, minutes=59)

    expected = SessionRecord(id=SID, account_id=account_id, connection_slug="okta",
                             subject="sub-ada", created_at=created_at,
                             expires_at=created_at + timedelta(hours=8))
    assert expected == get_active(db, clock)


def test_a_session_without_connection_is_active_with_no_connection_slug(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant)
    create(db, clock, account_id)

    session = get_active(db, clock)
    assert session is not None
    assert (None, None) == (session.connection_slug, session.subject)


def test_get_active_of_an_unknown_session_returns_none(db: Database, clock: Clock) -> None:
    assert get_active(db, clock, "f" * 64) is None


def test_an_expired_session_is_not_active(db: Database, clock: Clock,
                                          tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant)
    create(db, clock, account_id, lifetime=timedelta(hours=8))
    clock.advance(hours=8)  # expires_at is the first instant it is no longer valid

    assert get_active(db, clock) is None


def test_a_revoked_session_is_not_active_and_revoking_twice_reports_false(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant)
    create(db, clock, account_id)

    with UnitOfWork(db) as uow:
        first = uow.sessions.revoke(SID, clock())
        second = uow.sessions.revoke(SID, clock())
        uow.commit()

    assert (True, False) == (first, second)
    assert get_active(db, clock) is None


def test_a_session_of_a_deactivated_account_is_not_active(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    account_id = seed_account(db, clock, tenant)
    create(db, clock, account_id)
    assert get_active(db, clock) is not None

    execute_raw(db, "UPDATE account SET status = 'deactivated' WHERE id = :id", id=account_id)

    assert get_active(db, clock) is None


def test_revoke_all_revokes_the_accounts_unrevoked_sessions_and_counts_them(
        db: Database, clock: Clock, tenant: TenantRecord) -> None:
    ada = seed_account(db, clock, tenant)
    bob = seed_account(db, clock, tenant)
    for sid in ("1" * 64, "2" * 64, "3" * 64):
        create(db, clock, ada, sid)
    create(db, clock, bob, "4" * 64)
    with UnitOfWork(db) as uow:
        uow.sessions.revoke("3" * 64, clock())
        uow.commit()

    with UnitOfWork(db) as uow:
        revoked = uow.sessions.revoke_all(ada, clock())
        again = uow.sessions.revoke_all(ada, clock())
        uow.commit()

    assert (2, 0) == (revoked, again)
    assert [None, None, None] == [get_active(db, clock, s) for s in ("1" * 64, "2" * 64,
                                                                     "3" * 64)]
    assert get_active(db, clock, "4" * 64) is not None
