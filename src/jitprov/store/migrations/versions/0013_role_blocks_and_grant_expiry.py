"""role blocks (admin overrides keeping a role off an account) and the expiry sweep's index

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "role_block",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=128), nullable=False),
        sa.Column("blocked_at", TS, nullable=False),
        sa.Column("blocked_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"],
                                name=op.f("fk_role_block_account_id_account"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_block")),
        sa.UniqueConstraint("account_id", "role", name=op.f("uq_role_block_account_id_role")),
    )
    with op.batch_alter_table("role_grant", schema=None) as batch_op:
        batch_op.create_index("ix_role_grant_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("role_grant", schema=None) as batch_op:
        batch_op.drop_index("ix_role_grant_expires_at")
    op.drop_table("role_block")
