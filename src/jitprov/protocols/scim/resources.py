"""User (core + enterprise extension) and Group resources: parse, render, project.

Resources travel as plain dicts with the spec's attribute names (``userName``, ``emails``,
``urn:...:enterprise:2.0:User``): the *canonical* form, which the store keeps as is. The
attribute table (:data:`USER`, :data:`GROUP`) comes from scim2-models' schemas, so parsing,
PATCH, projection and ``/Schemas`` agree on one definition.

Parsing has two paths with one authority. A request body is first checked by
:func:`_fast_parse`, a table-driven validator for the shapes IdPs send (strings, booleans,
complex and multi-valued complex attributes); anything it cannot vouch for goes to scim2-models'
``model_validate`` in the request's context (RFC 7644 section 3.2), whose verdict stands. The fast
path is about ten times cheaper; ``tests/protocols/test_scim_resources.py`` checks both paths
give the same result on every vector.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import ValidationError
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError
from scim2_models import Context, EnterpriseUser, Group, Schema, User
from scim2_models import Mutability as ScimMutability

from jitprov.protocols.scim.errors import InvalidSyntax, InvalidValue, Mutability
from jitprov.protocols.scim.limits import check_resource
from jitprov.protocols.scim.quirks import Quirks

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"

UserModel = User[EnterpriseUser]

Kind = Literal["User", "Group"]


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute definition (RFC 7643 section 2.2 characteristics)."""

    name: str
    type: str
    multi_valued: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    case_exact: bool = False
    required: bool = False
    sub: Mapping[str, Attribute] = field(default_factory=dict)  # by lowercase name

    @property
    def writable(self) -> bool:
        return self.mutability in ("readWrite", "writeOnly", "immutable")


@dataclass(frozen=True, slots=True)
class ResourceSchema:
    """A resource type: its core attributes and its extensions, each by lowercase name."""

    kind: Kind
    endpoint: str
    schema: str
    attributes: Mapping[str, Attribute]
    extensions: Mapping[str, Mapping[str, Attribute]]  # extension URN -> attributes

    def extension_urn(self, name: str) -> str | None:
        """The extension URN ``name`` spells (case-insensitively), or None."""
        lowered = name.lower()
        return next((u for u in self.extensions if u.lower() == lowered), None)

    def split(self, path: str) -> tuple[str | None, str]:
        """``urn:...:User:department`` -> (extension URN, "department"); a core path -> (None,
        path); ``urn:...:core:2.0:User:userName`` -> (None, "userName")."""
        lowered = path.lower()
        for urn in (*self.extensions, self.schema):
            prefix = urn.lower() + ":"
            if lowered.startswith(prefix):
                return (None if urn == self.schema else urn), path[len(prefix):]
        return None, path

    def attribute(self, urn: str | None, name: str) -> Attribute | None:
        table = self.attributes if urn is None else self.extensions.get(urn, {})
        return table.get(name.lower())


def _attribute(raw: Any) -> Attribute:
    sub = {str(s.name).lower(): _attribute(s) for s in (raw.sub_attributes or [])}
    return Attribute(
        name=raw.name, type=str(raw.type.value), multi_valued=bool(raw.multi_valued),
        mutability=str(raw.mutability.value), returned=str(raw.returned.value),
        case_exact=bool(raw.case_exact), required=bool(raw.required), sub=sub)


def _table(schema: Schema) -> dict[str, Attribute]:
    return {str(a.name).lower(): _attribute(a) for a in (schema.attributes or [])}


# RFC 7643 section 3.1: common attributes, defined by the protocol rather than a schema
COMMON = {
    "id": Attribute("id", "string", mutability="readOnly", returned="always", case_exact=True),
    "externalid": Attribute("externalId", "string", case_exact=True),
    "meta": Attribute("meta", "complex", mutability="readOnly", sub={
        n.lower(): Attribute(n, "string", mutability="readOnly", case_exact=True)
        for n in ("resourceType", "created", "lastModified", "location", "version")}),
}

USER_SCHEMA_MODEL: Schema = User.to_schema()
ENTERPRISE_SCHEMA_MODEL: Schema = EnterpriseUser.to_schema()
GROUP_SCHEMA_MODEL: Schema = Group.to_schema()


def _group_members_as_served(schema: Schema) -> None:
    """Group members are Users, and a member's ``display`` is the server's (the user's
    displayName, else userName): the published schema says so, rather than scim2-models'
    generic "User or Group, display readWrite"."""
    members = next(a for a in schema.attributes or [] if a.name == "members")
    for sub in members.sub_attributes or []:
        if sub.name == "display":
            sub.mutability = ScimMutability.read_only
            sub.description = "The member's displayName, else its userName (set by the server)."
        elif sub.name == "$ref":
            sub.reference_types = ["User"]
        elif sub.name == "type":
            sub.canonical_values = ["User"]


_group_members_as_served(GROUP_SCHEMA_MODEL)

USER = ResourceSchema("User", "/Users", USER_SCHEMA, {**COMMON, **_table(USER_SCHEMA_MODEL)},
                      {ENTERPRISE_SCHEMA: _table(ENTERPRISE_SCHEMA_MODEL)})
GROUP = ResourceSchema("Group", "/Groups", GROUP_SCHEMA,
                       {**COMMON, **_table(GROUP_SCHEMA_MODEL)}, {})
SCHEMAS: dict[Kind, ResourceSchema] = {"User": USER, "Group": GROUP}
MODELS: dict[Kind, Any] = {"User": UserModel, "Group": Group}

#: attributes a parsed resource never carries: read-only ones, and ``password`` (accepted and
#: discarded: accounts sign in through SSO only, jitprov keeps no password)
NOT_STORED = frozenset({"id", "meta", "schemas", "groups", "password"})


# -- parsing ---------------------------------------------------------------------------------

def parse_resource(kind: Kind, payload: object, *, replacing: bool = False,
                   quirks: Quirks = Quirks()) -> dict[str, Any]:
    """Validate a POST or PUT body; return the canonical resource (no ``schemas``, ``id``,
    ``meta``; ``null`` values dropped; read-only attributes ignored, RFC 7644 section 3.3).
    Raises InvalidSyntax (not an object, unknown attribute or schema) or InvalidValue (a
    value of the wrong type, a missing required attribute, bad text or a size limit of
    ``limits``: checked first, on the raw body)."""
    if not isinstance(payload, dict):
        raise InvalidSyntax(f"the request body must be a JSON object (a {kind} resource)")
    check_resource(kind, payload)
    payload = drop_unknown_extensions(SCHEMAS[kind], payload)
    manager = None
    if kind == "User" and quirks.manager_without_ref:
        payload, manager = _take_manager(payload)
    parsed = _fast_parse(SCHEMAS[kind], payload)
    if parsed is None:
        parsed = _model_parse(kind, payload, replacing=replacing)
    if manager is not None:
        parsed.setdefault(ENTERPRISE_SCHEMA, {})["manager"] = manager
    return parsed


def drop_unknown_extensions(schema: ResourceSchema, payload: dict[str, Any]) -> dict[str, Any]:
    """RFC 7643 section 3: a client may list extension schemas the server does not support
    beside the core schema; the server ignores them. Entra ID sends
    ``urn:ietf:params:scim:schemas:extension:...`` of its own and
    ``http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group`` (``.../User``)
    that way. So: an unknown URN in ``schemas`` is dropped, and so is the object the body
    carries under that URN (nothing jitprov stores or answers depends on it: it is neither
    kept nor echoed). What stays strict: ``schemas`` must still name the resource's core
    schema, and a body key that looks like a URN but is not declared in ``schemas`` is still
    an unknown attribute (400), as is a PATCH path or filter under an unknown URN: those are
    requests that depend on what the server does not have."""
    schemas = payload.get("schemas")
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        return payload  # _check_schemas words the error
    lowered = {s.lower() for s in schemas}
    if schema.schema.lower() not in lowered:
        return payload  # "schemas must contain" the core schema
    known = {schema.schema.lower(), *(u.lower() for u in schema.extensions)}
    unknown = lowered - known
    if not unknown:
        return payload
    kept = {k: v for k, v in payload.items() if k.lower() not in unknown}
    kept["schemas"] = [s for s in schemas if s.lower() in known]
    return kept


def _take_manager(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str] | None]:
    """Entra's enterprise ``manager`` without ``$ref`` (quirk ``manager_without_ref``): taken
    out of the payload, checked here; the rest goes through the ordinary validation."""
    key = next((k for k in payload if k.lower() == ENTERPRISE_SCHEMA.lower()), None)
    ext = payload.get(key) if key is not None else None
    if not isinstance(ext, dict):
        return payload, None
    manager_key = next((k for k in ext if k.lower() == "manager"), None)
    manager = ext.get(manager_key) if manager_key is not None else None
    if not isinstance(manager, dict) or any(k.lower() == "$ref" for k in manager):
        return payload, None
    out: dict[str, str] = {}
    for k, v in manager.items():
        if v is None:
            continue
        name = {"value": "value", "displayname": "displayName"}.get(k.lower())
        if name is None or not isinstance(v, str):
            raise InvalidValue(f"manager.{k} is not a string sub-attribute of manager")
        out[name] = v
    assert key is not None  # noqa: S101 - ext was found under it
    rest: dict[str, Any] = dict(payload)
    rest[key] = {k: v for k, v in ext.items() if k != manager_key}
    return rest, (out or None)


def _model_parse(kind: Kind, payload: dict[str, Any], *, replacing: bool) -> dict[str, Any]:
    """The authority: scim2-models in the request's context."""
    _check_schemas(SCHEMAS[kind], payload.get("schemas"))
    ctx = Context.RESOURCE_REPLACEMENT_REQUEST if replacing else \
        Context.RESOURCE_CREATION_REQUEST
    try:
        model = MODELS[kind].model_validate(payload, scim_ctx=ctx)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    except (ValueError, TypeError, PydanticCustomError) as exc:
        raise InvalidValue(f"invalid {kind}: {exc}") from None
    dumped: dict[str, Any] = model.model_dump(scim_ctx=Context.DEFAULT, mode="json")
    return {k: v for k, v in dumped.items() if k not in NOT_STORED and v not in (None, [], {})}


def _validation_error(exc: ValidationError) -> InvalidSyntax | InvalidValue:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = f"{where + ': ' if where else ''}{first.get('msg', 'invalid value')}"
    if first.get("type") in ("extra_forbidden", "schema_error"):
        return InvalidSyntax(message)
    return InvalidValue(message)


def _check_schemas(schema: ResourceSchema, schemas: object) -> None:
    if schemas is None:
        return  # tolerated: the resource type is known from the endpoint
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise InvalidSyntax("schemas must be a list of schema URNs")
    known = {schema.schema.lower(), *(u.lower() for u in schema.extensions)}
    unknown = [s for s in schemas if s.lower() not in known]
    if unknown:
        raise InvalidSyntax(f"unknown schema {unknown[0]!r}")
    if schemas and schema.schema.lower() not in {s.lower() for s in schemas}:
        raise InvalidSyntax(f"schemas must contain {schema.schema}")


class _Decline(Exception):
    """The fast path cannot vouch for this payload: ask scim2-models."""


def _fast_parse(schema: ResourceSchema, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The canonical resource, or None when scim2-models must decide (it never accepts what
    scim2-models would refuse: it declines instead)."""
    try:
        _check_schemas(schema, payload.get("schemas"))
    except InvalidSyntax:
        return None
    out: dict[str, Any] = {}
    try:
        for key, value in payload.items():
            if key == "schemas" or value is None:
                continue
            urn = schema.extension_urn(key)
            if urn is not None:
                if not isinstance(value, dict):
                    return None
                ext = _fast_complex(schema.extensions[urn], value)
                if ext:
                    out[urn] = ext
                continue
            attr = schema.attributes.get(key.lower())
            if attr is None:
                return None
            if attr.mutability == "readOnly" or attr.name in NOT_STORED:
                continue
            if attr.name in out:
                return None  # the same attribute twice in different case
            checked = _fast_value(attr, value)
            if checked is not None:
                out[attr.name] = checked
    except _Decline:
        return None
    if any(a.required and a.name not in out for a in schema.attributes.values()):
        return None
    return out


def _fast_value(attr: Attribute, value: Any) -> Any:
    if attr.multi_valued:
        if not isinstance(value, list):
            raise _Decline
        items = [_fast_single(attr, v) for v in value if v is not None]
        items = [i for i in items if i not in (None, {})]
        if sum(1 for i in items if isinstance(i, dict) and i.get("primary") is True) > 1:
            raise _Decline
        return items or None
    return _fast_single(attr, value)


def _fast_single(attr: Attribute, value: Any) -> Any:
    if attr.type == "complex":
        if not isinstance(value, dict):
            raise _Decline
        return _fast_complex(attr.sub, value, email=attr.name == "emails") or None
    if attr.type in ("string", "reference"):
        if not isinstance(value, str) or attr.type == "reference":
            raise _Decline  # references have their own rules in scim2-models
        return value
    if attr.type == "boolean":
        if not isinstance(value, bool):
            raise _Decline
        return value
    raise _Decline  # integer, decimal, dateTime, binary: rare, and scim2-models knows them


def _fast_complex(table: Mapping[str, Attribute], value: dict[str, Any], *,
                  email: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub_value in value.items():
        if sub_value is None:
            continue
        sub = table.get(key.lower())
        if sub is None or sub.type == "complex" or sub.name in out:
            raise _Decline
        if sub.mutability == "readOnly":
            continue
        if sub.name == "type" and isinstance(sub_value, str):
            out[sub.name] = sub_value
            continue
        checked = _fast_single(sub, sub_value)
        if email and sub.name == "value" and not plain_email(checked):
            try:
                validate_email(checked)
            except PydanticCustomError:
                raise _Decline from None
        out[sub.name] = checked
    return out


_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*")
_PLAIN_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)


def plain_email(value: str) -> bool:
    """A plain ASCII address that scim2-models' email check (email-validator, without
    deliverability) certainly accepts: ``local@domain.tld``, no quoting, no IDN, no special-use
    domain. About 30 times cheaper; anything else goes to the full check."""
    local, at, domain = value.partition("@")
    if not at or len(local) > 64 or len(domain) > 253 or "--" in domain:
        return False
    if not _PLAIN_LOCAL.fullmatch(local) or not _PLAIN_DOMAIN.fullmatch(domain):
        return False
    lowered = domain.lower()
    return not any(lowered == s or lowered.endswith("." + s) for s in _SPECIAL_USE)


# -- rendering -------------------------------------------------------------------------------

def etag(version: int) -> str:
    """The weak entity tag of a resource version (RFC 7644 section 3.14)."""
    return f'W/"{version}"'


def parse_etag(value: str) -> set[str]:
    """The versions an ``If-Match`` header names ("*" for any)."""
    tags = set()
    for part in value.split(","):
        tag = part.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        tags.add(tag.strip('"'))
    return tags


def _timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def render(kind: Kind, resource: Mapping[str, Any], *, id: str,
           created: datetime, modified: datetime, version: int, location: str,
           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full representation (query-response context): ``schemas`` (core plus each
    extension present), ``id``, the attributes, ``extra`` (e.g. ``active``, ``groups``,
    ``members``) and ``meta`` with ``version`` (a weak ETag) and ``location``."""
    schema = SCHEMAS[kind]
    body: dict[str, Any] = {"schemas": [schema.schema], "id": id}
    for key, value in resource.items():
        if key in schema.extensions:
            body["schemas"].append(key)
        body[key] = value
    if extra:
        body.update(extra)
    body["meta"] = {"resourceType": kind, "created": _timestamp(created),
                    "lastModified": _timestamp(modified), "location": location,
                    "version": etag(version)}
    return body


# -- attributes / excludedAttributes (RFC 7644 section 3.9) ----------------------------------

ALWAYS = frozenset({"id", "schemas"})


@dataclass(frozen=True, slots=True)
class Projection:
    """``attributes`` or ``excludedAttributes`` of a request, resolved against a schema:
    tuples of (extension URN or None, attribute, sub-attribute or None) in canonical case."""

    include: tuple[tuple[str | None, str, str | None], ...] = ()
    exclude: tuple[tuple[str | None, str, str | None], ...] = ()

    @property
    def is_identity(self) -> bool:
        return not self.include and not self.exclude

    def wants(self, attribute: str) -> bool:
        """Whether the response carries core ``attribute`` at all (e.g. ``members``: when not,
        the store need not load them)."""
        if self.include:
            return any(urn is None and name == attribute for urn, name, _ in self.include)
        return not any(urn is None and name == attribute and sub is None
                       for urn, name, sub in self.exclude)


def parse_projection(kind: Kind, attributes: str | Sequence[str] | None,
                     excluded: str | Sequence[str] | None) -> Projection:
    """Resolve the two query parameters (comma-separated strings, or lists from a POST
    search). Unknown attribute names are ignored (RFC 7644 section 3.10 does not make them an
    error, and clients ask for attributes of other servers)."""
    schema = SCHEMAS[kind]

    def resolve(raw: str | Sequence[str] | None) -> tuple[tuple[str | None, str, str | None],
                                                          ...]:
        if not raw:
            return ()
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        out: list[tuple[str | None, str, str | None]] = []
        for item in (i.strip() for i in items):
            if not item:
                continue
            urn, rest = schema.split(item)
            if urn is None and schema.extension_urn(item):
                urn, rest = schema.extension_urn(item), ""
            name, _, sub_name = rest.partition(".")
            if urn is not None and not name:
                out.append((urn, "", None))
                continue
            attr = schema.attribute(urn, name)
            if attr is None:
                continue
            sub = attr.sub.get(sub_name.lower()) if sub_name else None
            out.append((urn, attr.name, sub.name if sub else None))
        return tuple(out)

    return Projection(resolve(attributes), resolve(excluded))


def project(kind: Kind, body: dict[str, Any], projection: Projection) -> dict[str, Any]:
    """Apply a projection to a rendered resource. ``id`` and ``schemas`` always stay."""
    if projection.is_identity:
        return body
    if projection.include:
        out: dict[str, Any] = {k: v for k, v in body.items() if k in ALWAYS}
        for urn, name, sub in projection.include:
            source: Mapping[str, Any] = body if urn is None else body.get(urn, {})
            if urn is not None and not name:
                if urn in body:
                    out[urn] = body[urn]
                continue
            if name not in source:
                continue
            target = out if urn is None else out.setdefault(urn, {})
            if sub is None:
                target[name] = source[name]
            else:
                value = source[name]
                if isinstance(value, list):
                    picked = [{sub: v[sub]} for v in value if isinstance(v, dict) and sub in v]
                    if picked:
                        target.setdefault(name, picked)
                elif isinstance(value, dict) and sub in value:
                    target.setdefault(name, {})[sub] = value[sub]
        return out
    out = dict(body)
    for urn, name, sub in projection.exclude:
        if urn is None and name in ALWAYS:
            continue
        holder: dict[str, Any] | None = out if urn is None else out.get(urn)
        if urn is not None and not name:
            out.pop(urn, None)
            continue
        if not isinstance(holder, dict) or name not in holder:
            continue
        if urn is not None:
            holder = out[urn] = dict(holder)
        if sub is None:
            holder.pop(name)
        elif isinstance(holder[name], dict):
            holder[name] = {k: v for k, v in holder[name].items() if k != sub}
        elif isinstance(holder[name], list):
            holder[name] = [{k: v for k, v in i.items() if k != sub} for i in holder[name]]
    return out


# -- what the account takes from a User ------------------------------------------------------

def primary_email(resource: Mapping[str, Any]) -> str | None:
    """The primary email, else the first work email, else the first one."""
    emails = [e for e in resource.get("emails", []) if isinstance(e, dict) and e.get("value")]
    for pick in (lambda e: e.get("primary") is True, lambda e: e.get("type") == "work",
                 lambda e: True):
        found = next((e for e in emails if pick(e)), None)
        if found is not None:
            return str(found["value"])
    return None


def user_profile(resource: Mapping[str, Any]) -> dict[str, str]:
    """The account profile fields a User sets: ``email``, ``name``, ``department``,
    ``title``, ``employee_number``, ``user_name`` (the same fields a mapping file can set)."""
    profile: dict[str, str] = {"user_name": str(resource["userName"])}
    email = primary_email(resource)
    if email:
        profile["email"] = email
    name = resource.get("name") or {}
    display = resource.get("displayName") or name.get("formatted") or " ".join(
        str(p) for p in (name.get("givenName"), name.get("familyName")) if p)
    if display:
        profile["name"] = str(display)
    if resource.get("title"):
        profile["title"] = str(resource["title"])
    enterprise = resource.get(ENTERPRISE_SCHEMA) or {}
    for src, dst in (("department", "department"), ("employeeNumber", "employee_number")):
        if enterprise.get(src):
            profile[dst] = str(enterprise[src])
    return profile


def check_writable(schema: ResourceSchema, names: Iterable[str]) -> None:
    """Raise Mutability for a read-only attribute among ``names`` (canonical case)."""
    for name in names:
        attr = schema.attributes.get(name.lower())
        if attr is not None and attr.mutability == "readOnly":
            raise Mutability(f"{attr.name} is read-only")


_USER_NAME_CHARS = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")


def check_user_name(user_name: object) -> str:
    """userName: a non-empty string of at most 255 characters, no control characters."""
    if not isinstance(user_name, str) or not _USER_NAME_CHARS.match(user_name):
        raise InvalidValue("userName must be 1-255 characters without control characters")
    return user_name
