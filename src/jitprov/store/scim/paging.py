"""Ordering and paging of SCIM list queries: the ``sortBy`` key, a stable total order (values,
absent values last, then the id) and pages read with as little reading as possible
(RFC 7644 §3.4.2.3, §3.4.2.4).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from jitprov.store.scim.errors import InvalidFilter
from jitprov.store.scim.filters import Multi, _Attr, _Bool, _lower, _Str, _Time
from jitprov.store.scim.records import AttrPathNode

_E = sa.ColumnElement[Any]

_SORT_PATH = re.compile(
    r"^(?:(?P<schema>urn:[^\s\[\]]+):)?(?P<attribute>[A-Za-z$][\w$-]*)"
    r"(?:\.(?P<sub>[A-Za-z$][\w$-]*))?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _SortPath:
    attribute: str
    sub_attribute: str | None
    schema: str | None


def sort_key(sort_by: str, resolve: Callable[[AttrPathNode], _Attr],
              primary_email: _E | None, dialect: str) -> _E:
    """The expression ``sortBy`` orders on (RFC 7644 §3.4.2.3: strings by their caseExact;
    a multi-valued attribute by its primary value). Raises InvalidFilter."""
    match = _SORT_PATH.match(sort_by.strip())
    if match is None:
        raise InvalidFilter(f"sortBy {sort_by!r} is not an attribute path")
    path = _SortPath(match["attribute"], match["sub"], match["schema"])
    attr = resolve(path)
    if isinstance(attr, Multi):
        if attr.name == "emails" and primary_email is not None and \
                path.sub_attribute in (None, "value"):
            return primary_email
        raise InvalidFilter(f"sortBy {sort_by!r}: cannot sort on a multi-valued attribute")
    if isinstance(attr, _Str):
        return attr.expr if attr.case_exact else (
            attr.lower if attr.lower is not None else _lower(attr.expr, dialect))
    if isinstance(attr, _Time):
        return attr.expr
    if isinstance(attr, _Bool):
        return sa.case((attr.is_true, 1), else_=0)
    raise InvalidFilter(f"sortBy {sort_by!r}: cannot sort on a complex attribute")


def tiebreak(column: _E, *, filtered: bool, dialect: str) -> _E:
    """The id to order by last. With a filter, SQLite would walk the (tenant, id) index in
    order and test every row rather than look up the filter's own index (``userName eq``:
    one row) and sort what it finds: ``id || ''`` keeps the order and hides the index."""
    return column.concat("") if filtered and dialect == "sqlite" else column


_Order = list[tuple[_E, bool]]  # (expression, descending)


def order_by(key: _E | None, descending: bool, tiebreak: _E) -> _Order:
    """Values first, absent values last, then ``tiebreak`` ascending: a stable total order."""
    if key is None:
        return [(tiebreak, descending)]
    return [(sa.case((key.is_(None), 1), else_=0), False), (key, descending), (tiebreak, False)]


def _render(order: _Order, reverse: bool = False) -> list[_E]:
    return [e.asc() if desc == reverse else e.desc() for e, desc in order]


def paginate(count: Callable[[], int], fetch: Callable[[list[_E], int, int], list[Any]],
              order: _Order, offset: int, limit: int) -> tuple[int, list[Any]]:
    """(total, the rows of one page) with as little reading as possible: the first page needs
    no count when it is not full; a page past the middle is read from the end, in reverse
    order (OFFSET costs what it skips: the last page of 100,000 then skips nothing)."""
    if not limit:
        return count(), []
    if offset == 0:
        rows = fetch(_render(order), 0, limit)
        return (len(rows) if len(rows) < limit else count()), rows
    total = count()
    if offset >= total:
        return total, []
    if offset > total // 2:
        size = min(limit, total - offset)
        return total, fetch(_render(order, reverse=True), total - offset - size, size)[::-1]
    return total, fetch(_render(order), offset, limit)


def page(start_index: int, count: int) -> tuple[int, int]:
    """(offset, limit) of 1-based ``startIndex`` and ``count`` (RFC 7644 §3.4.2.4: a
    startIndex below 1 is 1, a negative count is 0)."""
    return max(start_index, 1) - 1, max(count, 0)
