"""The Alembic migrations build exactly ``jitprov.store.tables.metadata``, and a database that
is not at the head revision is refused with the command that fixes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from jitprov.core.errors import DatabaseNotReady
from jitprov.store.database import Database
from jitprov.store.tables import metadata


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
