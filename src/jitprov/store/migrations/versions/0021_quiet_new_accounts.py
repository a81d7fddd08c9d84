"""quiet new accounts: on SQLite, a change to an account nobody is signed in as moves nothing

On SQLite one counter stands for every change to the signed-in view, and each node drops its
whole session cache when it moves (store/auth_changes.py). Each login moved it: the new
account's row, grants and identity, and a returning login's ``last_login_at``, so while people
signed in, every node's cache was empty and every ``/auth/verify`` read the database. No node
can hold the view of an account that has no session, so:

- an account's INSERT moves nothing (it has no session yet); its UPDATE moves the counter only
  when a column the view shows changed, as the other tables' updates already did;
- an INSERT into ``role_grant``, ``pending_grant``, ``role_block`` or ``identity`` moves it only
  when the account has a session (a first login writes its grants and identity before its
  session, in one transaction).

Updates and deletes still move it as before. PostgreSQL is unchanged: its notifications name
the account, and a node evicts only that account's entries.

The four INSERT triggers read ``session``: SQLite checks every trigger when a batch migration
renames its copy of a table into place, so a later migration that rebuilds ``session``
calls :func:`drop_session_checks` before and :func:`create_session_checks` after (a rebuild
of a watched table drops that table's own triggers too: 0019's and these are written again).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

#: the lists of shown and quiet columns, and the triggers' names, are 0019's
_0019 = importlib.import_module("jitprov.store.migrations.versions.0019_auth_changes")
_BUMP = "BEGIN UPDATE auth_change SET version = version + 1 WHERE id = 1; END"
#: the tables whose rows name an account and whose INSERT a first login makes
_GRANTS_AND_IDENTITIES = ("role_grant", "pending_grant", "role_block", "identity")
_HAS_SESSION = "EXISTS (SELECT 1 FROM session WHERE session.account_id = NEW.account_id)"


def _trigger(table: str, operation: str, when: str) -> None:
    name = f"jitprov_auth_{table}_{operation.lower()}"
    op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute(f'CREATE TRIGGER {name} AFTER {operation} ON "{table}" '
               f"{when} {_BUMP}")  # (names and clauses of this file and 0019's)


def drop_session_checks() -> None:
    """SQLite: drop the triggers that read ``session`` (before a rebuild of that table)."""
    for table in _GRANTS_AND_IDENTITIES:
        op.execute(f"DROP TRIGGER IF EXISTS jitprov_auth_{table}_insert")


def create_session_checks() -> None:
    """SQLite: the INSERT triggers that move the counter only for an account with a
    session (again, after a rebuild of ``session``)."""
    for table in _GRANTS_AND_IDENTITIES:
        _trigger(table, "INSERT", f"WHEN {_HAS_SESSION}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS jitprov_auth_account_insert")
    _trigger("account", "UPDATE", f"WHEN {_0019._changed('account', 'IS NOT')}")
    create_session_checks()


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _trigger("account", "INSERT", "")
    _trigger("account", "UPDATE", "")
    for table in _GRANTS_AND_IDENTITIES:
        _trigger(table, "INSERT", "")
