"""Translation of a SCIM filter AST to one SQL WHERE clause (never evaluated in Python over
rows), for users (``account`` rows and their ``scim`` JSON) and groups, on SQLite and
PostgreSQL (the ``sortBy`` key and paging are in ``paging.py``).

An attribute resolves to one of the small descriptions below (a string, a boolean, a
dateTime, a complex or a multi-valued attribute); :class:`Translator` turns a comparison on
it into SQL. Atoms are built in their positive form (so ``userName eq`` uses its index); a
negated atom is ``NOT coalesce(atom, false)``, which is right in SQL's three-valued logic (an
absent value matches ``ne`` and ``not (...)``). The terms of a disjunction on one
multi-valued attribute share one EXISTS (``groups``: one IN over the groups' members), and
``eq`` terms on one attribute one IN list, so a filter's cost does not grow with its
terms; :mod:`.filter_cost` refuses what would still be costly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa

from jitprov.store import tables as t
from jitprov.store.scim.errors import InvalidFilter
from jitprov.store.scim.filter_cost import BinaryNode as _BinaryNode
from jitprov.store.scim.filter_cost import CompareNode as _CompareNode
from jitprov.store.scim.filter_cost import FilterBudget, disjuncts
from jitprov.store.scim.filter_cost import NotNode as _NotNode
from jitprov.store.scim.filter_cost import PresentNode as _PresentNode
from jitprov.store.scim.filter_cost import ValuePathNode as _ValuePathNode
from jitprov.store.scim.records import (
    ENTERPRISE_SCHEMA,
    GROUP_SCHEMA,
    USER_SCHEMA,
    AttrPathNode,
    FilterNode,
)

_E = sa.ColumnElement[Any]
_Cond = sa.ColumnElement[bool]


@dataclass(frozen=True, slots=True)
class _Str:
    expr: _E
    case_exact: bool = False
    lower: _E | None = None  # an already lower-cased form with an index (``*_lower`` columns)
    #: a positive ``eq`` (of any of the lower-cased values) better than the generic one
    eq: Callable[[Sequence[str]], _Cond] | None = None


@dataclass(frozen=True, slots=True)
class _Bool:
    is_true: _Cond
    is_false: _Cond
    present: _Cond


@dataclass(frozen=True, slots=True)
class _Time:
    expr: _E


@dataclass(frozen=True, slots=True)
class _Complex:
    """A single-valued complex attribute (``name``, ``manager``): only ``pr`` without a sub."""

    present: _Cond


_Scalar = _Str | _Bool | _Time | _Complex
#: builds the condition "some value of a multi-valued attribute satisfies ``cond``", where
#: ``cond`` maps a value's sub-attribute name (lower-case) to a _Scalar
_Element = Callable[[str], _Scalar]


@dataclass(frozen=True, slots=True)
class Multi:
    name: str
    some: Callable[[Callable[[_Element], _Cond]], _Cond]
    present: _Cond
    subs: Mapping[str, str]  # lower-case sub-attribute -> canonical name


_Attr = _Scalar | Multi


def _json_path(keys: Sequence[str]) -> str:
    return "$" + "".join(f'."{k}"' for k in keys)


class _Json:
    """JSON extraction that renders on SQLite (json1) and PostgreSQL (``json`` type)."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def text(self, doc: _E, *keys: str) -> _E:
        if self.pg:
            return sa.func.json_extract_path_text(doc, *keys, type_=sa.String)
        return sa.func.json_extract(doc, _json_path(keys), type_=sa.String)

    def boolean(self, doc: _E, *keys: str) -> _Bool:
        # SQLite: json_type() is 'true'/'false' for booleans; PostgreSQL: ->> gives their text
        value = (sa.func.json_extract_path_text(doc, *keys, type_=sa.String) if self.pg
                 else sa.func.json_type(doc, _json_path(keys), type_=sa.String))
        return _Bool(value == "true", value == "false", value.in_(("true", "false")))

    def present(self, doc: _E, *keys: str) -> _Cond:
        """The value exists and is not JSON null."""
        kind = (sa.func.json_typeof(sa.func.json_extract_path(doc, *keys, type_=sa.JSON))
                if self.pg else sa.func.json_type(doc, _json_path(keys)))
        return sa.and_(kind.is_not(None), kind != "null")

    def array(self, doc: _E, key: str) -> _E:
        """The array at ``doc.key`` (NULL when absent or not an array), for ``elements``."""
        if self.pg:
            value = sa.func.json_extract_path(doc, key, type_=sa.JSON)
            return sa.case((sa.func.json_typeof(value) == "array", value))
        return doc

    def nonempty(self, doc: _E, key: str) -> _Cond:
        if self.pg:
            return sa.func.json_array_length(self.array(doc, key)) > 0
        return sa.func.json_array_length(doc, _json_path((key,))) > 0

    def elements(self, doc: _E, key: str) -> tuple[sa.TableValuedAlias, _E]:
        """(the rows of the array at ``doc.key``, one row's object or NULL)."""
        if self.pg:
            rows = (sa.func.json_array_elements(self.array(doc, key))
                    .table_valued(sa.column("value", sa.JSON)).alias("elem"))
            return rows, rows.c.value
        rows = (sa.func.json_each(doc, _json_path((key,)))
                .table_valued("value", "type").alias("elem"))
        return rows, sa.case((rows.c.type == "object", rows.c.value))


_MULTI_SUBS = ("value", "display", "type", "primary")
_ADDRESS_SUBS = ("formatted", "streetAddress", "locality", "region", "postalCode", "country",
                 "type", "primary")
#: multi-valued complex attributes of the core User held in ``account.scim``
_USER_MULTI: Mapping[str, tuple[str, tuple[str, ...]]] = {
    name.lower(): (name, subs) for name, subs in (
        ("emails", _MULTI_SUBS), ("phoneNumbers", _MULTI_SUBS), ("ims", _MULTI_SUBS),
        ("photos", _MULTI_SUBS), ("addresses", _ADDRESS_SUBS), ("entitlements", _MULTI_SUBS),
        ("roles", _MULTI_SUBS), ("x509Certificates", _MULTI_SUBS))}
_USER_STRINGS = {n.lower(): n for n in (
    "displayName", "nickName", "profileUrl", "title", "userType", "preferredLanguage", "locale",
    "timezone")}
_NAME_SUBS = {n.lower(): n for n in (
    "formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix")}
_ENTERPRISE_STRINGS = {n.lower(): n for n in (
    "employeeNumber", "costCenter", "organization", "division", "department")}
_MANAGER_SUBS = {n.lower(): n for n in ("value", "displayName", "$ref")}

A = t.account
G = t.scim_group
#: "no userName": ``user_name_lower || ''`` is NULL exactly when user_name_lower is, and keeps
#: SQLite from answering it with the userName index (every JIT account) instead of looking
#: the email up in its own index
NO_USER_NAME = A.c.user_name_lower.concat("").is_(None)
M = t.scim_group_member


def _fail(path: AttrPathNode, why: str = "is not a filterable attribute") -> InvalidFilter:
    return InvalidFilter(f"{_path_text(path)} {why}")


def _path_text(path: AttrPathNode) -> str:
    sub = f".{path.sub_attribute}" if path.sub_attribute else ""
    return f"{path.attribute}{sub}"


#: SQLite's lower() folds ASCII only; the ``*_lower`` columns hold Python's str.lower(), and
#: so must what a filter compares them and JSON values with
_SQLITE_LOWER = "jitprov_lower"


def _python_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _lower(expr: _E, dialect: str) -> _E:
    if dialect == "sqlite":
        return getattr(sa.func, _SQLITE_LOWER)(expr, type_=sa.String)  # type: ignore[no-any-return]
    return sa.func.lower(expr, type_=sa.String)


def prepare(conn: sa.Connection) -> str:
    """The connection's dialect name; on SQLite, registers ``jitprov_lower`` (Python's
    Unicode-aware str.lower) on this connection first."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
            _SQLITE_LOWER, 1, _python_lower, deterministic=True)
    return dialect


def _like_pattern(value: str, op: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op]


def _glob_pattern(value: str, op: str) -> str:
    escaped = "".join(f"[{c}]" if c in "*?[" else c for c in value)
    return {"co": f"*{escaped}*", "sw": f"{escaped}*", "ew": f"*{escaped}"}[op]


def _parse_time(path: AttrPathNode, value: object) -> datetime:
    if not isinstance(value, str):
        raise _fail(path, "is a dateTime: compare it with a string such as "
                          '"2026-11-28T07:00:00Z"')
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _fail(path, f"is a dateTime: {value!r} is not an xsd:dateTime") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Term:
    """``multi.sub op value`` as a comparison on one value of ``multi``: ``target`` names the
    sub-attribute, ``path`` is the filter's own (for messages)."""

    path: AttrPathNode
    target: AttrPathNode
    op: str
    value: object
    kind: str = "compare"


@dataclass(frozen=True, slots=True)
class _SubPath:
    attribute: str
    sub_attribute: None = None
    schema: None = None


class Translator:
    """A filter AST -> a WHERE clause, for one resource type and dialect; refuses a filter
    over its cost budget (see :mod:`.filter_cost`)."""

    def __init__(self, dialect: str, resolve: Callable[[AttrPathNode], _Attr],
                 budget: FilterBudget | None = None) -> None:
        self.dialect = dialect
        self.resolve = resolve
        self.budget = FilterBudget() if budget is None else budget

    def where(self, node: FilterNode) -> _Cond:
        cond = self.node(node, False, self.resolve)
        self.budget.check()
        return cond

    def node(self, node: FilterNode, negate: bool,
              resolve: Callable[[AttrPathNode], _Attr]) -> _Cond:
        kind = node.kind
        if kind == "and":
            pair = cast(_BinaryNode, node)
            left = self.node(pair.left, negate, resolve)
            right = self.node(pair.right, negate, resolve)
            # De Morgan under negation
            return sa.or_(left, right) if negate else sa.and_(left, right)
        if kind in ("or", "value_path", "compare"):
            return self._disjunction(disjuncts(node), negate, resolve)
        if kind == "not":
            return self.node(cast(_NotNode, node).operand, not negate, resolve)
        if kind == "present":
            return self._neg(self._present(resolve(cast(_PresentNode, node).path),
                                           cast(_PresentNode, node).path), negate)
        raise InvalidFilter(f"unsupported filter node {kind!r}")

    def _disjunction(self, parts: Sequence[FilterNode], negate: bool,
                     resolve: Callable[[AttrPathNode], _Attr]) -> _Cond:
        """``a or b or ...`` (negated: ``not a and not b ...``). The terms on one multi-valued
        attribute become one "some value matches a or b" (one EXISTS or IN, not one per
        term), and the ``eq`` terms on one string attribute one IN list."""
        conds: list[_Cond] = []
        multis: dict[str, tuple[Multi, list[FilterNode]]] = {}
        eqs: dict[str, tuple[_Str, list[str]]] = {}
        for part in parts:
            if part.kind == "value_path":
                vp = cast(_ValuePathNode, part)
                attr = resolve(vp.path)
                if not isinstance(attr, Multi) or vp.path.sub_attribute is not None:
                    raise _fail(vp.path, "is not a multi-valued attribute: it takes no [filter]")
                multis.setdefault(attr.name, (attr, []))[1].extend(disjuncts(vp.filter))
            elif part.kind == "compare":
                cmp = cast(_CompareNode, part)
                attr = resolve(cmp.target if isinstance(cmp, _Term) else cmp.path)
                op = cmp.op.lower()
                if isinstance(attr, Multi):
                    # `emails co "x"` compares each value's "value" (RFC 7644 §3.4.2.2); a
                    # multi-valued attribute matches when any value does, so
                    # `emails.value ne "x"` is "some email is not x"
                    sub = "value" if cmp.path.sub_attribute is None \
                        else cmp.path.sub_attribute.lower()
                    if sub not in attr.subs:
                        raise _fail(cmp.path)
                    multis.setdefault(attr.name, (attr, []))[1].append(
                        _Term(cmp.path, _SubPath(sub), op, cmp.value))
                elif isinstance(attr, _Str) and op == "eq" and isinstance(cmp.value, str):
                    key = f"{cmp.path.schema or ''}:{_path_text(cmp.path)}".lower()
                    eqs.setdefault(key, (attr, []))[1].append(cmp.value)
                else:
                    conds.append(self._scalar_compare(attr, cmp.path, op, cmp.value, negate))
            else:
                conds.append(self.node(part, negate, resolve))
        conds += [self._neg(self._eq_any(attr, values), negate) for attr, values in eqs.values()]
        for multi, terms in multis.values():
            def inner(element: _Element, multi: Multi = multi,
                      terms: list[FilterNode] = terms) -> _Cond:
                return self._disjunction(terms, False, lambda p: self.sub(multi, element, p))
            conds.append(self._neg(multi.some(inner), negate))
        if len(conds) == 1:
            return conds[0]
        return sa.and_(*conds) if negate else sa.or_(*conds)

    def _eq_any(self, attr: _Str, values: Sequence[str]) -> _Cond:
        """``attr`` equals one of ``values``: one comparison, an IN list for several."""
        self.budget.charge()
        operands = list(dict.fromkeys(values if attr.case_exact
                                      else (v.lower() for v in values)))
        if attr.eq is not None:
            return attr.eq(operands)
        expr = attr.expr if attr.case_exact else (
            attr.lower if attr.lower is not None else _lower(attr.expr, self.dialect))
        return expr == operands[0] if len(operands) == 1 else expr.in_(operands)

    def sub(self, multi: Multi, element: _Element, path: AttrPathNode) -> _Scalar:
        if path.schema is not None or path.sub_attribute is not None:
            raise _fail(path, f"is not a sub-attribute of {multi.name}")
        name = path.attribute.lower()
        if name not in multi.subs:
            raise _fail(path, f"is not a sub-attribute of {multi.name}")
        return element(name)

    def _scalar_compare(self, attr: _Scalar, path: AttrPathNode, op: str, value: object,
                        negate: bool) -> _Cond:
        self.budget.charge()
        if op == "ne":
            return self._neg(self._compare(attr, path, "eq", value), not negate)
        return self._neg(self._compare(attr, path, op, value), negate)

    @staticmethod
    def _neg(cond: _Cond, negate: bool) -> _Cond:
        return sa.not_(sa.func.coalesce(cond, sa.false())) if negate else cond

    def _present(self, attr: _Attr, path: AttrPathNode) -> _Cond:
        self.budget.charge()
        if isinstance(attr, Multi):
            if path.sub_attribute is None:
                return attr.present
            sub = path.sub_attribute.lower()
            if sub not in attr.subs:
                raise _fail(path)
            return attr.some(lambda element: self._present(element(sub), path))
        if isinstance(attr, _Str):
            return sa.and_(attr.expr.is_not(None), attr.expr != "")
        if isinstance(attr, _Time):
            return attr.expr.is_not(None)
        return attr.present

    def _compare(self, attr: _Scalar, path: AttrPathNode, op: str, value: object) -> _Cond:
        if value is None:
            if op != "eq":
                raise _fail(path, f"cannot be compared to null with {op}")
            return sa.not_(sa.func.coalesce(self._present(attr, path), sa.false()))
        if isinstance(attr, _Complex):
            raise _fail(path, "is complex: filter on a sub-attribute")
        if isinstance(attr, _Bool):
            if not isinstance(value, bool):
                raise _fail(path, "is a boolean: compare it with true or false")
            if op != "eq":
                raise _fail(path, f"is a boolean: {op} does not apply")
            return attr.is_true if value else attr.is_false
        if isinstance(attr, _Time):
            when = _parse_time(path, value)
            if op in ("co", "sw", "ew"):
                raise _fail(path, f"is a dateTime: {op} does not apply")
            return _ORDER_OPS[op](attr.expr, when)
        if not isinstance(value, str):
            raise _fail(path, "is a string: compare it with a JSON string")
        if attr.case_exact:
            expr, operand = attr.expr, value
        else:
            expr = attr.lower if attr.lower is not None else _lower(attr.expr, self.dialect)
            operand = value.lower()
        if op == "eq":
            if attr.eq is not None:
                return attr.eq([operand])
            return expr == operand
        if op in ("co", "sw", "ew"):
            if attr.case_exact and self.dialect == "sqlite":
                # SQLite's LIKE ignores ASCII case; GLOB does not
                return expr.op("GLOB", is_comparison=True)(_glob_pattern(operand, op))
            return expr.like(_like_pattern(operand, op), escape="\\")
        if self.dialect == "postgresql":
            expr = expr.collate("C")  # code-point order, as on SQLite
        return _ORDER_OPS[op](expr, operand)


_ORDER_OPS: Mapping[str, Callable[[_E, object], _Cond]] = {
    "eq": lambda e, v: e == v, "gt": lambda e, v: e > v, "ge": lambda e, v: e >= v,
    "lt": lambda e, v: e < v, "le": lambda e, v: e <= v}


# -- the attributes of each resource -----------------------------------------------------------
def _schema_of(path: AttrPathNode, allowed: Sequence[str]) -> str | None:
    if path.schema is None:
        return None
    for urn in allowed:
        if path.schema.lower() == urn.lower():
            return urn
    raise _fail(path, f"names an unknown schema {path.schema!r}")


def user_attributes(dialect: str, tenant_id: int) -> Callable[[AttrPathNode], _Attr]:
    """The User attributes (RFC 7643 §4.1, §4.3) over ``account`` and ``account.scim``."""
    json = _Json(dialect)
    scim = A.c.scim

    def user_name_eq(lowered: Sequence[str]) -> _Cond:
        # two index lookups, (tenant_id, user_name_lower) and (tenant_id, email_lower), as an
        # IN over the primary key: planners cost that better than an OR of the two
        def match(column: _E) -> _Cond:
            return column == lowered[0] if len(lowered) == 1 else column.in_(lowered)
        by_name = sa.select(A.c.id).where(A.c.tenant_id == tenant_id,
                                          match(A.c.user_name_lower))
        by_email = sa.select(A.c.id).where(A.c.tenant_id == tenant_id, NO_USER_NAME,
                                           match(A.c.email_lower))
        return A.c.id.in_(sa.union_all(by_name, by_email))

    def json_multi(name: str, subs: Sequence[str]) -> Multi:
        canonical = {s.lower(): s for s in subs}

        def some(cond: Callable[[_Element], _Cond]) -> _Cond:
            rows, doc = json.elements(scim, name)

            def element(sub: str) -> _Scalar:
                if sub == "primary":
                    return json.boolean(doc, "primary")
                return _Str(json.text(doc, canonical[sub]))

            found = sa.exists().select_from(rows).where(cond(element))
            if name != "emails":
                return found
            # an account SCIM never wrote has one email: its email column, primary
            def jit(sub: str) -> _Scalar:
                if sub == "value":
                    return _Str(A.c.email, lower=A.c.email_lower)
                if sub == "primary":
                    return _Bool(sa.true(), sa.false(), sa.true())
                return _Str(sa.null())
            return sa.or_(sa.and_(scim.is_(None), cond(jit)), found)

        present = json.nonempty(scim, name)
        if name == "emails":
            present = sa.or_(sa.and_(scim.is_(None), A.c.email.is_not(None), A.c.email != ""),
                             present)
        return Multi(name, some, present, canonical)

    def groups() -> Multi:
        def some(cond: Callable[[_Element], _Cond]) -> _Cond:
            def element(sub: str) -> _Scalar:
                if sub == "value":
                    return _Str(G.c.id, case_exact=True)
                if sub == "display":
                    return _Str(G.c.display_name, lower=G.c.display_name_lower)
                return _Str(sa.literal("direct"))
            # the members of the matching groups, found once (groups by their index, their
            # members by the primary key), not an EXISTS tried on every user of the tenant
            return A.c.id.in_(sa.select(M.c.account_id)
                              .select_from(G.join(M, M.c.group_id == G.c.id))
                              .where(G.c.tenant_id == tenant_id, cond(element)))
        present = sa.exists().where(M.c.account_id == A.c.id)
        return Multi("groups", some, present, {"value": "value", "display": "display",
                                                "type": "type"})

    def schemas() -> Multi:
        # every user has the core schema; the enterprise one when it holds a value
        def some(cond: Callable[[_Element], _Cond]) -> _Cond:
            return sa.or_(cond(_literal_element(USER_SCHEMA)),
                          sa.and_(json.present(scim, ENTERPRISE_SCHEMA),
                                  cond(_literal_element(ENTERPRISE_SCHEMA))))
        return Multi("schemas", some, sa.true(), {"value": "value"})

    def resolve(path: AttrPathNode) -> _Attr:
        if path.attribute.lower() == "schemas" and path.schema is None:
            return schemas()
        schema = _schema_of(path, (USER_SCHEMA, ENTERPRISE_SCHEMA))
        name = path.attribute.lower()
        sub = path.sub_attribute.lower() if path.sub_attribute else None
        if schema != ENTERPRISE_SCHEMA:
            if name in _USER_MULTI:
                canonical, subs = _USER_MULTI[name]
                return json_multi(canonical, subs)
            if name == "groups":
                return groups()
            if sub is None:
                if name == "id":
                    return _Str(A.c.id, case_exact=True)
                if name == "username":
                    return _Str(sa.func.coalesce(A.c.user_name, A.c.email),
                                lower=sa.func.coalesce(A.c.user_name_lower, A.c.email_lower),
                                eq=user_name_eq)
                if name == "externalid":
                    return _Str(A.c.external_id, case_exact=True)
                if name == "active":
                    return _Bool(A.c.status == "active", A.c.status != "active", sa.true())
                if name in _USER_STRINGS:
                    return _Str(json.text(scim, _USER_STRINGS[name]))
                if name == "name":
                    return _Complex(json.present(scim, "name"))
            elif name == "name" and sub in _NAME_SUBS:
                return _Str(json.text(scim, "name", _NAME_SUBS[sub]))
            elif name == "meta" and sub == "created":
                return _Time(A.c.created_at)
            elif name == "meta" and sub == "lastmodified":
                return _Time(A.c.updated_at)
        if schema != USER_SCHEMA:
            if sub is None and name in _ENTERPRISE_STRINGS:
                return _Str(json.text(scim, ENTERPRISE_SCHEMA, _ENTERPRISE_STRINGS[name]))
            if name == "manager":
                if sub is None:
                    return _Complex(json.present(scim, ENTERPRISE_SCHEMA, "manager"))
                if sub in _MANAGER_SUBS:
                    return _Str(json.text(scim, ENTERPRISE_SCHEMA, "manager",
                                          _MANAGER_SUBS[sub]))
        raise _fail(path)

    return resolve


def group_attributes(dialect: str) -> Callable[[AttrPathNode], _Attr]:
    """The Group attributes (RFC 7643 §4.2)."""

    def members() -> Multi:
        def some(cond: Callable[[_Element], _Cond]) -> _Cond:
            return (sa.exists().select_from(M.join(A, A.c.id == M.c.account_id))
                    .where(M.c.group_id == G.c.id, cond(member_element(dialect))))
        return Multi("members", some, sa.exists().where(M.c.group_id == G.c.id),
                      {"value": "value", "display": "display", "type": "type"})

    def resolve(path: AttrPathNode) -> _Attr:
        _schema_of(path, (GROUP_SCHEMA,))
        name = path.attribute.lower()
        if name == "schemas" and path.schema is None:
            return Multi("schemas", lambda cond: cond(_literal_element(GROUP_SCHEMA)),
                          sa.true(), {"value": "value"})
        sub = path.sub_attribute.lower() if path.sub_attribute else None
        if name == "members":
            return members()
        if sub is None:
            if name == "id":
                return _Str(G.c.id, case_exact=True)
            if name == "displayname":
                return _Str(G.c.display_name, lower=G.c.display_name_lower)
            if name == "externalid":
                return _Str(G.c.external_id, case_exact=True)
        elif name == "meta" and sub == "created":
            return _Time(G.c.created_at)
        elif name == "meta" and sub == "lastmodified":
            return _Time(G.c.updated_at)
        raise _fail(path)

    return resolve


def _literal_element(urn: str) -> _Element:
    """The one value of ``schemas`` a constant stands for (URNs compare case-insensitively)."""

    def element(sub: str) -> _Scalar:
        return _Str(sa.literal(urn, sa.String))

    return element


def no_attribute(path: AttrPathNode) -> _Attr:
    raise _fail(path)


def member_display(dialect: str) -> _E:
    """A member's display: its displayName, else userName, else email."""
    return sa.func.coalesce(_Json(dialect).text(A.c.scim, "displayName"), A.c.user_name,
                            A.c.email)


def member_element(dialect: str) -> _Element:
    """A value of ``members``, over a join of scim_group_member and account."""

    def element(sub: str) -> _Scalar:
        if sub == "value":
            return _Str(M.c.account_id, case_exact=True)
        if sub == "display":
            return _Str(member_display(dialect))
        return _Str(sa.literal("User"))

    return element
