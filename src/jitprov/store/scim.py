"""The SCIM store (RFC 7643/7644): users (the same ``account`` rows JIT login writes), groups
and their members, SCIM client tokens; and the translation of a filter AST to SQL.

``uow.scim`` is a :class:`ScimStore` with three narrow repositories over the unit of work's
transaction: ``uow.scim.users``, ``uow.scim.groups``, ``uow.scim.tokens``. Their writes are
plain statements: the service composes them with ``uow.accounts.set_status``,
``uow.sessions.revoke_all``, ``uow.audit`` and ``uow.outbox`` in one transaction.

Filters are translated to one SQL WHERE clause (never evaluated in Python over rows). The AST is
the one ``jitprov.protocols.scim.filter`` builds, read structurally through its ``kind`` field
(``store/`` and ``protocols/`` do not import each other): see :class:`FilterNode`.

Schema decisions (see ``tables.py``):

- **userName of a JIT account.** JIT login does not set ``user_name``; wherever SCIM reads or
  filters userName, an account with no ``user_name`` shows its ``email`` instead
  (:attr:`ScimUser.effective_user_name`). So the IdP's ``userName eq "alice@x.org"`` before its
  POST finds the account JIT created at alice's first login, and that POST gets 409 uniqueness.
  Both lookups use an index: (tenant_id, user_name_lower) and (tenant_id, email_lower).
- **emails of a JIT account.** An account SCIM never wrote (``scim`` is NULL) has one email:
  ``[{"value": <email>, "primary": true}]``. Once SCIM wrote it, its emails are ``scim["emails"]``.
- **displayName of a group is unique per tenant**, case-insensitively (Entra and Okta match groups
  by it; a retried POST must not create a second group): :class:`Uniqueness`.
- Only accounts of kind ``user`` are SCIM users; admin, break-glass and service accounts are
  invisible here.

The ``scim`` JSON of an account holds the SCIM attributes that have no column, in the canonical
form (RFC 7643 attribute names and casing; the enterprise extension under its URN key), without
``id``, ``userName``, ``externalId``, ``active``, ``meta``, ``groups``, ``schemas``, ``password``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from jitprov.core.errors import Conflict, InvalidInput, NotFound
from jitprov.store import tables as t
from jitprov.store.fast import Prepared
from jitprov.store.repositories import utc

ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


# -- errors -------------------------------------------------------------------------------------
class Uniqueness(Conflict):
    """A userName (or a group's displayName) already taken in the tenant, case-insensitively.
    The service answers 409 ``scimType: uniqueness``."""

    code = "uniqueness"


class VersionMismatch(Conflict):
    """``expected_version`` is not the stored version (If-Match: 412 Precondition Failed)."""

    code = "version_mismatch"


class InvalidFilter(InvalidInput):
    """A filter or sortBy the store cannot translate: an unknown attribute, or an operator or
    value that does not fit the attribute's type. 400 ``scimType: invalidFilter``."""

    code = "invalid_filter"


class UnknownMembers(InvalidInput):
    """Account ids that are not users of the group's tenant; ``account_ids`` lists them."""

    code = "unknown_members"

    def __init__(self, account_ids: Sequence[str]) -> None:
        self.account_ids = tuple(account_ids)
        super().__init__(f"not users of this tenant: {', '.join(self.account_ids)}")


# -- the filter AST, read structurally --------------------------------------------------------
class AttrPathNode(Protocol):
    @property
    def attribute(self) -> str: ...
    @property
    def sub_attribute(self) -> str | None: ...
    @property
    def schema(self) -> str | None: ...


class FilterNode(Protocol):
    """Any node of ``jitprov.protocols.scim.filter.Filter``; ``kind`` names its shape:
    compare (path, op, value), present (path), and/or (left, right), not (operand),
    value_path (path, filter)."""

    @property
    def kind(self) -> str: ...


# -- records ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScimUser:
    """An account as SCIM sees it (a copy). ``user_name`` is the stored userName (None for an
    account SCIM never named); ``scim`` is None for an account SCIM never wrote."""

    id: str
    tenant_id: int
    user_name: str | None
    external_id: str | None
    status: str
    email: str | None
    scim: Mapping[str, object] | None
    profile: Mapping[str, object]
    provisioned_by: str
    version: int
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    deactivated_at: datetime | None

    @property
    def effective_user_name(self) -> str | None:
        """The userName SCIM shows and filters on: ``user_name``, else ``email``."""
        return self.user_name if self.user_name is not None else self.email

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class GroupMember:
    """``value`` is the account id; ``display`` its displayName, else userName, else email."""

    value: str
    display: str | None


@dataclass(frozen=True, slots=True)
class ScimGroup:
    """A group (a copy). ``members`` is None when not loaded (``with_members=False``)."""

    id: str
    tenant_id: int
    display_name: str
    external_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    members: tuple[GroupMember, ...] | None = None


@dataclass(frozen=True, slots=True)
class ScimTokenRecord:
    """A SCIM client token as listed (never the token, never its hash)."""

    id: int
    tenant_id: int
    name: str
    connection_id: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class ActiveScimToken:
    """What authenticates a SCIM request. ``token_hash`` for the caller's
    ``hmac.compare_digest``."""

    id: int
    tenant_id: int
    connection_id: int | None
    token_hash: str


# -- translation of a filter to SQL ----------------------------------------------------------
# An attribute resolves to one of these; ``_Translator`` turns a comparison on it into SQL.
# Atoms are built in their positive form (so ``userName eq`` uses its index); a negated atom is
# ``NOT coalesce(atom, false)``, which is right in SQL's three-valued logic (an absent value
# matches ``ne`` and ``not (...)``).
_E = sa.ColumnElement[Any]
_Cond = sa.ColumnElement[bool]


@dataclass(frozen=True, slots=True)
class _Str:
    expr: _E
    case_exact: bool = False
    lower: _E | None = None  # an already lower-cased form with an index (``*_lower`` columns)
    eq: Callable[[str], _Cond] | None = None  # a positive ``eq`` better than the generic one


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
class _Multi:
    name: str
    some: Callable[[Callable[[_Element], _Cond]], _Cond]
    present: _Cond
    subs: Mapping[str, str]  # lower-case sub-attribute -> canonical name


_Attr = _Scalar | _Multi


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
_NO_USER_NAME = A.c.user_name_lower.concat("").is_(None)
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


def _prepare(conn: sa.Connection) -> str:
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


class _Translator:
    """A filter AST -> a WHERE clause, for one resource type and dialect."""

    def __init__(self, dialect: str, resolve: Callable[[AttrPathNode], _Attr]) -> None:
        self.dialect = dialect
        self.resolve = resolve

    def where(self, node: FilterNode) -> _Cond:
        return self._node(node, False, self.resolve)

    def _node(self, node: FilterNode, negate: bool,
              resolve: Callable[[AttrPathNode], _Attr]) -> _Cond:
        kind = node.kind
        if kind in ("and", "or"):
            pair = cast(_BinaryNode, node)
            left = self._node(pair.left, negate, resolve)
            right = self._node(pair.right, negate, resolve)
            # De Morgan under negation
            return sa.and_(left, right) if (kind == "and") != negate else sa.or_(left, right)
        if kind == "not":
            return self._node(cast(_NotNode, node).operand, not negate, resolve)
        if kind == "value_path":
            vp = cast(_ValuePathNode, node)
            attr = resolve(vp.path)
            if not isinstance(attr, _Multi) or vp.path.sub_attribute is not None:
                raise _fail(vp.path, "is not a multi-valued attribute: it takes no [filter]")
            multi = attr

            def inner(element: _Element) -> _Cond:
                return self._node(vp.filter, False, lambda p: self._sub(multi, element, p))

            return self._neg(multi.some(inner), negate)
        if kind == "present":
            return self._neg(self._present(resolve(cast(_PresentNode, node).path),
                                           cast(_PresentNode, node).path), negate)
        if kind == "compare":
            cmp = cast(_CompareNode, node)
            attr = resolve(cmp.path)
            return self._node_compare(attr, cmp.path, cmp.op.lower(), cmp.value, negate)
        raise InvalidFilter(f"unsupported filter node {kind!r}")

    def _sub(self, multi: _Multi, element: _Element, path: AttrPathNode) -> _Scalar:
        if path.schema is not None or path.sub_attribute is not None:
            raise _fail(path, f"is not a sub-attribute of {multi.name}")
        name = path.attribute.lower()
        if name not in multi.subs:
            raise _fail(path, f"is not a sub-attribute of {multi.name}")
        return element(name)

    def _node_compare(self, attr: _Attr, path: AttrPathNode, op: str, value: object,
                      negate: bool) -> _Cond:
        if isinstance(attr, _Multi):
            multi = attr
            # `emails co "x"` compares each value's "value" (RFC 7644 §3.4.2.2)
            sub = "value" if path.sub_attribute is None else path.sub_attribute.lower()
            if sub not in multi.subs:
                raise _fail(path)

            def inner(element: _Element) -> _Cond:
                # RFC 7644 §3.4.2.2: a multi-valued attribute matches when any value does,
                # so `emails.value ne "x"` is "some email is not x"
                return self._scalar_compare(element(sub), path, op, value, False)

            return self._neg(multi.some(inner), negate)
        return self._scalar_compare(attr, path, op, value, negate)

    def _scalar_compare(self, attr: _Scalar, path: AttrPathNode, op: str, value: object,
                        negate: bool) -> _Cond:
        if op == "ne":
            return self._neg(self._compare(attr, path, "eq", value), not negate)
        return self._neg(self._compare(attr, path, op, value), negate)

    @staticmethod
    def _neg(cond: _Cond, negate: bool) -> _Cond:
        return sa.not_(sa.func.coalesce(cond, sa.false())) if negate else cond

    def _present(self, attr: _Attr, path: AttrPathNode) -> _Cond:
        if isinstance(attr, _Multi):
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
                return attr.eq(operand)
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


class _BinaryNode(Protocol):
    @property
    def left(self) -> FilterNode: ...
    @property
    def right(self) -> FilterNode: ...


class _NotNode(Protocol):
    @property
    def operand(self) -> FilterNode: ...


class _PresentNode(Protocol):
    @property
    def path(self) -> AttrPathNode: ...


class _CompareNode(Protocol):
    @property
    def path(self) -> AttrPathNode: ...
    @property
    def op(self) -> str: ...
    @property
    def value(self) -> object: ...


class _ValuePathNode(Protocol):
    @property
    def path(self) -> AttrPathNode: ...
    @property
    def filter(self) -> FilterNode: ...


# -- the attributes of each resource -----------------------------------------------------------
def _schema_of(path: AttrPathNode, allowed: Sequence[str]) -> str | None:
    if path.schema is None:
        return None
    for urn in allowed:
        if path.schema.lower() == urn.lower():
            return urn
    raise _fail(path, f"names an unknown schema {path.schema!r}")


def _user_attributes(dialect: str, tenant_id: int) -> Callable[[AttrPathNode], _Attr]:
    """The User attributes (RFC 7643 §4.1, §4.3) over ``account`` and ``account.scim``."""
    json = _Json(dialect)
    scim = A.c.scim

    def user_name_eq(lowered: str) -> _Cond:
        # two index lookups, (tenant_id, user_name_lower) and (tenant_id, email_lower), as an
        # IN over the primary key: planners cost that better than an OR of the two
        by_name = sa.select(A.c.id).where(A.c.tenant_id == tenant_id,
                                          A.c.user_name_lower == lowered)
        by_email = sa.select(A.c.id).where(A.c.tenant_id == tenant_id, _NO_USER_NAME,
                                           A.c.email_lower == lowered)
        return A.c.id.in_(sa.union_all(by_name, by_email))

    def json_multi(name: str, subs: Sequence[str]) -> _Multi:
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
        return _Multi(name, some, present, canonical)

    def groups() -> _Multi:
        def some(cond: Callable[[_Element], _Cond]) -> _Cond:
            def element(sub: str) -> _Scalar:
                if sub == "value":
                    return _Str(G.c.id, case_exact=True)
                if sub == "display":
                    return _Str(G.c.display_name, lower=G.c.display_name_lower)
                return _Str(sa.literal("direct"))
            return (sa.exists().select_from(M.join(G, G.c.id == M.c.group_id))
                    .where(M.c.account_id == A.c.id, cond(element)))
        present = sa.exists().where(M.c.account_id == A.c.id)
        return _Multi("groups", some, present, {"value": "value", "display": "display",
                                                "type": "type"})

    def schemas() -> _Multi:
        # every user has the core schema; the enterprise one when it holds a value
        def some(cond: Callable[[_Element], _Cond]) -> _Cond:
            return sa.or_(cond(_literal_element(USER_SCHEMA)),
                          sa.and_(json.present(scim, ENTERPRISE_SCHEMA),
                                  cond(_literal_element(ENTERPRISE_SCHEMA))))
        return _Multi("schemas", some, sa.true(), {"value": "value"})

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


def _group_attributes(dialect: str) -> Callable[[AttrPathNode], _Attr]:
    """The Group attributes (RFC 7643 §4.2)."""

    def members() -> _Multi:
        def some(cond: Callable[[_Element], _Cond]) -> _Cond:
            return (sa.exists().select_from(M.join(A, A.c.id == M.c.account_id))
                    .where(M.c.group_id == G.c.id, cond(_member_element(dialect))))
        return _Multi("members", some, sa.exists().where(M.c.group_id == G.c.id),
                      {"value": "value", "display": "display", "type": "type"})

    def resolve(path: AttrPathNode) -> _Attr:
        _schema_of(path, (GROUP_SCHEMA,))
        name = path.attribute.lower()
        if name == "schemas" and path.schema is None:
            return _Multi("schemas", lambda cond: cond(_literal_element(GROUP_SCHEMA)),
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


def _no_attribute(path: AttrPathNode) -> _Attr:
    raise _fail(path)


def _member_display(dialect: str) -> _E:
    """A member's display: its displayName, else userName, else email."""
    return sa.func.coalesce(_Json(dialect).text(A.c.scim, "displayName"), A.c.user_name,
                            A.c.email)


def _member_element(dialect: str) -> _Element:
    """A value of ``members``, over a join of scim_group_member and account."""

    def element(sub: str) -> _Scalar:
        if sub == "value":
            return _Str(M.c.account_id, case_exact=True)
        if sub == "display":
            return _Str(_member_display(dialect))
        return _Str(sa.literal("User"))

    return element


_SORT_PATH = re.compile(
    r"^(?:(?P<schema>urn:[^\s\[\]]+):)?(?P<attribute>[A-Za-z$][\w$-]*)"
    r"(?:\.(?P<sub>[A-Za-z$][\w$-]*))?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _SortPath:
    attribute: str
    sub_attribute: str | None
    schema: str | None


def _sort_key(sort_by: str, resolve: Callable[[AttrPathNode], _Attr],
              primary_email: _E | None, dialect: str) -> _E:
    """The expression ``sortBy`` orders on (RFC 7644 §3.4.2.3: strings by their caseExact;
    a multi-valued attribute by its primary value). Raises InvalidFilter."""
    match = _SORT_PATH.match(sort_by.strip())
    if match is None:
        raise InvalidFilter(f"sortBy {sort_by!r} is not an attribute path")
    path = _SortPath(match["attribute"], match["sub"], match["schema"])
    attr = resolve(path)
    if isinstance(attr, _Multi):
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


def _drives_by_user_name(node: FilterNode) -> bool:
    """Whether ``userName eq "..."`` is a conjunct of the filter (so it selects a handful of
    the tenant's rows by itself)."""
    if node.kind == "and":
        pair = cast(_BinaryNode, node)
        return _drives_by_user_name(pair.left) or _drives_by_user_name(pair.right)
    if node.kind != "compare":
        return False
    cmp = cast(_CompareNode, node)
    return (cmp.op.lower() == "eq" and isinstance(cmp.value, str)
            and cmp.path.attribute.lower() == "username" and cmp.path.sub_attribute is None
            and (cmp.path.schema is None or cmp.path.schema.lower() == USER_SCHEMA.lower()))


def _tiebreak(column: _E, *, filtered: bool, dialect: str) -> _E:
    """The id to order by last. With a filter, SQLite would walk the (tenant, id) index in
    order and test every row rather than look up the filter's own index (``userName eq``:
    one row) and sort what it finds: ``id || ''`` keeps the order and hides the index."""
    return column.concat("") if filtered and dialect == "sqlite" else column


_Order = list[tuple[_E, bool]]  # (expression, descending)


def _order_by(key: _E | None, descending: bool, tiebreak: _E) -> _Order:
    """Values first, absent values last, then ``tiebreak`` ascending: a stable total order."""
    if key is None:
        return [(tiebreak, descending)]
    return [(sa.case((key.is_(None), 1), else_=0), False), (key, descending), (tiebreak, False)]


def _render(order: _Order, reverse: bool = False) -> list[_E]:
    return [e.asc() if desc == reverse else e.desc() for e, desc in order]


def _paginate(count: Callable[[], int], fetch: Callable[[list[_E], int, int], list[Any]],
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


def _page(start_index: int, count: int) -> tuple[int, int]:
    """(offset, limit) of 1-based ``startIndex`` and ``count`` (RFC 7644 §3.4.2.4: a
    startIndex below 1 is 1, a negative count is 0)."""
    return max(start_index, 1) - 1, max(count, 0)


# -- repositories -----------------------------------------------------------------------------
_USER_COLUMNS = (A.c.id, A.c.tenant_id, A.c.user_name, A.c.external_id, A.c.status, A.c.email,
                 A.c.scim, A.c.profile, A.c.provisioned_by, A.c.version, A.c.created_at,
                 A.c.updated_at, A.c.last_login_at, A.c.deactivated_at)
_IS_USER = A.c.kind == "user"
# the same test, hidden from the planner: next to an email or userName lookup, SQLite (no
# statistics) would otherwise walk (tenant_id, kind, id), every user of the tenant
_IS_USER_UNINDEXED = A.c.kind.concat("") == "user"
_B = sa.bindparam
_GET_USER = sa.select(*_USER_COLUMNS).where(A.c.id == _B("account_id"),
                                            A.c.tenant_id == _B("tenant_id"), _IS_USER)
_BY_USER_NAME = (
    # an IN over two index lookups (as the userName filter): an OR of the two would make
    # SQLite walk every account of the tenant
    sa.select(*_USER_COLUMNS)
    .where(A.c.id.in_(sa.union_all(
        sa.select(A.c.id).where(A.c.tenant_id == _B("tenant_id"),
                                A.c.user_name_lower == _B("lowered")),
        sa.select(A.c.id).where(A.c.tenant_id == _B("tenant_id"), _NO_USER_NAME,
                                A.c.email_lower == _B("lowered")))),
           _IS_USER_UNINDEXED)
    .order_by(A.c.user_name_lower.is_(None), A.c.id).limit(1))


def _user_name_taken(excluding: bool) -> Prepared:
    """Ids of the tenant's accounts whose effective userName is ``lowered``: a stored userName,
    or the email of an account without one (``excluding``: other than ``account_id``)."""
    taken = sa.union_all(
        sa.select(A.c.id).where(A.c.tenant_id == _B("tenant_id"),
                                A.c.user_name_lower == _B("lowered")),
        sa.select(A.c.id).where(A.c.tenant_id == _B("tenant_id"), _NO_USER_NAME,
                                A.c.email_lower == _B("lowered"), _IS_USER_UNINDEXED)
    ).subquery()
    query = sa.select(taken.c.id)
    return Prepared((query.where(taken.c.id != _B("account_id")) if excluding else query)
                    .limit(1))


_USER_NAME_TAKEN = {False: _user_name_taken(False), True: _user_name_taken(True)}
_INSERT_USER = Prepared(A.insert().values({c.name: _B(c.name) for c in A.columns}))


def _user(row: Any) -> ScimUser:
    return ScimUser(
        id=row.id, tenant_id=row.tenant_id, user_name=row.user_name,
        external_id=row.external_id, status=row.status, email=row.email,
        scim=None if row.scim is None else dict(row.scim), profile=dict(row.profile),
        provisioned_by=row.provisioned_by, version=row.version, created_at=utc(row.created_at),
        updated_at=utc(row.updated_at), last_login_at=_opt_utc(row.last_login_at),
        deactivated_at=_opt_utc(row.deactivated_at))


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


class ScimUserRepository:
    """SCIM users: the tenant's accounts of kind ``user``."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def get_user(self, tenant_id: int, account_id: str) -> ScimUser | None:
        """The user, or None (also for an account of another tenant)."""
        row = self._c.execute(_GET_USER, {"account_id": account_id,
                                          "tenant_id": tenant_id}).first()
        return None if row is None else _user(row)

    def find_by_user_name(self, tenant_id: int, user_name: str) -> ScimUser | None:
        """The user whose effective userName is ``user_name``, case-insensitively (a stored
        userName wins over a JIT account's email)."""
        row = self._c.execute(_BY_USER_NAME, {"tenant_id": tenant_id,
                                              "lowered": user_name.lower()}).first()
        return None if row is None else _user(row)

    def query_users(self, tenant_id: int, filter_ast: FilterNode | None, *,
                    sort_by: str | None = None, descending: bool = False,
                    start_index: int = 1, count: int = 100) -> tuple[int, list[ScimUser]]:
        """(totalResults, the page): the users matching ``filter_ast``, ordered by ``sort_by``
        (an attribute path such as ``userName``, ``meta.lastModified``, ``name.familyName``;
        None: by id) then by id, from the 1-based ``start_index``, at most ``count`` (0: only
        the total). Raises InvalidFilter for an attribute or comparison it cannot translate."""
        dialect = _prepare(self._c)
        resolve = _user_attributes(dialect, tenant_id)
        where = [A.c.tenant_id == tenant_id, _IS_USER]
        if filter_ast is not None:
            if dialect == "sqlite":
                # SQLite, without statistics, would take (tenant_id, kind, id) over the
                # filter's own index (externalId eq: (tenant_id, external_id)): hide kind;
                # and a userName eq (an IN over ids of this tenant) is the best start of all
                where[1] = A.c.kind.concat("") == "user"
                if _drives_by_user_name(filter_ast):
                    where[0] = A.c.tenant_id + 0 == tenant_id
            where.append(_Translator(dialect, resolve).where(filter_ast))
        key = None if sort_by is None else _sort_key(sort_by, resolve, A.c.email_lower, dialect)
        order = _order_by(key, descending, _tiebreak(A.c.id, filtered=filter_ast is not None,
                                                     dialect=dialect))
        offset, limit = _page(start_index, count)

        def fetch(order_by: list[_E], skip: int, take: int) -> list[Any]:
            # the page's ids first (an index-only scan when nothing else is needed), then
            # their rows: OFFSET skips index entries, not table rows
            ids = (sa.select(A.c.id).where(*where).order_by(*order_by).limit(take)
                   .offset(skip).subquery("page"))
            return list(self._c.execute(sa.select(*_USER_COLUMNS)
                                        .join(ids, ids.c.id == A.c.id).order_by(*order_by)))

        def total() -> int:
            return int(self._c.execute(sa.select(sa.func.count()).select_from(A)
                                       .where(*where)).scalar_one())

        count_, rows = _paginate(total, fetch, order, offset, limit)
        return count_, [_user(r) for r in rows]

    def _check_user_name(self, tenant_id: int, user_name: str,
                         account_id: str | None = None) -> None:
        """Raises Uniqueness if another user of the tenant has ``user_name`` as its effective
        userName (a stored userName, or the email of an account without one)."""
        clash = _USER_NAME_TAKEN[bool(account_id)].first(self._c, {
            "tenant_id": tenant_id, "lowered": user_name.lower(), "account_id": account_id})
        if clash is not None:
            raise Uniqueness(f"userName {user_name!r} is already taken")

    def create_user(self, tenant_id: int, *, user_name: str, external_id: str | None,
                    external_id_connection_id: int | None, active: bool, email: str | None,
                    scim: Mapping[str, object], profile: Mapping[str, object],
                    now: datetime) -> ScimUser:
        """Insert an account (provisioned_by ``scim``, kind ``user``, version 1). Raises
        Uniqueness when an account of the tenant has this effective userName."""
        self._check_user_name(tenant_id, user_name)
        account_id = str(uuid.uuid4())
        status = "active" if active else "suspended"
        _INSERT_USER.rowcount(self._c, {
            "id": account_id, "tenant_id": tenant_id, "status": status, "kind": "user",
            "provisioned_by": "scim", "external_id": external_id,
            "external_id_connection_id": external_id_connection_id, "email": email,
            "email_lower": email.lower() if email else None, "profile": dict(profile),
            "profile_sources": {k: "scim" for k in profile}, "idp_groups": [],
            "created_at": now, "updated_at": now, "last_login_at": None,
            "deactivated_at": None, "version": 1, "user_name": user_name,
            "user_name_lower": user_name.lower(), "scim": dict(scim)})
        return ScimUser(
            id=account_id, tenant_id=tenant_id, user_name=user_name, external_id=external_id,
            status=status, email=email, scim=dict(scim), profile=dict(profile),
            provisioned_by="scim", version=1, created_at=now, updated_at=now,
            last_login_at=None, deactivated_at=None)

    def replace_user(self, account_id: str, *, expected_version: int | None, user_name: str,
                     external_id: str | None, email: str | None, scim: Mapping[str, object],
                     profile: Mapping[str, object], now: datetime,
                     status: str | None = None,
                     writer_connection_id: int | None = None) -> ScimUser:
        """Overwrite the SCIM-held fields and bump ``version``. ``status`` None leaves it
        as is (else as ``AccountRepository.set_status``: ``deactivated_at`` follows). Raises
        NotFound, VersionMismatch (``expected_version`` given and not the stored one), Uniqueness.
        ``profile`` replaces the profile; its sources become ``scim``. A changed ``external_id``
        names subjects of the writer's connection (``writer_connection_id``, None for a client
        bound to none): no client can point another connection's logins at an account."""
        current = self._c.execute(
            sa.select(A.c.tenant_id, A.c.version, A.c.status, A.c.profile_sources,
                      A.c.external_id)
            .where(A.c.id == account_id, _IS_USER)).first()
        if current is None:
            raise NotFound(f"no user {account_id!r}")
        if expected_version is not None and current.version != expected_version:
            raise VersionMismatch(f"user {account_id!r} is at version {current.version}, "
                                  f"not {expected_version}")
        self._check_user_name(current.tenant_id, user_name, account_id)
        values: dict[str, object] = {
            "user_name": user_name, "user_name_lower": user_name.lower(),
            "external_id": external_id, "email": email,
            "email_lower": email.lower() if email else None, "scim": dict(scim),
            "profile": dict(profile), "profile_sources": {k: "scim" for k in profile},
            "updated_at": now, "version": A.c.version + 1}
        if status is not None and status != current.status:
            values.update(status=status, deactivated_at=now if status == "deactivated" else None)
        if external_id != current.external_id:
            values["external_id_connection_id"] = writer_connection_id
        row = self._c.execute(
            A.update().where(A.c.id == account_id, A.c.version == current.version)
            .values(**values).returning(*_USER_COLUMNS)).first()
        if row is None:  # a concurrent write between our read and this update
            raise VersionMismatch(f"user {account_id!r} changed concurrently")
        return _user(row)

    def delete_user(self, account_id: str) -> None:
        """Delete the account (its identities, sessions, grants and memberships cascade).
        Raises NotFound."""
        result = self._c.execute(A.delete().where(A.c.id == account_id, _IS_USER))
        if not result.rowcount:
            raise NotFound(f"no user {account_id!r}")


_GROUP_COLUMNS = (G.c.id, G.c.tenant_id, G.c.display_name, G.c.external_id, G.c.version,
                  G.c.created_at, G.c.updated_at)
#: member ids per statement (SQLite allows 32,766 bound values; PostgreSQL 65,535)
_BATCH = 1000


def _group(row: Any, members: tuple[GroupMember, ...] | None = None) -> ScimGroup:
    return ScimGroup(id=row.id, tenant_id=row.tenant_id, display_name=row.display_name,
                     external_id=row.external_id, version=row.version,
                     created_at=utc(row.created_at), updated_at=utc(row.updated_at),
                     members=members)


def _batches(ids: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(ids))
    return [unique[i:i + _BATCH] for i in range(0, len(unique), _BATCH)]


class ScimGroupRepository:
    """SCIM groups and their members."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def get_group(self, tenant_id: int, group_id: str, *,
                  with_members: bool = True) -> ScimGroup | None:
        """The group, or None. ``with_members=False`` reads no member row."""
        row = self._c.execute(sa.select(*_GROUP_COLUMNS).where(
            G.c.id == group_id, G.c.tenant_id == tenant_id)).first()
        if row is None:
            return None
        return _group(row, tuple(self.members(group_id)) if with_members else None)

    def query_groups(self, tenant_id: int, filter_ast: FilterNode | None, *,
                     sort_by: str | None = None, descending: bool = False,
                     start_index: int = 1, count: int = 100,
                     with_members: bool = False) -> tuple[int, list[ScimGroup]]:
        """As ``query_users``, for groups; members loaded only ``with_members``. Raises
        InvalidFilter."""
        dialect = _prepare(self._c)
        resolve = _group_attributes(dialect)
        where = [G.c.tenant_id == tenant_id]
        if filter_ast is not None:
            where.append(_Translator(dialect, resolve).where(filter_ast))
        key = None if sort_by is None else _sort_key(sort_by, resolve, None, dialect)
        order = _order_by(key, descending, _tiebreak(G.c.id, filtered=filter_ast is not None,
                                                     dialect=dialect))
        offset, limit = _page(start_index, count)

        def fetch(order_by: list[_E], skip: int, take: int) -> list[Any]:
            return list(self._c.execute(sa.select(*_GROUP_COLUMNS).where(*where)
                                        .order_by(*order_by).limit(take).offset(skip)))

        def count_groups() -> int:
            return int(self._c.execute(sa.select(sa.func.count()).select_from(G)
                                       .where(*where)).scalar_one())

        total, rows = _paginate(count_groups, fetch, order, offset, limit)
        members: dict[str, list[GroupMember]] = {r.id: [] for r in rows}
        if with_members and rows:
            for m in self._c.execute(self._members_query().where(M.c.group_id.in_(members))
                                     .order_by(M.c.group_id, M.c.account_id)):
                members[m.group_id].append(GroupMember(m.account_id, m.display))
        return total, [_group(r, tuple(members[r.id]) if with_members else None)
                       for r in rows]

    def _check_display_name(self, tenant_id: int, display_name: str,
                            group_id: str | None = None) -> None:
        taken = self._c.execute(sa.select(G.c.id).where(
            G.c.tenant_id == tenant_id,
            G.c.display_name_lower == display_name.lower())).scalar()
        if taken is not None and taken != group_id:
            raise Uniqueness(f"displayName {display_name!r} is already taken")

    def create_group(self, tenant_id: int, *, display_name: str, external_id: str | None,
                     now: datetime) -> ScimGroup:
        """Insert an empty group (version 1). Raises Uniqueness (displayName taken)."""
        self._check_display_name(tenant_id, display_name)
        group_id = str(uuid.uuid4())
        self._c.execute(G.insert(), {
            "id": group_id, "tenant_id": tenant_id, "display_name": display_name,
            "display_name_lower": display_name.lower(), "external_id": external_id,
            "version": 1, "created_at": now, "updated_at": now})
        return ScimGroup(id=group_id, tenant_id=tenant_id, display_name=display_name,
                         external_id=external_id, version=1, created_at=now, updated_at=now,
                         members=())

    def replace_group(self, group_id: str, *, expected_version: int | None, display_name: str,
                      external_id: str | None, now: datetime) -> ScimGroup:
        """Set displayName and externalId and bump ``version`` (members untouched, returned as
        None). Raises NotFound, VersionMismatch, Uniqueness."""
        current = self._c.execute(sa.select(G.c.tenant_id, G.c.version)
                                  .where(G.c.id == group_id)).first()
        if current is None:
            raise NotFound(f"no group {group_id!r}")
        if expected_version is not None and current.version != expected_version:
            raise VersionMismatch(f"group {group_id!r} is at version {current.version}, "
                                  f"not {expected_version}")
        self._check_display_name(current.tenant_id, display_name, group_id)
        row = self._c.execute(
            G.update().where(G.c.id == group_id, G.c.version == current.version)
            .values(display_name=display_name, display_name_lower=display_name.lower(),
                    external_id=external_id, updated_at=now, version=G.c.version + 1)
            .returning(*_GROUP_COLUMNS)).first()
        if row is None:
            raise VersionMismatch(f"group {group_id!r} changed concurrently")
        return _group(row)

    def touch_group(self, group_id: str, now: datetime) -> int:
        """Bump ``version`` and ``updated_at`` (after a membership change); the new version.
        Raises NotFound."""
        version = self._c.execute(
            G.update().where(G.c.id == group_id)
            .values(updated_at=now, version=G.c.version + 1).returning(G.c.version)).scalar()
        if version is None:
            raise NotFound(f"no group {group_id!r}")
        return int(version)

    def delete_group(self, group_id: str) -> None:
        """Delete the group and its memberships. Raises NotFound."""
        self._c.execute(M.delete().where(M.c.group_id == group_id))
        if not self._c.execute(G.delete().where(G.c.id == group_id)).rowcount:
            raise NotFound(f"no group {group_id!r}")

    def _new_members(self, group_id: str, ids: Sequence[str]) -> list[str]:
        """Of ``ids`` (one batch), those not yet members; raises UnknownMembers for ids that
        are not users of the group's tenant. Reads only the batch's rows (primary keys)."""
        tenant = sa.select(G.c.tenant_id).where(G.c.id == group_id).scalar_subquery()
        rows = self._c.execute(
            sa.select(A.c.id, M.c.account_id.label("member"))
            .outerjoin(M, sa.and_(M.c.group_id == group_id, M.c.account_id == A.c.id))
            .where(A.c.id.in_(ids), A.c.tenant_id == tenant, _IS_USER)).all()
        known = {r.id for r in rows}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UnknownMembers(unknown)
        return [r.id for r in rows if r.member is None]

    def _insert_members(self, group_id: str, ids: Sequence[str], now: datetime) -> list[str]:
        if not ids:
            return []
        insert = (postgresql.insert if self._c.dialect.name == "postgresql" else sqlite.insert)
        stmt = (insert(M).values([{"group_id": group_id, "account_id": i, "created_at": now}
                                  for i in ids])
                .on_conflict_do_nothing(index_elements=["group_id", "account_id"])
                .returning(M.c.account_id))
        return list(self._c.execute(stmt).scalars())

    def add_members(self, group_id: str, account_ids: Sequence[str], *,
                    now: datetime) -> list[str]:
        """Add users to the group; the ids newly added (already members are skipped). Costs
        the same whatever the group's size: per batch of 1,000 ids, one read of those ids and
        one ``INSERT ... ON CONFLICT DO NOTHING``. Raises UnknownMembers when an id is not a
        user of the group's tenant (in the first batch that holds one; earlier batches stay
        written until the transaction rolls back)."""
        added: list[str] = []
        for batch in _batches(account_ids):
            added += self._insert_members(group_id, self._new_members(group_id, batch), now)
        return added

    def remove_members(self, group_id: str, account_ids: Sequence[str]) -> list[str]:
        """Remove these members; the ids actually removed."""
        removed: list[str] = []
        for batch in _batches(account_ids):
            removed += self._c.execute(
                M.delete().where(M.c.group_id == group_id, M.c.account_id.in_(batch))
                .returning(M.c.account_id)).scalars()
        return removed

    def remove_members_where(self, group_id: str, filter_ast: FilterNode) -> list[str]:
        """Remove the members a PATCH value filter selects (``members[value eq "x"]``: its
        paths are ``value``, ``display`` and ``type``); the ids removed. Raises
        InvalidFilter."""
        dialect = _prepare(self._c)
        element = _member_element(dialect)
        multi = _Multi("members", lambda cond: cond(element), sa.true(),
                       {"value": "value", "display": "display", "type": "type"})
        translator = _Translator(dialect, _no_attribute)
        cond = translator._node(
            filter_ast, False, lambda path: translator._sub(multi, element, path))
        chosen = (sa.select(M.c.account_id).join(A, A.c.id == M.c.account_id)
                  .where(M.c.group_id == group_id, cond))
        return list(self._c.execute(
            M.delete().where(M.c.group_id == group_id, M.c.account_id.in_(chosen))
            .returning(M.c.account_id)).scalars())

    def replace_members(self, group_id: str, account_ids: Sequence[str], *,
                        now: datetime) -> tuple[list[str], list[str]]:
        """Make the members exactly ``account_ids``: (added, removed). Reads the current
        member ids (a PUT names them all anyway). Raises UnknownMembers."""
        wanted = list(dict.fromkeys(account_ids))
        current = set(self._c.execute(sa.select(M.c.account_id)
                                      .where(M.c.group_id == group_id)).scalars())
        keep = set(wanted)
        removed = self.remove_members(group_id, sorted(current - keep))
        added = self.add_members(group_id, [i for i in wanted if i not in current], now=now)
        return added, removed

    @staticmethod
    def _members_query() -> sa.Select[Any]:
        dialect_free = sa.func.coalesce(A.c.user_name, A.c.email)
        return (sa.select(M.c.group_id, M.c.account_id, dialect_free.label("display"))
                .join(A, A.c.id == M.c.account_id))

    def members(self, group_id: str, *, limit: int | None = None,
                offset: int = 0) -> list[GroupMember]:
        """Members ordered by account id; ``display`` is the account's displayName, else
        userName, else email."""
        display = _member_display(_prepare(self._c))
        query = (sa.select(M.c.account_id, display.label("display"))
                 .join(A, A.c.id == M.c.account_id).where(M.c.group_id == group_id)
                 .order_by(M.c.account_id).offset(offset))
        if limit is not None:
            query = query.limit(limit)
        return [GroupMember(r.account_id, r.display) for r in self._c.execute(query)]

    def count_members(self, group_id: str) -> int:
        return int(self._c.execute(sa.select(sa.func.count()).select_from(M)
                                   .where(M.c.group_id == group_id)).scalar_one())

    def groups_of_many(self, account_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """``groups_of`` for a page of users in one statement: account id -> its groups (every
        id a key, an empty list for no group)."""
        out: dict[str, list[tuple[str, str]]] = {i: [] for i in account_ids}
        for batch in _batches(account_ids):
            rows = self._c.execute(
                sa.select(M.c.account_id, G.c.id, G.c.display_name)
                .join(M, M.c.group_id == G.c.id).where(M.c.account_id.in_(batch))
                .order_by(M.c.account_id, G.c.display_name_lower, G.c.id))
            for r in rows:
                out[r.account_id].append((r.id, r.display_name))
        return out

    def groups_of(self, account_id: str) -> list[tuple[str, str]]:
        """(group id, displayName) of the groups the account is a member of, by displayName."""
        rows = self._c.execute(
            sa.select(G.c.id, G.c.display_name).join(M, M.c.group_id == G.c.id)
            .where(M.c.account_id == account_id).order_by(G.c.display_name_lower, G.c.id))
        return [(r.id, r.display_name) for r in rows]


T = t.scim_token
#: last_used_at is written at most this often per token (a write per request is not worth it)
TOUCH_INTERVAL = timedelta(minutes=1)


class ScimTokenRepository:
    """SCIM client bearer tokens: only their SHA-256 is stored."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create_token(self, tenant_id: int, name: str, token_hash: str, *,
                     connection_id: int | None, expires_at: datetime | None,
                     now: datetime) -> int:
        """Insert a token; its id. Raises Conflict if the hash exists (a reused token)."""
        if self._c.execute(sa.select(T.c.id).where(T.c.token_hash == token_hash)).first():
            raise Conflict("a token with this hash already exists")
        new_id = self._c.execute(T.insert().values(
            tenant_id=tenant_id, name=name, token_hash=token_hash, connection_id=connection_id,
            created_at=now, expires_at=expires_at)).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return int(new_id[0])

    def find_active(self, token_hash: str, now: datetime) -> ActiveScimToken | None:
        """The unrevoked, unexpired token with this hash, or None."""
        row = self._c.execute(
            sa.select(T.c.id, T.c.tenant_id, T.c.connection_id, T.c.token_hash)
            .where(T.c.token_hash == token_hash, T.c.revoked_at.is_(None),
                   sa.or_(T.c.expires_at.is_(None), T.c.expires_at > now))).first()
        if row is None:
            return None
        return ActiveScimToken(row.id, row.tenant_id, row.connection_id, row.token_hash)

    def list_tokens(self, tenant_id: int) -> list[ScimTokenRecord]:
        """The tenant's tokens, newest first, revoked ones included."""
        rows = self._c.execute(sa.select(T).where(T.c.tenant_id == tenant_id)
                               .order_by(T.c.created_at.desc(), T.c.id.desc()))
        return [ScimTokenRecord(
            id=r.id, tenant_id=r.tenant_id, name=r.name, connection_id=r.connection_id,
            created_at=utc(r.created_at), expires_at=_opt_utc(r.expires_at),
            revoked_at=_opt_utc(r.revoked_at), last_used_at=_opt_utc(r.last_used_at))
            for r in rows]

    def revoke(self, token_id: int, now: datetime) -> None:
        """Revoke (idempotent: a revoked token keeps its first revoked_at). Raises NotFound."""
        if not self._c.execute(sa.select(T.c.id).where(T.c.id == token_id)).first():
            raise NotFound(f"no SCIM token {token_id}")
        self._c.execute(T.update().where(T.c.id == token_id, T.c.revoked_at.is_(None))
                        .values(revoked_at=now))

    def touch(self, token_id: int, now: datetime) -> None:
        """Record use: writes ``last_used_at`` at most once a minute per token."""
        self._c.execute(T.update().where(
            T.c.id == token_id,
            sa.or_(T.c.last_used_at.is_(None), T.c.last_used_at <= now - TOUCH_INTERVAL))
            .values(last_used_at=now))


class ScimStore:
    """``uow.scim``: the SCIM repositories over one transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self.users = ScimUserRepository(conn)
        self.groups = ScimGroupRepository(conn)
        self.tokens = ScimTokenRepository(conn)
