"""pending links decided by an admin (reason, refusals that hold) and accounts deleted for SCIM

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
OPEN = "status IN ('pending', 'refused')"


def upgrade() -> None:
    with op.batch_alter_table("pending_link", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch_op.drop_constraint("uq_pending_link_connection_id_subject_status", type_="unique")
        batch_op.create_index("ix_pending_link_connection_subject_open",
                              ["connection_id", "subject"], unique=True,
                              sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
        batch_op.create_index("ix_pending_link_tenant_status", ["tenant_id", "status", "id"],
                              unique=False)
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scim_deleted_at", TS, nullable=True))
        batch_op.drop_index("ix_account_tenant_kind_id")
        batch_op.create_index("ix_account_tenant_kind_id", ["tenant_id", "kind", "id"],
                              unique=False, sqlite_where=sa.text("scim_deleted_at IS NULL"),
                              postgresql_where=sa.text("scim_deleted_at IS NULL"))


def downgrade() -> None:
    """Back to 0013, keeping what 0013 can hold:

    - SCIM-deleted accounts (``scim_delete: deactivate``) become what 0013 made of a DELETE:
      deactivated users SCIM still lists. Their userName is taken back (``user_name_lower``)
      where no other account of the tenant holds it meanwhile (newest deletion first); the
      others stay listed without a userName key (a SCIM filter on userName misses them).
    - 0013 allowed one link per (connection, subject, status): of several decided links of one
      identity in one status (history: refused, cleared, asked again...), the newest stays.
    """
    bind = op.get_bind()
    account = sa.table("account", sa.column("id", sa.String), sa.column("tenant_id", sa.Integer),
                       sa.column("user_name", sa.String),
                       sa.column("user_name_lower", sa.String),
                       sa.column("scim_deleted_at", TS))
    deleted = bind.execute(
        sa.select(account.c.id, account.c.tenant_id, account.c.user_name)
        .where(account.c.scim_deleted_at.is_not(None), account.c.user_name.is_not(None))
        .order_by(account.c.scim_deleted_at.desc(), account.c.id)).all()
    for row in deleted:
        lowered = row.user_name.lower()
        taken = bind.execute(sa.select(account.c.id).where(
            account.c.tenant_id == row.tenant_id,
            account.c.user_name_lower == lowered).limit(1)).first()
        if taken is None:
            bind.execute(account.update().where(account.c.id == row.id)
                         .values(user_name_lower=lowered))
    link = sa.table("pending_link", sa.column("id", sa.Integer),
                    sa.column("connection_id", sa.Integer), sa.column("subject", sa.String),
                    sa.column("status", sa.String))
    newest = (sa.select(sa.func.max(link.c.id))
              .group_by(link.c.connection_id, link.c.subject, link.c.status))
    bind.execute(link.delete().where(link.c.id.not_in(newest)))
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index("ix_account_tenant_kind_id")
        batch_op.create_index("ix_account_tenant_kind_id", ["tenant_id", "kind", "id"],
                              unique=False)
        batch_op.drop_column("scim_deleted_at")
    with op.batch_alter_table("pending_link", schema=None) as batch_op:
        batch_op.drop_index("ix_pending_link_tenant_status")
        batch_op.drop_index("ix_pending_link_connection_subject_open")
        batch_op.create_unique_constraint("uq_pending_link_connection_id_subject_status",
                                          ["connection_id", "subject", "status"])
        batch_op.drop_column("email")
        batch_op.drop_column("reason")
