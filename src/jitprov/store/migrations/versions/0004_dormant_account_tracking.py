"""dormant account tracking

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dormant_warned_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_account_tenant_status_login", ["tenant_id", "status", "last_login_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index("ix_account_tenant_status_login")
        batch_op.drop_column("dormant_warned_at")
