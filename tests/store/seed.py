"""Rows the store tests build on, written through the repositories in committed units of work."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa

from jitprov.core.identity import PendingGrant, ProvisionedBy, RoleGrant
from jitprov.core.provisioning import Changes
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.tables import metadata
from jitprov.store.unit_of_work import UnitOfWork

ISSUER = "https://idp.example.com"


class Clock(Protocol):
    """The hand-moved clock of ``tests/conftest.py``."""

    now: datetime

    def __call__(self) -> datetime: ...

    def advance(self, **kwargs: float) -> None: ...


def seed_tenant(db: Database, clock: Clock, slug: str = "acme") -> TenantRecord:
    with UnitOfWork(db) as uow:
        tenant = uow.config.tenants.create(slug, slug.title(), clock())
        uow.commit()
    return tenant


def seed_connection(db: Database, clock: Clock, tenant: TenantRecord,
                    slug: str = "okta") -> ConnectionRecord:
    with UnitOfWork(db) as uow:
        connection = uow.config.connections.add(
            tenant_id=tenant.id, slug=slug, kind="oidc", config={"issuer": ISSUER},
            secrets=None, mapping="rules: []\n", mapping_source=f"{slug}.yaml", now=clock())
        uow.commit()
    return connection


def first_login_changes(clock: Clock) -> Changes:
    """What a first login typically writes: profile, groups, rule grants, a pending grant."""
    return Changes(
        profile={"email": (None, "Ada@Example.COM"), "name": (None, "Ada Lovelace")},
        groups_added=frozenset({"engineering", "oncall"}),
        grants_added=frozenset({
            RoleGrant("editor", "rule:engineers"),
            RoleGrant("viewer", "rule:everyone", expires_at=clock() + timedelta(days=30)),
        }),
        pending_added=frozenset({PendingGrant("admin", "rule:admins")}),
    )


def seed_account(db: Database, clock: Clock, tenant: TenantRecord, *,
                 changes: Changes | None = None,
                 identity: tuple[ConnectionRecord, str] | None = None,
                 provisioned_by: ProvisionedBy = "jit",
                 external_id: str | None = None,
                 external_id_connection_id: int | None = None) -> str:
    """An account (optionally bound to ``identity`` = (connection, subject)); returns its id."""
    with UnitOfWork(db) as uow:
        account_id = uow.accounts.create(
            tenant_id=tenant.id, changes=changes or first_login_changes(clock),
            provisioned_by=provisioned_by, now=clock(), external_id=external_id,
            external_id_connection_id=external_id_connection_id)
        if identity is not None:
            connection, subject = identity
            uow.identities.add_identity(account_id=account_id, connection_id=connection.id,
                                        subject=subject, issuer=ISSUER, now=clock())
        uow.commit()
    return account_id


def execute_raw(db: Database, sql: str, **params: object) -> None:
    """Run one SQL statement in its own committed transaction, bypassing the repositories."""
    with db.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def row_counts(db: Database) -> dict[str, int]:
    """Rows per table, read with raw SQL."""
    with db.engine.connect() as conn:
        return {table.name: int(conn.execute(
                    sa.text(f'SELECT COUNT(*) FROM "{table.name}"')).scalar_one())
                for table in metadata.sorted_tables}
