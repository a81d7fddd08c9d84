"""Small helpers every repository module shares: UTC normalisation of what the database hands
back, the advisory-lock key of a name, and the prepared single-row INSERT of a table.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa

from jitprov.store.fast import Prepared


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def iso(value: datetime | None) -> str | None:
    return None if value is None else utc(value).isoformat()


def lock_key(text: str) -> int:
    """A signed 64-bit advisory-lock key for ``text`` (a collision only serializes more)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def prepared_insert(table: sa.Table) -> Prepared:
    """INSERT of one row with every column but an integer primary key as a named bind."""
    return Prepared(table.insert().values({
        c.name: sa.bindparam(c.name) for c in table.columns
        if not (c.primary_key and isinstance(c.type, sa.Integer))}))
