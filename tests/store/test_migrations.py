"""The Alembic migrations build exactly ``jitprov.store.tables.metadata``, and a database that
is not at the head revision is refused with the command that fixes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from jitprov.core.errors import DatabaseNotReady
from jitprov.services.context import ServiceContext
from jitprov.store.database import Database
from jitprov.store.tables import metadata
from jitprov.testing.builders import setup_connection


def test_migrations_produce_exactly_the_tables_metadata(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)

    assert [] == differences


def test_a_migrated_database_is_current_and_upgrading_again_changes_nothing(
        db: Database) -> None:
    db.require_current()

    head = db.head_revision()
    assert (head, head) == db.upgrade()


def test_an_unmigrated_sqlite_file_is_refused_with_the_upgrade_command(
        tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    db = Database.connect(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseNotReady, match="jitprov db upgrade") as refused:
            db.require_current()
    finally:
        db.dispose()

    assert "is not migrated" in str(refused.value)


def test_downgrading_0014_with_link_history_and_scim_deletions_then_upgrading_again(
        ctx: ServiceContext) -> None:
    """0013 holds one link per (connection, subject, status) and no SCIM deletion: the
    downgrade keeps the newest of several decided links and gives a deleted user its userName
    back where it is still free; the upgrade after it builds exactly the tables again."""
    from alembic import command

    from jitprov.store import tables as t

    db = ctx.db
    setup_connection(ctx)
    now = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    with db.engine.begin() as conn:
        tenant_id, connection_id = conn.execute(sa.select(t.connection.c.tenant_id,
                                                          t.connection.c.id)).one()

        def account(account_id: str, user_name: str, deleted: datetime | None) -> None:
            conn.execute(t.account.insert().values(
                id=account_id, tenant_id=tenant_id, status="deactivated" if deleted else "active",
                kind="user", provisioned_by="scim", profile={}, profile_sources={},
                idp_groups=[], user_name=user_name,
                user_name_lower=None if deleted else user_name.lower(), scim={}, version=1,
                created_at=now, updated_at=now, scim_deleted_at=deleted))

        account("ana-old", "Ana@hospital.example", now)  # deleted; its userName is free
        account("bo-old", "bo@hospital.example", now - timedelta(days=2))  # deleted, then...
        account("bo-new", "bo@hospital.example", None)  # ...re-created: the name is taken
        for status in ("cleared", "cleared", "refused"):  # refused and cleared twice, refused
            conn.execute(t.pending_link.insert().values(
                tenant_id=tenant_id, connection_id=connection_id, subject="ana-entra",
                issuer="https://idp.example", account_id="ana-old", claims={},
                status=status, created_at=now))
    config = db.alembic_config()

    command.downgrade(config, "0013")

    with db.engine.connect() as conn:
        names = dict(conn.execute(sa.text("SELECT id, user_name_lower FROM account")).all())
        links = conn.execute(sa.text(
            "SELECT id, status FROM pending_link ORDER BY id")).all()
    assert names == {"ana-old": "ana@hospital.example", "bo-old": None,
                     "bo-new": "bo@hospital.example"}
    assert [tuple(r) for r in links] == [(2, "cleared"), (3, "refused")]

    db.upgrade()

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert conn.execute(sa.select(sa.func.count()).select_from(t.account)).scalar() == 3


def test_downgrading_0016_drops_the_logout_columns_and_upgrading_rebuilds_them(
        ctx: ServiceContext) -> None:
    """Sessions survive the round trip (without what an IdP's logout names); the replay
    cache of logout tokens is dropped and built again empty."""
    from alembic import command

    from jitprov.services.login.flow import provision_on_login
    from jitprov.store import tables as t
    from jitprov.testing.builders import nurse

    setup_connection(ctx)
    provision_on_login(ctx, "idp", nurse())
    db = ctx.db

    command.downgrade(db.alembic_config(), "0015")

    with db.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("session")}
        assert "idp_session_id" not in columns
        assert not sa.inspect(conn).has_table("token_replay")
    db.upgrade()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert conn.execute(sa.select(sa.func.count()).select_from(t.session)).scalar() == 1
