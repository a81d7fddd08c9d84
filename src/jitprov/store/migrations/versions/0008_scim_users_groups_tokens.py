"""scim users, groups and client tokens

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scim_group",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("display_name_lower", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_scim_group_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_group")),
    )
    with op.batch_alter_table("scim_group", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scim_group_tenant_display_name", ["tenant_id", "display_name_lower"], unique=True
        )
        batch_op.create_index(
            "ix_scim_group_tenant_external_id", ["tenant_id", "external_id"], unique=False
        )
        batch_op.create_index("ix_scim_group_tenant_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "scim_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_scim_token_connection_id_connection"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_scim_token_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_scim_token_token_hash")),
    )
    with op.batch_alter_table("scim_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scim_token_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "scim_group_member",
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_scim_group_member_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["scim_group.id"],
            name=op.f("fk_scim_group_member_group_id_scim_group"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "account_id", name=op.f("pk_scim_group_member")),
    )
    with op.batch_alter_table("scim_group_member", schema=None) as batch_op:
        batch_op.create_index("ix_scim_group_member_account_id", ["account_id"], unique=False)

    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_name", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("user_name_lower", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("scim", sa.JSON(), nullable=True))
        batch_op.create_index(
            "ix_account_tenant_kind_id", ["tenant_id", "kind", "id"], unique=False
        )
        batch_op.create_index(
            "ix_account_tenant_user_name", ["tenant_id", "user_name_lower"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index("ix_account_tenant_user_name")
        batch_op.drop_index("ix_account_tenant_kind_id")
        batch_op.drop_column("scim")
        batch_op.drop_column("user_name_lower")
        batch_op.drop_column("user_name")

    with op.batch_alter_table("scim_group_member", schema=None) as batch_op:
        batch_op.drop_index("ix_scim_group_member_account_id")

    op.drop_table("scim_group_member")
    with op.batch_alter_table("scim_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scim_token_tenant_id"))

    op.drop_table("scim_token")
    with op.batch_alter_table("scim_group", schema=None) as batch_op:
        batch_op.drop_index("ix_scim_group_tenant_id")
        batch_op.drop_index("ix_scim_group_tenant_external_id")
        batch_op.drop_index("ix_scim_group_tenant_display_name")

    op.drop_table("scim_group")
