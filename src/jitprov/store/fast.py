"""Hot-path statements run straight on the DBAPI cursor.

SQLAlchemy Core spends ~40-60 µs of Python per statement on its execution machinery (parameter
construction, execution context, result set-up); a login runs about ten statements, so that is
most of its CPU. :class:`Prepared` compiles a prebuilt Core statement once per dialect and
then executes the compiled SQL on the raw DBAPI cursor of the same connection (so inside the
same transaction), applying the dialect's own bind and result processors: the SQL, the types
and the values are exactly what SQLAlchemy would send, without its per-call overhead.

Only for simple statements with named ``bindparam``s and fixed values: no expanding ``IN``.
:meth:`Prepared.many` runs one statement for several parameter sets (DBAPI
``executemany``). A driver's integrity error is raised as SQLAlchemy's ``IntegrityError``,
as callers expect; any other driver error goes through SQLAlchemy's own handling of a failed
statement (``Connection._handle_dbapi_exception``, the one SQLAlchemy's execution calls): the
``handle_error`` listeners see it, a disconnect invalidates the connection and the pool's
connections opened before it, and it is raised as SQLAlchemy's exception of that kind
(``OperationalError``...), so a dead pooled connection ends the unit as ``unavailable`` like a
Core statement. That method is private: it is called rather than copied because the pool's
invalidation has no public entry point, and the tests of a failover catch a change of it.

When the engine or connection has listeners (OpenTelemetry's SQLAlchemy instrumentation, a
test's statement counter), each execution is reported to them as SQLAlchemy reports its own:
``before_cursor_execute`` and ``after_cursor_execute`` with the SQL and the DBAPI parameters
(the context argument is a bare object listeners may set attributes on), so these statements
are in traces like every other; without them (the engine's pool and ``begin`` listeners do
not count) that costs two attribute tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    positional: bool
    names: tuple[str, ...]  # bind names, in the order the SQL takes them when positional
    defaults: Mapping[str, object]  # values fixed in the statement (``.values(x=None)``)
    binds: Mapping[str, Callable[[Any], Any]]  # bind processors by name
    fields: tuple[tuple[str, object, _Processor], ...]  # (name, default, processor) in order
    keys: tuple[str, ...]  # result columns
    results: tuple[_Processor, ...]
    integrity_error: type[Exception]
    driver_error: type[Exception]  # the DBAPI's base ``Error``


class Row(tuple[Any, ...]):
    """A result row: a tuple with attribute access by column name (like SQLAlchemy's)."""

    __slots__ = ()
    _index: Mapping[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None


class Prepared:
    """A Core statement compiled once per dialect and run on the DBAPI cursor."""

    __slots__ = ("_lock", "_plans", "_rows", "stmt")

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._plans: dict[str, _Plan] = {}
        self._rows: dict[str, type[Row]] = {}
        self._lock = threading.Lock()

    def _plan(self, dialect: Dialect) -> tuple[_Plan, type[Row]]:
        plan = self._plans.get(dialect.name)
        if plan is None:
            with self._lock:
                compiled = cast(SQLCompiler, self.stmt.compile(dialect=dialect))
                names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(
                    dict.fromkeys(compiled.bind_names.values()))
                by_name = {name: bind for bind, name in compiled.bind_names.items()}
                # values fixed in the statement itself (``.values(x=None)``)
                defaults = {name: bind.effective_value for name, bind in by_name.items()
                            if not bind.required}
                columns = compiled._result_columns or []  # (key, name, objects, type)
                keys = tuple(c[0] for c in columns)
                results = tuple(c[3].dialect_impl(dialect).result_processor(dialect, None)
                                for c in columns)
                binds = {k: cast(Callable[[Any], Any], v)
                         for k, v in compiled._bind_processors.items()
                         if v is not None and callable(v)}
                plan = _Plan(sql=compiled.string, positional=compiled.positional, names=names,
                             defaults=defaults, binds=binds,
                             fields=tuple((n, defaults.get(n), binds.get(n)) for n in names),
                             keys=keys, results=results,
                             integrity_error=dialect.loaded_dbapi.IntegrityError,
                             driver_error=dialect.loaded_dbapi.Error)
                index = {k: i for i, k in enumerate(keys)}
                self._rows[dialect.name] = type("Row", (Row,), {"__slots__": (),
                                                                "_index": index})
                self._plans[dialect.name] = plan
        return plan, self._rows[dialect.name]

    def _params(self, plan: _Plan, params: Mapping[str, object]) -> Any:
        get = params.get
        values = []
        for name, default, processor in plan.fields:
            value = get(name, default)
            values.append(processor(value) if processor is not None and value is not None
                          else value)
        return tuple(values) if plan.positional else dict(zip(plan.names, values, strict=True))

    def _cursor(self, conn: sa.Connection, params: Mapping[str, object]) -> tuple[
            Any, _Plan, type[Row]]:
        plan, row_type = self._plan(conn.dialect)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        values = self._params(plan, params)
        try:
            if _watched(conn):
                _observed(conn, cursor, plan.sql, values, many=False)
            else:
                cursor.execute(plan.sql, values)
        except plan.integrity_error as exc:
            cursor.close()
            raise sa.exc.IntegrityError(plan.sql, None, exc) from exc
        except plan.driver_error as exc:
            _failed(conn, cursor, plan.sql, exc)
        except BaseException:
            cursor.close()
            raise
        return cursor, plan, row_type

    def _row(self, plan: _Plan, row_type: type[Row], raw: Sequence[Any]) -> Row:
        return row_type(p(v) if p is not None else v for p, v in zip(plan.results, raw,
                                                                        strict=True))

    def rowcount(self, conn: sa.Connection, params: Mapping[str, object]) -> int:
        """Execute; the number of rows the statement changed."""
        cursor, _, _ = self._cursor(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def many(self, conn: sa.Connection, params: Sequence[Mapping[str, object]]) -> None:
        """Execute once per parameter set, in one DBAPI ``executemany`` call."""
        if not params:
            return
        plan, _ = self._plan(conn.dialect)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        values = [self._params(plan, p) for p in params]
        try:
            if _watched(conn):
                _observed(conn, cursor, plan.sql, values, many=True)
            else:
                cursor.executemany(plan.sql, values)
        except plan.integrity_error as exc:
            raise sa.exc.IntegrityError(plan.sql, None, exc) from exc
        except plan.driver_error as exc:
            _failed(conn, cursor, plan.sql, exc)
        finally:
            cursor.close()

    def first(self, conn: sa.Connection, params: Mapping[str, object]) -> Row | None:
        """Execute; the first result row or None."""
        cursor, plan, row_type = self._cursor(conn, params)
        try:
            raw = cursor.fetchone()
        finally:
            cursor.close()
        return None if raw is None else self._row(plan, row_type, raw)

    def all(self, conn: sa.Connection, params: Mapping[str, object]) -> list[Row]:
        """Execute; every result row."""
        cursor, plan, row_type = self._cursor(conn, params)
        try:
            raws = cursor.fetchall()
        finally:
            cursor.close()
        return [self._row(plan, row_type, raw) for raw in raws]


def pipeline(conn: sa.Connection, statements: Sequence[tuple[Prepared, Mapping[str, object]]],
             *, commit: bool) -> list[int]:
    """Execute each (statement, parameters) in order without waiting for each answer
    (psycopg's pipeline mode), then, with ``commit``, the transaction's COMMIT: one round trip
    (one Sync) for all, so a transaction pooler hands the server connection back once. The
    caller still ends its SQLAlchemy transaction, which then finds the connection idle and
    sends nothing. Returns each execution's rowcount. PostgreSQL only.

    An error of any of them (or of the COMMIT) is raised as from :meth:`Prepared.rowcount`;
    the statements after it and the COMMIT did not run, and the transaction is left failed
    for the caller's rollback."""
    if not statements and not commit:
        return []
    with _pipelined(conn, statements, commit=commit) as cursors:
        return [int(cursor.rowcount) for cursor in cursors[:len(statements)]]


def first_after(conn: sa.Connection, before: Sequence[tuple[Prepared, Mapping[str, object]]],
                statement: Prepared, params: Mapping[str, object], *,
                claims: Sequence[Claim] = ()) -> Row | None:
    """``claims`` (sent ahead by :class:`WithNextRead`), ``before`` (statements whose answers
    are not needed: a lock), then ``statement``, in one round trip (:func:`pipeline`,
    PostgreSQL only); ``statement``'s first row or None, and each claim's answer set. The
    server runs them in order, so the read comes after what ``before`` took."""
    plan, row_type = statement._plan(conn.dialect)
    ahead = [(claim.statement, claim.params) for claim in claims]
    with _pipelined(conn, [*ahead, *before, (statement, params)], commit=False) as cursors:
        _answer(claims, cursors)
        raw = cursors[len(ahead) + len(before)].fetchone()
    return None if raw is None else statement._row(plan, row_type, raw)


@contextmanager
def _pipelined(conn: sa.Connection, statements: Sequence[tuple[Prepared, Mapping[str, object]]],
               *, commit: bool) -> Iterator[list[Any]]:
    """The cursors of ``statements`` (and of the COMMIT) after one Sync, closed after."""
    raw: Any = conn.connection.dbapi_connection
    observed = _watched(conn)
    cursors: list[Any] = []
    plans = [statement._plan(conn.dialect)[0] for statement, _ in statements]
    dbapi: Any = conn.dialect.loaded_dbapi
    try:
        try:
            with raw.pipeline():
                for plan, (statement, params) in zip(plans, statements, strict=True):
                    cursor = raw.cursor()
                    cursors.append(cursor)
                    values = statement._params(plan, params)
                    if observed:
                        _observed(conn, cursor, plan.sql, values, many=False)
                    else:
                        cursor.execute(plan.sql, values)
                if commit:  # a statement, not ``raw.commit()``, which would sync on its own
                    commit_cursor = raw.cursor()
                    cursors.append(commit_cursor)
                    commit_cursor.execute("COMMIT")
        except dbapi.Error as exc:
            # the statement that failed: the first without a result (those after it did not
            # run); none: the COMMIT
            failed = next((i for i, c in enumerate(cursors) if c.pgresult is None),
                          len(cursors) - 1)
            sql = plans[failed].sql if 0 <= failed < len(plans) else "COMMIT"
            if isinstance(exc, dbapi.IntegrityError):
                raise sa.exc.IntegrityError(sql, None, exc) from exc
            _failed(conn, cursors[failed] if cursors else raw.cursor(), sql, exc)
        yield cursors
    finally:
        for cursor in cursors:
            cursor.close()


class WithCommit:
    """Writes a unit of work sends with its COMMIT: on PostgreSQL they wait, in order, and go
    in the commit's round trip (:func:`pipeline`, before the audit events); on SQLite, where a
    statement costs no round trip, each runs at once.

    Only for writes whose result the caller does not need and that nothing later in the unit
    reads back (the last writes of a login: its account, identity, session). An error of one
    is raised by the commit as the statement's own would be (a unique key: RaceLost)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn
        self._queued: list[tuple[Prepared, Mapping[str, object]]] = []

    def write(self, statement: Prepared, params: Mapping[str, object], *,
              with_commit: bool) -> None:
        """Run ``statement`` now, or with ``with_commit`` queue it for the commit (PostgreSQL;
        SQLite runs it now all the same)."""
        if with_commit and self._c.dialect.name == "postgresql":
            self._queued.append((statement, params))
        else:
            statement.rowcount(self._c, params)

    def take(self) -> list[tuple[Prepared, Mapping[str, object]]]:
        """The queued writes, in order; the queue is then empty."""
        queued, self._queued = self._queued, []
        return queued


class Claim:
    """A single-use record sent ahead (an ``INSERT ... ON CONFLICT DO NOTHING RETURNING``):
    ``taken`` says whether this unit's row went in (True) or one was there already, of this
    or any concurrent transaction (False). Asked for before a read carried it, it is sent
    then, on its own. A unit cannot commit a claim whose answer it never read, and a claim
    has no truth value (``if not claim`` would never refuse): read ``taken``."""

    __slots__ = ("_next", "_read", "_taken", "params", "statement")

    def __init__(self, next_read: WithNextRead, statement: Prepared,
                 params: Mapping[str, object]) -> None:
        self._next = next_read
        self.statement = statement
        self.params = params
        self._taken: bool | None = None
        self._read = False

    def answer(self, taken: bool) -> None:
        self._taken = taken

    @property
    def taken(self) -> bool:
        if self._taken is None:
            self._next.send()
        assert self._taken is not None  # noqa: S101 - send() answers every queued claim
        self._read = True
        return self._taken

    @property
    def checked(self) -> bool:
        """Whether ``taken`` was read."""
        return self._read

    def __bool__(self) -> bool:
        raise TypeError("a Claim has no truth value: read its `taken`")


class WithNextRead:
    """Claims a unit of work needs the answers of, but not before its next read: on
    PostgreSQL they wait and go in that read's round trip (``first_after``, which the login's
    read of its identity uses), before it; on SQLite, where a statement costs no round trip,
    each runs at once.

    Only for statements whose answer nothing needs before that read and that nothing before
    it reads back (a login's spend of its request, a SAML assertion's ID): the caller checks
    ``Claim.taken`` after the read, and raising then rolls the unit back like raising
    before. The unit's commit refuses while a claim's answer was not read (single use left
    unchecked is a bug, never a silent pass); a read-only unit makes none."""

    def __init__(self, conn: sa.Connection, *, readonly: bool = False) -> None:
        self._c = conn
        self._readonly = readonly
        self._queued: list[Claim] = []
        self._made: list[Claim] = []

    def claim(self, statement: Prepared, params: Mapping[str, object]) -> Claim:
        if self._readonly:
            raise RuntimeError("a read-only unit of work makes no claim")
        claim = Claim(self, statement, params)
        self._made.append(claim)
        if self._c.dialect.name == "postgresql":
            self._queued.append(claim)
        else:
            claim.answer(statement.first(self._c, params) is not None)
        return claim

    def take(self) -> list[Claim]:
        """The queued claims, in order, for a read to carry; the queue is then empty."""
        queued, self._queued = self._queued, []
        return queued

    def send(self) -> None:
        """The queued claims, in one round trip of their own."""
        queued = self.take()
        if not queued:
            return
        with _pipelined(self._c, [(c.statement, c.params) for c in queued],
                        commit=False) as cursors:
            _answer(queued, cursors)

    def require_checked(self) -> None:
        """RuntimeError when a claim of the unit was made and its answer never read."""
        unread = [c.statement for c in self._made if not c.checked]
        if unread:
            raise RuntimeError(f"{len(unread)} claim(s) of this unit of work were never "
                               "checked (read Claim.taken before the commit)")


def _answer(claims: Sequence[Claim], cursors: Sequence[Any]) -> None:
    """Each claim's answer from its cursor (the first of a pipeline's, in order): a row back
    means this unit's row went in."""
    for claim, cursor in zip(claims, cursors, strict=False):
        claim.answer(cursor.fetchone() is not None)


def _failed(conn: sa.Connection, cursor: Any, sql: str, exc: Exception) -> NoReturn:
    """Raise the driver's error ``exc`` as SQLAlchemy raises a failed statement's (see the
    module docstring); the parameters are left out of it, as from the integrity error."""
    try:
        conn._handle_dbapi_exception(exc, sql, None, cursor, None)
    finally:
        cursor.close()


def _watched(conn: sa.Connection) -> bool:
    """Whether anything listens to ``conn``'s statements. The engine's own listeners (the
    pool's, ``begin``, ``connect``) set SQLAlchemy's ``_has_events`` for every connection; only
    cursor-execute listeners are owed a report of each statement."""
    if not (conn._has_events or conn.engine._has_events):
        return False
    dispatch = conn.dispatch
    return bool(dispatch.before_cursor_execute) or bool(dispatch.after_cursor_execute)


class _EventContext:
    """The execution context handed to cursor-event listeners: attributes only (a listener
    such as OpenTelemetry's keeps its span on it)."""


def _observed(conn: sa.Connection, cursor: Any, sql: str, values: Any, *, many: bool) -> None:
    """Execute with the connection's ``before_cursor_execute`` listeners first (each may
    return a rewritten statement, as with SQLAlchemy's own execution) and its
    ``after_cursor_execute`` listeners after, also when the statement fails (so a span
    opened before is closed)."""
    context = _EventContext()
    for listener in conn.dispatch.before_cursor_execute:
        sql, values = listener(conn, cursor, sql, values, context, many)
    try:
        if many:
            cursor.executemany(sql, values)
        else:
            cursor.execute(sql, values)
    finally:
        conn.dispatch.after_cursor_execute(conn, cursor, sql, values, context, many)
