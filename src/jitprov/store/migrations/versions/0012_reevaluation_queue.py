"""reevaluation: the accounts a large SCIM membership change left for the re-evaluation job

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reevaluation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"],
                                name=op.f("fk_reevaluation_account_id_account"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"],
                                name=op.f("fk_reevaluation_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reevaluation")),
    )
    with op.batch_alter_table("reevaluation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reevaluation_account_id"), ["account_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reevaluation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reevaluation_account_id"))
    op.drop_table("reevaluation")
