"""UnitOfWork: one transaction; leaving the block without ``commit()`` rolls back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitprov.core.audit import AuditEvent
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import ISSUER, Clock, first_login_changes, row_counts


def test_commit_makes_writes_visible_to_the_next_unit_of_work(db: Database,
                                                              clock: Clock) -> None:
    with UnitOfWork(db) as uow:
        uow.config.tenants.create("acme", "Acme", clock())
        uow.commit()

    with UnitOfWork(db, readonly=True) as uow:
        assert ["acme"] == [t.slug for t in uow.config.tenants.list()]


def test_leaving_without_commit_writes_nothing_in_any_repository(
        db: Database, clock: Clock, tenant: TenantRecord,
        connection: ConnectionRecord) -> None:
    before = row_counts(db)

    with UnitOfWork(db) as uow:
        uow.config.tenants.create("initech", "Initech", clock())
        uow.config.connections.add(tenant_id=tenant.id, slug="entra", kind="oidc", config={},
                                   secrets=None, mapping="", mapping_source="entra.yaml",
                                   now=clock())
        account_id = uow.accounts.create(tenant_id=tenant.id,
                                         changes=first_login_changes(clock),
                                         provisioned_by="jit", now=clock())
        uow.identities.add_identity(account_id=account_id, connection_id=connection.id,
                                    subject="sub-1", issuer=ISSUER, now=clock())
        uow.identities.queue_link(tenant_id=tenant.id, connection_id=connection.id,
                                  subject="sub-2", issuer=ISSUER, account_id=account_id,
                                  email="ada@example.com", claims={"email": "ada@example.com"},
                                  now=clock())
        uow.sessions.create(session_id="s" * 64, account_id=account_id,
                            connection_id=connection.id, subject="sub-1", now=clock(),
                            expires_at=clock() + timedelta(hours=8), user_agent=None)
        uow.logins.requests.create(state_id="r" * 64, connection_id=connection.id,
                                   return_to="/", data={}, now=clock(),
                                   expires_at=clock() + timedelta(minutes=10))
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("account.created", "test"),
                         clock())
        uow.outbox.add(tenant.id, "account.created", {"id": account_id}, clock())
        uow.config.admin_tokens.create("ci", "h" * 64, clock(), None)
        assert len(list(uow.audit.events(tenant.id))) == 1  # written, then dropped
        assert len(uow.outbox.pending()) == 1
        # leave without commit

    assert before == row_counts(db)


def test_an_exception_in_the_block_rolls_back_and_propagates(db: Database,
                                                             clock: Clock) -> None:
    with pytest.raises(LookupError), UnitOfWork(db) as uow:
        uow.config.tenants.create("acme", "Acme", clock())
        raise LookupError("boom")

    with UnitOfWork(db, readonly=True) as uow:
        assert [] == uow.config.tenants.list()
