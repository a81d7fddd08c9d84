"""scrub identity JSON written before the input rule: lone surrogates become U+FFFD, NUL and
the other C0 controls (tab, CR, LF aside) are removed

Before the rule, a SCIM body or a login's claims could store ``"\\ud800"`` or ``"\\u0000"``
in a JSON column. Such a row broke its tenant's reads and filters (PostgreSQL's ``->>``
refuses both escapes; SQLite hands invalid UTF-8 to Python). This pass rewrites the
identity columns that filters and pages read. The audit log and the outbox are left as they
are (the audit chain hashes them); their reads replace lone surrogates when rendering.

Self-contained on purpose (a migration must not follow later code). :func:`scrub` returns
the number of values it rewrote; running it twice changes nothing.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: (table, primary key, JSON columns)
COLUMNS = (
    ("account", "id", ("scim", "profile", "profile_sources", "idp_groups")),
    ("identity", "id", ("claims",)),
    ("pending_link", "id", ("claims",)),
)
#: an escape of a surrogate or a C0 control, as JSON text spells it (cheap pre-filter)
_ESCAPED = re.compile(r"\\u(?:[dD][89a-fA-F]|00[01])")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _CONTROL.sub("", _SURROGATE.sub("\ufffd", value))
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def scrub(bind: sa.Connection) -> int:
    """Rewrite every stored identity JSON value holding bad text; the count rewritten."""
    rewritten = 0
    for table, key, columns in COLUMNS:
        for column in columns:
            select = sa.text(f"SELECT {key}, CAST({column} AS TEXT) FROM {table} "  # noqa: S608
                             f"WHERE {column} IS NOT NULL")
            update = sa.text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k")  # noqa: S608
            for row_key, text in bind.execute(select).all():
                if text is None or not _ESCAPED.search(text):
                    continue
                value = json.loads(text)
                cleaned = _clean(value)
                if cleaned != value:
                    bind.execute(update, {"v": json.dumps(cleaned), "k": row_key})
                    rewritten += 1
    return rewritten


def upgrade() -> None:
    scrub(op.get_bind())


def downgrade() -> None:
    pass  # the values removed were never valid text; nothing to restore
