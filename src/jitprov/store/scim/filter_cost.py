"""What a SCIM filter costs once translated, and the shapes of the filter AST's nodes.

A filter's cost is the number of comparisons each candidate row (a user, a group, a value of
a multi-valued attribute) goes through when no index answers them. The translator keeps that
number low where it can: the terms of a disjunction on one multi-valued attribute
(``groups.value eq "a" or groups.value eq "b" ...``) become one ``EXISTS`` (or one ``IN``
over an index) instead of one per term, and their ``eq`` values one ``IN`` list, one
comparison whatever its length. What stays costly (a hundred ``co`` patterns, each tried on
every row) is refused before any SQL runs, with :class:`InvalidFilter` saying why: on SQLite
such a filter holds a request (and the write lock's readers) for seconds.
"""

from __future__ import annotations

from typing import Protocol, cast

from jitprov.store.scim.errors import InvalidFilter
from jitprov.store.scim.records import USER_SCHEMA, AttrPathNode, FilterNode

#: comparisons per row that no index answers, at most, in one filter (an ``IN`` list counts
#: once): far above what a person or an IdP writes, far below what makes a scan slow
MAX_FILTER_COST = 32


class FilterBudget:
    """Counts the comparisons a translated filter makes per row; refuses past the budget."""

    def __init__(self, limit: int = MAX_FILTER_COST) -> None:
        self.limit = limit
        self.spent = 0

    def charge(self, comparisons: int = 1) -> None:
        self.spent += comparisons

    def check(self) -> None:
        """Raises InvalidFilter when the filter spent more than the budget."""
        if self.spent > self.limit:
            raise InvalidFilter(
                f"the filter is too costly: it makes {self.spent} comparisons per resource "
                f"that no index answers (at most {self.limit}); compare with eq (the eq terms "
                "of one attribute joined by or count once), or use fewer terms")


def disjuncts(node: FilterNode) -> list[FilterNode]:
    """The operands of a chain of ``or`` (``a or b or c`` is ``[a, b, c]``), in order."""
    out: list[FilterNode] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.kind == "or":
            pair = cast(BinaryNode, current)
            stack += [pair.right, pair.left]
        else:
            out.append(current)
    return out


def drives_by_ids(node: FilterNode) -> bool:
    """Whether a conjunct of a User filter selects a set of ids through indexes by itself, so
    the query should start from it, not from the tenant's users: ``userName eq "..."`` (two
    index lookups), a term on ``groups`` (the members of the matching groups), or an ``or``
    of such terms."""
    kind = node.kind
    if kind in ("and", "or"):
        pair = cast(BinaryNode, node)
        left, right = drives_by_ids(pair.left), drives_by_ids(pair.right)
        return (left or right) if kind == "and" else (left and right)
    if kind not in ("compare", "value_path"):
        return False
    path = cast(PresentNode, node).path
    if path.schema is not None and path.schema.lower() != USER_SCHEMA.lower():
        return False
    if path.attribute.lower() == "groups":
        return True
    cmp = cast(CompareNode, node)
    return (kind == "compare" and cmp.op.lower() == "eq" and isinstance(cmp.value, str)
            and path.attribute.lower() == "username" and path.sub_attribute is None)


class BinaryNode(Protocol):
    @property
    def left(self) -> FilterNode: ...
    @property
    def right(self) -> FilterNode: ...


class NotNode(Protocol):
    @property
    def operand(self) -> FilterNode: ...


class PresentNode(Protocol):
    @property
    def path(self) -> AttrPathNode: ...


class CompareNode(Protocol):
    @property
    def path(self) -> AttrPathNode: ...
    @property
    def op(self) -> str: ...
    @property
    def value(self) -> object: ...


class ValuePathNode(Protocol):
    @property
    def path(self) -> AttrPathNode: ...
    @property
    def filter(self) -> FilterNode: ...
