"""PATCH (RFC 7644 section 3.5.2): ``add``, ``replace`` and ``remove`` applied to a canonical
resource dict, with and without ``path``, value-filter paths (``emails[type eq "work"].value``),
multi-valued attributes, and Group ``members`` turned into set operations for the store (a
group of 50,000 members is never loaded to add one).

The result is a new dict; the caller validates it like a PUT body (so a PATCH can never store
what a PUT would refuse) and writes it in one transaction.

Vendor quirks are the named flags of :class:`~jitprov.protocols.scim.quirks.Quirks`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jitprov.protocols.scim.errors import (
    InvalidFilter,
    InvalidPath,
    InvalidSyntax,
    InvalidValue,
    Mutability,
    NoTarget,
)
from jitprov.protocols.scim.filter import (
    And,
    Compare,
    Filter,
    FilterError,
    Not,
    Or,
    Present,
    ValuePath,
    parse_path,
)
from jitprov.protocols.scim.limits import check_patch_text
from jitprov.protocols.scim.quirks import Quirks
from jitprov.protocols.scim.resources import Attribute, ResourceSchema

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_OPERATIONS = 1000  # per PATCH request; a group add of 100 members is one operation

OpName = Literal["add", "replace", "remove"]

#: attributes that always have a value here, with the reason a remove is refused
UNREMOVABLE = {"active": "it is the account's status; replace it with true or false"}


@dataclass(frozen=True, slots=True)
class Operation:
    op: OpName
    path: str | None
    value: Any
    has_value: bool


@dataclass(frozen=True, slots=True)
class MemberChange:
    """A set operation on a group's members: ``ids`` None with ``remove`` removes all."""

    op: Literal["add", "remove", "replace"]
    ids: tuple[str, ...] | None


@dataclass(slots=True)
class PatchResult:
    resource: dict[str, Any]
    members: list[MemberChange] = field(default_factory=list)
    #: attributes (canonical names, extension URNs for extension attributes) the PATCH touched
    touched: set[str] = field(default_factory=set)


def parse_patch(body: object, quirks: Quirks = Quirks()) -> list[Operation]:
    """Validate a PatchOp message. Raises InvalidSyntax (shape), InvalidValue."""
    if not isinstance(body, dict):
        raise InvalidSyntax("a PATCH body must be a PatchOp JSON object")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_SCHEMA not in schemas:
        raise InvalidSyntax(f"schemas must contain {PATCH_SCHEMA}")
    raw_ops = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(raw_ops, list) or not raw_ops:
        raise InvalidSyntax("Operations must be a non-empty list")
    if len(raw_ops) > MAX_OPERATIONS:
        raise InvalidValue(f"at most {MAX_OPERATIONS} operations per PATCH")
    check_patch_text(raw_ops)
    ops = []
    for raw in raw_ops:
        if not isinstance(raw, dict):
            raise InvalidSyntax("each operation must be a JSON object")
        fields = {k.lower(): v for k, v in raw.items()}
        name = fields.get("op")
        if isinstance(name, str) and quirks.op_any_case:
            name = name.lower()
        if name not in ("add", "replace", "remove"):
            raise InvalidSyntax(f"op must be add, replace or remove, not {name!r}")
        path = fields.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise InvalidPath("path must be a non-empty string")
        if name != "remove" and "value" not in fields:
            raise InvalidValue(f"{name} needs a value")
        if name == "remove" and path is None and not (quirks.remove_value_list
                                                       and "value" in fields):
            raise NoTarget("remove needs a path (RFC 7644 section 3.5.2.2)")
        ops.append(Operation(name, path.strip() if path else None, fields.get("value"),
                             "value" in fields))
    return ops


@dataclass(frozen=True, slots=True)
class _Target:
    urn: str | None
    attr: Attribute
    value_filter: Any
    sub: Attribute | None


def apply_patch(schema: ResourceSchema, resource: Mapping[str, Any],
                operations: Sequence[Operation], quirks: Quirks = Quirks()) -> PatchResult:
    """Apply ``operations`` in order to a copy of ``resource``. ``members`` (Group) become
    :class:`MemberChange` set operations instead. Raises InvalidPath, InvalidValue,
    InvalidFilter, NoTarget, Mutability."""
    result = PatchResult(copy.deepcopy(dict(resource)))
    engine = _Engine(schema, result, quirks)
    for op in operations:
        engine.apply(op)
    return result


class _Engine:
    def __init__(self, schema: ResourceSchema, result: PatchResult, quirks: Quirks) -> None:
        self.schema = schema
        self.result = result
        self.res = result.resource
        self.quirks = quirks

    # -- path resolution ---------------------------------------------------------------------

    def target(self, path: str) -> _Target:
        try:
            parsed = parse_path(path)
        except FilterError as exc:
            raise InvalidPath(f"invalid path {path!r}: {exc}") from None
        written = parsed.attribute
        urn: str | None = None
        if written.schema is not None:
            urn = self.schema.extension_urn(written.schema)
            if urn is None and written.schema.lower() != self.schema.schema.lower():
                raise InvalidPath(f"unknown schema {written.schema!r} in path {path!r}")
        name = written.attribute
        attr = self.schema.attribute(urn, name)
        sub_name = parsed.sub_attribute
        if attr is None:
            raise InvalidPath(f"no attribute {name!r} in {self.schema.kind}")
        sub = None
        if sub_name:
            sub = attr.sub.get(sub_name.lower())
            if sub is None:
                raise InvalidPath(f"no sub-attribute {sub_name!r} in {attr.name}")
        if parsed.value_filter is not None and not attr.multi_valued:
            raise InvalidPath(f"{attr.name} is single-valued: no value filter")
        return _Target(urn, attr, parsed.value_filter, sub)

    def holder(self, t: _Target, *, create: bool) -> dict[str, Any] | None:
        if t.urn is None:
            return self.res
        ext = self.res.get(t.urn)
        if ext is None and create:
            ext = self.res[t.urn] = {}
        return ext if isinstance(ext, dict) else None

    def touch(self, t: _Target) -> None:
        self.result.touched.add(t.urn or t.attr.name)

    # -- values ------------------------------------------------------------------------------

    def coerce(self, attr: Attribute, value: Any) -> Any:
        """Entra's "True"/"False" for booleans; sub-attribute names to canonical case."""
        if attr.type == "boolean" and self.quirks.boolean_strings and isinstance(value, str) \
                and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if attr.type == "complex" and isinstance(value, dict):
            out = {}
            for k, v in value.items():
                sub = attr.sub.get(k.lower())
                if sub is None:
                    raise InvalidValue(f"no sub-attribute {k!r} in {attr.name}")
                if v is not None:
                    out[sub.name] = self.coerce(sub, v)
            return out
        return value

    def values(self, attr: Attribute, value: Any) -> list[Any]:
        items = value if isinstance(value, list) else [value]
        return [self.coerce(attr, v) for v in items if v is not None]

    # -- operations --------------------------------------------------------------------------

    def apply(self, op: Operation) -> None:
        if op.path is None:
            if op.op == "remove":  # Entra: remove with a value and no path
                self.pathless_remove(op.value)
                return
            if not isinstance(op.value, dict):
                raise InvalidValue(f"{op.op} without a path needs an object value")
            for key, value in op.value.items():
                self.pathless(op.op, key, value)
            return
        urn = self.schema.extension_urn(op.path)
        if urn is not None:  # the whole extension: its attributes one by one
            if op.op == "remove":
                self.res.pop(urn, None)
                self.result.touched.add(urn)
            else:
                self.pathless(op.op, urn, op.value)
            return
        t = self.target(op.path)
        self.check_mutable(t)
        if self.is_members(t):
            self.members(op, t)
            return
        if op.op == "remove":
            self.remove(t, op.value if op.has_value else None)
        elif op.op == "add":
            self.add(t, op.value)
        else:
            self.replace(t, op.value)

    def is_members(self, t: _Target) -> bool:
        return self.schema.kind == "Group" and t.urn is None and t.attr.name == "members"

    def check_mutable(self, t: _Target) -> None:
        attr = t.sub or t.attr
        if t.attr.mutability == "readOnly" or attr.mutability == "readOnly":
            raise Mutability(f"{t.attr.name} is read-only")

    def pathless(self, op: OpName, key: str, value: Any) -> None:
        if key in ("schemas", "id", "meta"):
            return  # RFC 7644 section 3.5.2: read-only attributes are ignored in values
        urn = self.schema.extension_urn(key)
        if urn is not None:
            if not isinstance(value, dict):
                raise InvalidValue(f"{urn} needs an object value")
            for sub_key, sub_value in value.items():
                if sub_key != "schemas":
                    self.pathless(op, f"{urn}:{sub_key}", sub_value)
            return
        if ("." in key.rsplit(":", 1)[-1] or ":" in key) and not self.quirks.dotted_keys:
            raise InvalidPath(f"{key!r} is a path, not an attribute name")
        t = self.target(key)
        self.check_mutable(t)
        if self.is_members(t):
            self.members(Operation(op, key, value, True), t)
        elif op == "add":
            self.add(t, value)
        else:
            self.replace(t, value)

    def pathless_remove(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise NoTarget("remove needs a path (RFC 7644 section 3.5.2.2)")
        for key, item in value.items():
            t = self.target(key)
            self.check_mutable(t)
            if self.is_members(t):
                self.members(Operation("remove", key, item, True), t)
            else:
                self.remove(t, item)

    def add(self, t: _Target, value: Any) -> None:
        holder = self.holder(t, create=True)
        assert holder is not None  # noqa: S101 - create=True
        attr, name = t.attr, t.attr.name
        self.touch(t)
        if t.value_filter is not None:
            self.set_in_matches(t, holder, value, replace_whole=False)
            return
        if attr.multi_valued:
            current = holder.setdefault(name, [])
            if t.sub is not None:  # "emails.type": set on every value
                for item in current:
                    item[t.sub.name] = self.coerce(t.sub, value)
                return
            for item in self.values(attr, value):
                if item not in current:
                    current.append(item)
            self.one_primary(current)
            return
        if t.sub is not None:
            holder.setdefault(name, {})[t.sub.name] = self.coerce(t.sub, value)
        elif attr.type == "complex":
            merged = dict(holder.get(name) or {})
            merged.update(self.coerce(attr, value) if isinstance(value, dict) else
                          _raise(InvalidValue(f"{name} needs an object value")))
            holder[name] = merged
        else:
            holder[name] = self.coerce(attr, value)

    def replace(self, t: _Target, value: Any) -> None:
        holder = self.holder(t, create=True)
        assert holder is not None  # noqa: S101
        attr, name = t.attr, t.attr.name
        self.touch(t)
        if t.value_filter is not None:
            self.set_in_matches(t, holder, value, replace_whole=t.sub is None)
            return
        if value is None:
            self.remove(t, None)
            return
        if attr.multi_valued:
            if t.sub is not None:
                for item in holder.get(name, []):
                    item[t.sub.name] = self.coerce(t.sub, value)
                return
            holder[name] = self.values(attr, value)
            self.one_primary(holder[name])
            return
        if t.sub is not None:
            holder.setdefault(name, {})[t.sub.name] = self.coerce(t.sub, value)
        elif attr.type == "complex":
            if not isinstance(value, dict):
                raise InvalidValue(f"{name} needs an object value")
            merged = dict(holder.get(name) or {})  # section 3.5.2.3: unspecified subs stay
            merged.update(self.coerce(attr, value))
            holder[name] = merged
        else:
            holder[name] = self.coerce(attr, value)

    def remove(self, t: _Target, value: Any) -> None:
        holder = self.holder(t, create=False)
        attr, name = t.attr, t.attr.name
        if t.sub is None and t.value_filter is None and (attr.required or name in UNREMOVABLE):
            raise InvalidValue(f"{name} cannot be removed: {UNREMOVABLE.get(name, 'required')}")
        self.touch(t)
        if holder is None or name not in holder:
            return
        if t.value_filter is not None:
            matcher = _matcher(t.value_filter)
            items = holder[name]
            if t.sub is None:
                holder[name] = [i for i in items if not matcher(i)]
            else:
                for item in items:
                    if matcher(item):
                        item.pop(t.sub.name, None)
        elif value is not None and attr.multi_valued and t.sub is None \
                and self.quirks.remove_value_list:
            drop = self.values(attr, value)
            holder[name] = [i for i in holder[name] if not _selected(i, drop)]
        elif t.sub is not None:
            current = holder[name]
            for item in current if isinstance(current, list) else [current]:
                item.pop(t.sub.name, None)
        else:
            del holder[name]
        if holder.get(name) in ([], {}):
            del holder[name]
        if t.urn is not None and not holder:
            del self.res[t.urn]

    def set_in_matches(self, t: _Target, holder: dict[str, Any], value: Any, *,
                       replace_whole: bool) -> None:
        matcher = _matcher(t.value_filter)
        items = holder.setdefault(t.attr.name, [])
        matched = [i for i in items if matcher(i)]
        if not matched:
            described = _described(t.value_filter) if self.quirks.create_unmatched_filter \
                else None
            if described is None:
                raise NoTarget(f"the filter of {t.attr.name} matches no value")
            entry = self.coerce(t.attr, described)
            items.append(entry)
            matched = [entry]
        for item in matched:
            if t.sub is not None:
                item[t.sub.name] = self.coerce(t.sub, value)
            elif replace_whole:
                new = self.coerce(t.attr, value)
                if not isinstance(new, dict):
                    raise InvalidValue(f"{t.attr.name} values are objects")
                item.clear()
                item.update(new)
            else:
                if not isinstance(value, dict):
                    raise InvalidValue(f"{t.attr.name} values are objects")
                item.update(self.coerce(t.attr, value))
        self.one_primary(items)

    @staticmethod
    def one_primary(items: list[Any]) -> None:
        """RFC 7644 section 3.5.2: a new primary value makes the others non-primary."""
        primaries = [i for i in items if isinstance(i, dict) and i.get("primary") is True]
        for item in primaries[:-1]:
            item.pop("primary", None)

    # -- members -----------------------------------------------------------------------------

    def members(self, op: Operation, t: _Target) -> None:
        self.result.touched.add("members")
        changes = self.result.members
        if t.sub is not None:
            raise InvalidPath("members sub-attributes cannot be patched")
        if t.value_filter is not None:
            if op.op != "remove":
                raise InvalidPath("only remove takes a members filter")
            changes.append(MemberChange("remove", _member_ids_of_filter(t.value_filter)))
            return
        if op.op == "remove":
            if op.value is None or not self.quirks.remove_value_list:
                changes.append(MemberChange("remove", None))
            else:
                changes.append(MemberChange("remove", _member_ids(op.value)))
        else:
            changes.append(MemberChange(op.op, _member_ids(op.value)))


def _raise(exc: Exception) -> Any:
    raise exc


def _member_ids(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str) \
                or not item["value"]:
            raise InvalidValue("each member needs a string value (the member's id)")
        ids.append(item["value"])
    return tuple(dict.fromkeys(ids))


def _selected(item: Any, drop: list[Any]) -> bool:
    """Whether ``item`` is one of the values a remove-with-value names: equal, or equal on
    every sub-attribute the named value gives."""
    for d in drop:
        if item == d:
            return True
        if isinstance(item, dict) and isinstance(d, dict) and d and all(
                item.get(k) == v for k, v in d.items()):
            return True
    return False


# -- value filters ---------------------------------------------------------------------------
# Evaluated on one value of a multi-valued attribute (``emails[type eq "work"]``): its paths
# name sub-attributes. Strings compare case-insensitively (RFC 7644 section 3.4.2.2 for
# attributes whose caseExact is false, which is every sub-attribute a filter path reaches here).

def _matcher(ast: Filter) -> Any:
    def match(item: Any) -> bool:
        return isinstance(item, dict) and _matches(ast, item)
    return match


def _sub_value(item: Mapping[str, Any], name: str) -> Any:
    lowered = name.lower()
    return next((v for k, v in item.items() if k.lower() == lowered), None)


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _matches(ast: Filter, item: Mapping[str, Any]) -> bool:
    if isinstance(ast, And):
        return _matches(ast.left, item) and _matches(ast.right, item)
    if isinstance(ast, Or):
        return _matches(ast.left, item) or _matches(ast.right, item)
    if isinstance(ast, Not):
        return not _matches(ast.operand, item)
    if isinstance(ast, ValuePath):
        raise InvalidFilter("a value filter cannot hold another value filter")
    name = ast.path.attribute if ast.path.sub_attribute is None else ast.path.sub_attribute
    actual = _sub_value(item, name)
    if isinstance(ast, Present):
        return actual not in (None, "", [], {})
    assert isinstance(ast, Compare)  # noqa: S101 - the AST's last kind
    return _compare(ast.op, _fold(actual), _fold(ast.value))


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if actual is None or expected is None:
        return False
    if op in ("co", "sw", "ew"):
        if not isinstance(actual, str) or not isinstance(expected, str):
            raise InvalidFilter(f"{op} compares strings only")
        return {"co": expected in actual, "sw": actual.startswith(expected),
                "ew": actual.endswith(expected)}[op]
    if isinstance(actual, bool) or isinstance(expected, bool) or \
            (type(actual) is not type(expected) and not (
                isinstance(actual, int | float) and isinstance(expected, int | float))):
        raise InvalidFilter(f"{op} cannot compare these values")
    return bool({"gt": actual > expected, "ge": actual >= expected,
                 "lt": actual < expected, "le": actual <= expected}[op])


def _described(ast: Filter) -> dict[str, Any] | None:
    """The entry an ``eq``-only filter describes (``type eq "work"`` -> {"type": "work"}),
    or None when the filter describes no single entry."""
    if isinstance(ast, Compare) and ast.op == "eq" and ast.value is not None:
        name = ast.path.sub_attribute or ast.path.attribute
        return {name: ast.value}
    if isinstance(ast, And):
        left, right = _described(ast.left), _described(ast.right)
        if left is not None and right is not None:
            return {**left, **right}
    return None


def _member_ids_of_filter(ast: Filter) -> tuple[str, ...]:
    """``value eq "a"`` (or several joined by ``or``) -> ("a", ...)."""
    if isinstance(ast, Compare) and ast.op == "eq" and isinstance(ast.value, str) and (
            (ast.path.sub_attribute or ast.path.attribute).lower() == "value"):
        return (ast.value,)
    if isinstance(ast, Or):
        return tuple(dict.fromkeys(_member_ids_of_filter(ast.left)
                                   + _member_ids_of_filter(ast.right)))
    raise InvalidFilter('a members filter must be value eq "<id>" (or several joined by or)')
