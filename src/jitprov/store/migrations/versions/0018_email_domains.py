"""email domains: a tenant's verified email domains, each mapped to the connection its people
sign in through (home-realm discovery, ``/sso/discover``)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_domain",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("verified_by", sa.String(length=200), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_email_domain_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_email_domain_connection_id_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_email_domain")),
    )
    with op.batch_alter_table("email_domain", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_domain_tenant_id"), ["tenant_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_email_domain_connection_id"), ["connection_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_domain", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_domain_connection_id"))
        batch_op.drop_index(batch_op.f("ix_email_domain_tenant_id"))
    op.drop_table("email_domain")
