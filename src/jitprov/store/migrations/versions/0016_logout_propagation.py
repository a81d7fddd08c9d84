"""logout propagation: what an IdP's logout names on each session (its session id, the sealed
ID token for RP-initiated logout) with lookup indexes, and the replay cache of single-use
tokens (OIDC logout token ``jti``)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idp_session_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("id_token_sealed", sa.Text(), nullable=True))
        batch_op.create_index("ix_session_connection_idp_session",
                              ["connection_id", "idp_session_id"], unique=False)
        batch_op.create_index("ix_session_connection_subject", ["connection_id", "subject"],
                              unique=False)
    op.create_table(
        "token_replay",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_token_replay_connection_id_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", "token_id", name=op.f("pk_token_replay")),
    )
    with op.batch_alter_table("token_replay", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_token_replay_expires_at"), ["expires_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("token_replay", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_replay_expires_at"))
    op.drop_table("token_replay")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_index("ix_session_connection_subject")
        batch_op.drop_index("ix_session_connection_idp_session")
        batch_op.drop_column("id_token_sealed")
        batch_op.drop_column("idp_session_id")
