"""saml replay cache

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saml_replay",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("assertion_id", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_saml_replay_connection_id_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", "assertion_id", name=op.f("pk_saml_replay")),
    )
    with op.batch_alter_table("saml_replay", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_saml_replay_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("saml_replay", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_saml_replay_expires_at"))

    op.drop_table("saml_replay")
