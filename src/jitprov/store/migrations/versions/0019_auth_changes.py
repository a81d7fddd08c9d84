"""auth changes: the database says when what ``/auth/verify`` shows may have changed, so every
node can keep sessions in memory and still refuse a revoked one at once

PostgreSQL: a trigger on each table the signed-in view is read from sends a ``NOTIFY
jitprov_auth`` at commit, its payload the account id (``*`` for a tenant or connection change:
every entry). SQLite (one host): the same triggers bump the single row of ``auth_change``,
which a node reads instead of the session.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: table -> the column that names the account (None: a change concerns every account)
WATCHED: dict[str, str | None] = {
    "account": "id", "session": "account_id", "role_grant": "account_id",
    "pending_grant": "account_id", "role_block": "account_id", "identity": "account_id",
    "tenant": None, "connection": None,
}
#: the columns whose change may change what a signed-in view shows; an update of only the
#: others (a login's ``last_login_at`` and recorded claims, a device session's activity clock,
#: a tenant's display name, a connection's metadata refresh) notifies no one. Listed, not
#: derived: rows may hold text a JSON conversion refuses (a stored lone surrogate), and a
#: column added later is either added here or quiet (tests/store/test_auth_changes.py fails
#: until it is one or the other)
SHOWN: dict[str, tuple[str, ...]] = {
    "account": ("id", "tenant_id", "status", "kind", "provisioned_by", "external_id",
                "external_id_connection_id", "email", "email_lower", "profile",
                "profile_sources", "idp_groups", "created_at", "updated_at", "deactivated_at",
                "user_name", "user_name_lower", "scim", "scim_deleted_at"),
    "session": ("id", "account_id", "connection_id", "subject", "created_at", "expires_at",
                "revoked_at", "user_agent", "device_id", "method", "offline", "idle_seconds",
                "passkey_id", "idp_session_id", "id_token_sealed"),
    "identity": ("id", "connection_id", "subject", "issuer", "account_id", "created_at"),
    "tenant": ("id", "slug"),
    "connection": ("id", "tenant_id", "slug"),
}
#: the columns of each watched table that SHOWN leaves out on purpose
QUIET: dict[str, tuple[str, ...]] = {
    "account": ("last_login_at", "dormant_warned_at", "version"),
    "session": ("last_seen_at",),
    "identity": ("last_login_at", "claims", "claims_at"),
    "tenant": ("name", "settings", "created_at"),
    "connection": ("kind", "config", "secrets", "mapping", "mapping_source", "enabled",
                   "version", "created_at", "updated_at"),
}


def _changed(table: str, distinct: str) -> str:
    """An update's condition: one shown column differs (compared as text: JSON has no ``=``)."""
    return " OR ".join(f"OLD.{c}::text {distinct} NEW.{c}::text" if distinct != "IS NOT"
                       else f"OLD.{c} IS NOT NEW.{c}" for c in SHOWN[table])


def _postgres_when(table: str, operation: str) -> str:
    if operation == "UPDATE" and table in SHOWN:
        return f"WHEN ({_changed(table, 'IS DISTINCT FROM')})"
    if operation == "DELETE" and table == "session":  # a revoked or expired one shows nothing
        return "WHEN (OLD.revoked_at IS NULL AND OLD.expires_at > now())"
    return ""


def _sqlite_when(table: str, operation: str) -> str:
    if operation == "UPDATE" and table in SHOWN and table != "account":
        return f"WHEN {_changed(table, 'IS NOT')}"
    return ""  # (every account update counts: one host, a cheap bump)


def _operations(table: str) -> list[str]:
    """A new session, tenant or connection changes nothing a cached session shows."""
    return ["UPDATE", "DELETE"] if table in ("session", "tenant", "connection") \
        else ["INSERT", "UPDATE", "DELETE"]


#: PostgreSQL: the function each table's triggers call, by the column naming the account
_FUNCTIONS = {
    "id": """
        CREATE FUNCTION jitprov_auth_notify_id() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('jitprov_auth', OLD.id::text);
            ELSE
                PERFORM pg_notify('jitprov_auth', NEW.id::text);
            END IF;
            RETURN NULL;
        END $$""",
    "account_id": """
        CREATE FUNCTION jitprov_auth_notify_account_id() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                PERFORM pg_notify('jitprov_auth', OLD.account_id::text);
            END IF;
            IF TG_OP <> 'DELETE' THEN
                PERFORM pg_notify('jitprov_auth', NEW.account_id::text);
            END IF;
            RETURN NULL;
        END $$""",
    "*": """
        CREATE FUNCTION jitprov_auth_notify_all() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('jitprov_auth', '*');
            RETURN NULL;
        END $$""",
}
_FUNCTION_NAMES = {"id": "jitprov_auth_notify_id", "account_id": "jitprov_auth_notify_account_id",
                   "*": "jitprov_auth_notify_all"}


def upgrade() -> None:
    op.create_table(
        "auth_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_change")),
    )
    op.execute("INSERT INTO auth_change (id, version) VALUES (1, 0)")
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for function in _FUNCTIONS.values():
            op.execute(function)
    for table, column in WATCHED.items():
        for operation in _operations(table):
            name = f"jitprov_auth_{table}_{operation.lower()}"
            if postgres:
                op.execute(f'CREATE TRIGGER {name} AFTER {operation} ON "{table}" FOR EACH ROW '
                           f"{_postgres_when(table, operation)} EXECUTE FUNCTION "
                           f"{_FUNCTION_NAMES[column or '*']}()")
            else:
                op.execute(f'CREATE TRIGGER {name} AFTER {operation} ON "{table}" '  # noqa: S608
                           f"{_sqlite_when(table, operation)} BEGIN "  # (names of this file)
                           "UPDATE auth_change SET version = version + 1 WHERE id = 1; END")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in WATCHED:
        for operation in _operations(table):
            name = f"jitprov_auth_{table}_{operation.lower()}"
            op.execute(f'DROP TRIGGER IF EXISTS {name} ON "{table}"' if postgres
                       else f"DROP TRIGGER IF EXISTS {name}")
    if postgres:
        for function in _FUNCTION_NAMES.values():
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("auth_change")
