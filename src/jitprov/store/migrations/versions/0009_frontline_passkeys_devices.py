"""frontline: passkeys, shared devices, webauthn challenges, IdP health, session columns

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "passkey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("credential_id", sa.String(length=1400), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("backup_eligible", sa.Boolean(), nullable=False),
        sa.Column("backup_state", sa.Boolean(), nullable=False),
        sa.Column("aaguid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"],
                                name=op.f("fk_passkey_account_id_account"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passkey")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_passkey_credential_id")),
    )
    with op.batch_alter_table("passkey", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_passkey_account_id"), ["account_id"], unique=False)

    op.create_table(
        "device",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("location", sa.String(length=200), nullable=False),
        sa.Column("enrolment_hash", sa.String(length=64), nullable=True),
        sa.Column("enrolment_expires_at", TS, nullable=True),
        sa.Column("credential_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("enrolled_at", TS, nullable=True),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"],
                                name=op.f("fk_device_tenant_id_tenant"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device")),
        sa.UniqueConstraint("enrolment_hash", name=op.f("uq_device_enrolment_hash")),
        sa.UniqueConstraint("credential_hash", name=op.f("uq_device_credential_hash")),
    )
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "webauthn_challenge",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("consumed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"],
                                name=op.f("fk_webauthn_challenge_account_id_account"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"],
                                name=op.f("fk_webauthn_challenge_device_id_device"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webauthn_challenge")),
    )
    with op.batch_alter_table("webauthn_challenge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webauthn_challenge_expires_at"), ["expires_at"],
                              unique=False)

    op.create_table(
        "connection_health",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("last_failure_at", TS, nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("declared_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["connection_id"], ["connection.id"],
                                name=op.f("fk_connection_health_connection_id_connection"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_connection_health")),
    )

    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("method", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("offline", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("last_seen_at", TS, nullable=True))
        batch_op.add_column(sa.Column("idle_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("passkey_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_session_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_passkey_id"), ["passkey_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_session_device_id_device"), "device",
                                    ["device_id"], ["id"], ondelete="SET NULL")
        batch_op.create_foreign_key(batch_op.f("fk_session_passkey_id_passkey"), "passkey",
                                    ["passkey_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_session_passkey_id_passkey"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_session_device_id_device"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_session_passkey_id"))
        batch_op.drop_index(batch_op.f("ix_session_device_id"))
        for column in ("passkey_id", "idle_seconds", "last_seen_at", "offline", "method",
                       "device_id"):
            batch_op.drop_column(column)
    op.drop_table("connection_health")
    op.drop_table("webauthn_challenge")
    op.drop_table("device")
    op.drop_table("passkey")
