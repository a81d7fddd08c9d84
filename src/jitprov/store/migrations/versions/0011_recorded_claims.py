"""recorded claims: the redacted claims of each identity's most recent login

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claims", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("claims_at", TS, nullable=True))
        batch_op.create_index("ix_identity_connection_claims_at",
                              ["connection_id", "claims_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_connection_claims_at")
        batch_op.drop_column("claims_at")
        batch_op.drop_column("claims")
