"""A spy on the PostgreSQL pipelines of ``store/fast.py``: what each round trip carried."""

from __future__ import annotations

import re

import pytest

from jitprov.services.context import ServiceContext
from jitprov.store import fast


def label(sql: str) -> str:
    """``lock`` (advisory locks), ``find`` (the identity's read), else the table written."""
    if "pg_advisory_xact_lock" in sql:
        return "lock"
    if sql.startswith("SELECT") and "JOIN identity" in sql:
        return "find"
    written = re.search(r"(?:INSERT INTO|UPDATE) (\w+)", sql)
    return written.group(1) if written else sql[:30]


def spy_pipelines(ctx: ServiceContext,
                  monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], bool]]:
    """The list each pipeline sent from now on is appended to: its statements' labels, and
    whether the COMMIT went with them."""
    sent: list[tuple[list[str], bool]] = []
    real = fast._pipelined
    dialect = ctx.db.engine.dialect

    def spy(conn: object, statements: list[tuple[fast.Prepared, object]], *,
            commit: bool) -> object:
        sent.append(([label(s._plan(dialect)[0].sql) for s, _ in statements], commit))
        return real(conn, statements, commit=commit)  # type: ignore[arg-type]

    monkeypatch.setattr(fast, "_pipelined", spy)
    return sent
