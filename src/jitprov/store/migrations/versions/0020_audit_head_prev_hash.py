"""audit head prev_hash: the hash the tenant's chain head held before its last move

On PostgreSQL one statement moves the head and inserts the event it hashed (the head's upsert
``RETURNING`` gives the event its number, hash and previous hash), so a tenant's chain head is
locked for one statement and the commit, without a round trip to the application between
them. Nullable: heads written before this migration have none until their next move.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("prev_hash")
