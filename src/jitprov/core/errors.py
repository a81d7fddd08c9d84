"""Errors of the core. Each carries a stable ``code``; ``web/errors.py`` renders them."""

from __future__ import annotations


class JitprovError(Exception):
    """Base of every error jitprov raises on purpose."""

    code = "error"


class NotFound(JitprovError):
    code = "not_found"


class Conflict(JitprovError):
    code = "conflict"


class InvalidInput(JitprovError):
    code = "invalid_input"


class MappingError(InvalidInput):
    """A mapping file that cannot be loaded or compiled.

    ``source`` names the file (or connection), ``line`` is 1-based, ``rule`` names the rule or
    field; ``str(err)`` reads ``file:line: rule: message``.
    """

    code = "invalid_mapping"

    def __init__(self, message: str, *, source: str = "<mapping>", line: int | None = None,
                 rule: str | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.rule = rule
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        what = f"{self.rule}: " if self.rule else ""
        return f"{where}: {what}{self.message}"


class RaceLost(JitprovError):
    """Another transaction wrote the same unique key first; retry the whole unit of work."""

    code = "race_lost"


class DatabaseNotReady(JitprovError):
    """The database is unreachable or its schema is not at the version this code needs."""

    code = "database_not_ready"
    #: seconds a client is asked to wait before retrying (``Retry-After`` of the 503)
    retry_after = 5


class DatabaseTimeout(DatabaseNotReady):
    """The database did not answer within a configured time limit (connect, statement,
    connection pool checkout, SQLite writer queue)."""

    code = "database_timeout"
