"""The triggers the session cache relies on (migrations 0019, 0021): every change to what a
signed-in view shows is announced (PostgreSQL: a notification with the account id; SQLite: the
counter moves), and the writes that change nothing it shows (a new session, a device's activity
clock, a login's ``last_login_at``, a tenant's display name; on SQLite, the rows of an account
nobody is signed in as) are not."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa

from jitprov.store import auth_changes
from jitprov.store.database import Database
from jitprov.store.records import ConnectionRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

from .seed import Clock, execute_raw, seed_account

MIGRATION = __import__("importlib").import_module(
    "jitprov.store.migrations.versions.0019_auth_changes")


class Announced:
    """What the database announced since the last :meth:`take`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.postgres = db.dialect == "postgresql"
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        if self.postgres:
            self._conn = psycopg.connect(auth_changes.conninfo(db.url), autocommit=True)
            self._conn.execute(f"LISTEN {auth_changes.CHANNEL}")
        self._version = self._read_version()

    def _read_version(self) -> int:
        with UnitOfWork(self.db, readonly=True) as uow:
            return uow.sessions.auth_version()

    def take(self) -> set[str] | int:
        """PostgreSQL: the payloads received; SQLite: how far the counter moved."""
        if self._conn is not None:
            return {n.payload for n in self._conn.notifies(timeout=0.3)}
        before, self._version = self._version, self._read_version()
        return self._version - before

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@pytest.fixture
def announced(db: Database, request: pytest.FixtureRequest) -> Iterator[Announced]:
    if db.pooling.mode != "auto" or "pgbouncer" in request.node.name:
        pytest.skip("a LISTEN needs a direct connection (the cache is off through a pooler)")
    watcher = Announced(db)
    yield watcher
    watcher.close()


def _nothing(watcher: Announced) -> set[str] | int:
    return set() if watcher.postgres else 0


def _account(watcher: Announced, account_id: str) -> set[str] | int:
    return {account_id} if watcher.postgres else 1


def test_changes_to_the_signed_in_view_are_announced(
        db: Database, clock: Clock, tenant: TenantRecord, connection: ConnectionRecord,
        announced: Announced) -> None:
    account_id = seed_account(db, clock, tenant, identity=(connection, "sub-1"))
    taken = announced.take()  # its rows, inserted: no session, so no node holds its view
    assert taken == ({account_id} if announced.postgres else 0)  # (PostgreSQL names it)
    with UnitOfWork(db) as uow:
        uow.sessions.create(session_id="s" * 64, account_id=account_id,
                            connection_id=connection.id, subject="sub-1", now=clock(),
                            expires_at=clock() + timedelta(hours=1), user_agent=None)
        uow.commit()
    assert announced.take() == _nothing(announced)  # a new session shows nothing new
    with UnitOfWork(db) as uow:
        uow.sessions.touch("s" * 64, clock())
        uow.commit()
    assert announced.take() == _nothing(announced)  # a device's activity clock
    execute_raw(db, "UPDATE account SET last_login_at = :now, version = version + 1 "
                "WHERE id = :id", now=clock(), id=account_id)
    assert announced.take() == _nothing(announced)  # a returning login's clock
    execute_raw(db, "INSERT INTO role_grant (account_id, role, source, granted_at, granted_by) "
                "VALUES (:id, 'viewer', 'admin', :now, 'admin')", id=account_id, now=clock())
    assert announced.take() == _account(announced, account_id)  # signed in: a new role shows
    execute_raw(db, "INSERT INTO identity (connection_id, subject, issuer, account_id, "
                "created_at) VALUES (:c, 'sub-2', 'https://idp.example', :id, :now)",
                c=connection.id, id=account_id, now=clock())
    assert announced.take() == _account(announced, account_id)
    execute_raw(db, "UPDATE tenant SET name = 'Acme Inc' WHERE id = :id", id=tenant.id)
    assert announced.take() == _nothing(announced)  # the view shows the slug only

    execute_raw(db, "UPDATE account SET status = 'deactivated' WHERE id = :id", id=account_id)
    assert announced.take() == _account(announced, account_id)
    execute_raw(db, "UPDATE session SET device_id = NULL, idle_seconds = 300 WHERE id = :id",
                id="s" * 64)  # bound to a shared device: its idle lock applies from now
    assert announced.take() == _account(announced, account_id)
    execute_raw(db, "UPDATE session SET revoked_at = :now WHERE id = :id", now=clock(),
                id="s" * 64)
    assert announced.take() == _account(announced, account_id)
    execute_raw(db, "INSERT INTO role_block (account_id, role, reason, blocked_by, blocked_at) "
                "VALUES (:id, 'editor', 'r', 'admin', :now)", id=account_id, now=clock())
    assert announced.take() == _account(announced, account_id)
    execute_raw(db, "DELETE FROM role_grant WHERE account_id = :id", id=account_id)
    taken = announced.take()
    assert taken == {account_id} if announced.postgres else taken == 3  # (three rows)
    execute_raw(db, "UPDATE tenant SET slug = 'acme2' WHERE id = :id", id=tenant.id)
    assert announced.take() == ({"*"} if announced.postgres else 1)  # every account


def test_every_column_of_a_watched_table_is_either_shown_or_quiet(db: Database) -> None:
    """A column added by a later migration must be named in 0019's lists (and its triggers
    rewritten), or a change to it would never reach the session cache."""
    inspector = sa.inspect(db.engine)
    for table, shown in MIGRATION.SHOWN.items():
        columns = {c["name"] for c in inspector.get_columns(table)}
        assert columns == set(shown) | set(MIGRATION.QUIET[table]), table


def test_a_later_migration_can_rebuild_the_session_table(db: Database) -> None:
    """SQLite checks every trigger when a batch migration renames its copy of ``session``
    into place; 0021's INSERT triggers read ``session``, so such a migration drops them
    before and writes them again after (0021's helpers), and they work as before."""
    if db.dialect != "sqlite":
        pytest.skip("SQLite's batch migrations")
    from alembic import op
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    quiet = importlib.import_module("jitprov.store.migrations.versions.0021_quiet_new_accounts")

    def rebuild(*, helpers: bool) -> None:
        with db.engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
            if helpers:
                quiet.drop_session_checks()
            with op.batch_alter_table("session", recreate="always"):
                pass
            if helpers:
                quiet.create_session_checks()

    with pytest.raises(sa.exc.OperationalError, match=r"no such table: main\.session"):
        rebuild(helpers=False)
    rebuild(helpers=True)
    with db.engine.connect() as conn:
        names = set(conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'").scalars())
    assert {f"jitprov_auth_{table}_insert" for table in
            ("role_grant", "pending_grant", "role_block", "identity")} <= names


def test_the_account_update_trigger_compares_every_shown_column(db: Database) -> None:
    """SQLite: an account UPDATE moves the counter when any column the view shows changed
    (the installed trigger, not only 0019's list)."""
    if db.dialect != "sqlite":
        pytest.skip("SQLite's trigger")
    with db.engine.connect() as conn:
        (sql,) = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                                      "AND name = 'jitprov_auth_account_update'").scalars()
    assert all(f"OLD.{c} IS NOT NEW.{c}" in sql for c in MIGRATION.SHOWN["account"])
    assert not any(f"OLD.{c} " in sql for c in MIGRATION.QUIET["account"])
