"""SCIM Groups (RFC 7644 sections 3.3-3.6): one unit of work per request, audit and outbox
events in the same transaction (``group.created``, ``group.updated``, ``group.deleted``,
``group.members_changed`` with the ids added and removed).

Members are set operations in the store: PATCH ``add``/``remove`` of members costs the same
in a group of 10 or 50,000, and a GET with ``excludedAttributes=members`` reads no member row.
PATCH answers 204 No Content unless the request asks for ``attributes`` (RFC 7644 section
3.5.2 allows either; Okta and Entra expect 204 and a 50,000-member body helps no one).

How membership reaches roles: a login's mapping sees the SCIM groups of the account as the
claim ``scim_groups`` (a list of displayNames), next to the IdP's own claims, so that one role
rule (``when: contains(groups, 'Nurses') || contains(scim_groups, 'Nurses')``) grants and,
under ``on_login: sync``, revokes. Every change of membership here (members added or removed,
a rename, a deletion) re-evaluates the rule grants of the accounts it touches at once, in this
transaction, or through the re-evaluation job when it touches many
(:mod:`jitprov.services.entitlements`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import RaceLost
from jitprov.protocols.scim import errors as e
from jitprov.protocols.scim.discovery import list_response
from jitprov.protocols.scim.limits import bounded_page
from jitprov.protocols.scim.patch import MemberChange, apply_patch, parse_patch
from jitprov.protocols.scim.quirks import Quirks
from jitprov.protocols.scim.resources import (
    GROUP,
    GROUP_SCHEMA,
    Projection,
    parse_resource,
    project,
    render,
)
from jitprov.services.context import ServiceContext
from jitprov.services.entitlements import members_changing, membership_changed
from jitprov.services.scim.common import (
    STORE_ERRORS,
    Rendered,
    check_if_match,
    page,
    parse_query_filter,
    retrying,
    translate_store_error,
)
from jitprov.services.scim.tokens import ScimPrincipal
from jitprov.store import scim as store
from jitprov.store.unit_of_work import UnitOfWork

MAX_DISPLAY_NAME = 255


def _render(group: store.ScimGroup, base: str) -> dict[str, Any]:
    res: dict[str, Any] = {"displayName": group.display_name}
    if group.external_id is not None:
        res["externalId"] = group.external_id
    if group.members is not None:
        res["members"] = [{"value": m.value, "$ref": f"{base}/Users/{m.value}",
                           "display": m.display, "type": "User"} if m.display is not None
                          else {"value": m.value, "$ref": f"{base}/Users/{m.value}",
                                "type": "User"}
                          for m in group.members]
    return render("Group", res, id=group.id, created=group.created_at,
                  modified=group.updated_at, version=group.version,
                  location=f"{base}/Groups/{group.id}")


def _fields(res: dict[str, Any]) -> tuple[str, str | None, list[str] | None]:
    name = res.get("displayName")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_DISPLAY_NAME:
        raise e.InvalidValue(f"displayName must be 1-{MAX_DISPLAY_NAME} characters")
    external_id = res.get("externalId")
    if external_id is not None and (not isinstance(external_id, str) or len(external_id) > 255):
        raise e.InvalidValue("externalId must be a string of at most 255 characters")
    members = res.get("members")
    ids = None if members is None else list(dict.fromkeys(
        str(m["value"]) for m in members if isinstance(m, dict) and m.get("value")))
    return name, external_id, ids


def _audit(uow: UnitOfWork, principal: ScimPrincipal, type_: str, group_id: str,
           data: dict[str, object], now: Any, request_id: str | None) -> None:
    payload = {"group_id": group_id, **data, "source": "scim"}
    uow.audit.append(principal.tenant_id, principal.tenant_slug, AuditEvent(
        type_, principal.actor, payload, request_id=request_id), now)
    uow.outbox.add(principal.tenant_id, type_, {"tenant": principal.tenant_slug, **payload},
                   now)


def _members_changed(uow: UnitOfWork, principal: ScimPrincipal, group_id: str,
                     added: Sequence[str], removed: Sequence[str], now: Any,
                     request_id: str | None) -> None:
    if added or removed:
        _audit(uow, principal, "group.members_changed", group_id,
               {"added": list(added), "removed": list(removed)}, now, request_id)


def get_group(ctx: ServiceContext, principal: ScimPrincipal, base: str, group_id: str,
              projection: Projection = Projection()) -> Rendered:
    """Members are read only when the response carries them. Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        group = uow.scim.groups.get_group(principal.tenant_id, group_id,
                                          with_members=projection.wants("members"))
    if group is None:
        raise e.NotFound(f"no Group {group_id!r}")
    return Rendered(project("Group", _render(group, base), projection), group.version)


def query_groups(ctx: ServiceContext, principal: ScimPrincipal, base: str, *,
                 filter_text: str | None, sort_by: str | None = None,
                 descending: bool = False, start_index: int | None = None,
                 count: int | None = None,
                 projection: Projection = Projection()) -> dict[str, Any]:
    ast = parse_query_filter(filter_text)
    start, size = page(start_index, count)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        try:
            total, groups = uow.scim.groups.query_groups(
                principal.tenant_id, ast, sort_by=sort_by, descending=descending,
                start_index=start, count=size, with_members=projection.wants("members"))
        except STORE_ERRORS as exc:
            raise translate_store_error(exc) from None
    return list_response(bounded_page([project("Group", _render(g, base), projection)
                                       for g in groups]), total=total, start_index=start)


def create_group(ctx: ServiceContext, principal: ScimPrincipal, base: str, payload: object, *,
                 request_id: str | None = None) -> Rendered:
    """POST /Groups. Raises InvalidSyntax, InvalidValue (unknown member), Uniqueness."""
    name, external_id, ids = _fields(parse_resource("Group", payload))

    def once() -> Rendered:
        now = ctx.clock()
        with UnitOfWork(ctx.db) as uow:
            groups = uow.scim.groups
            try:
                group = groups.create_group(principal.tenant_id, display_name=name,
                                            external_id=external_id, now=now)
                added = groups.add_members(group.id, ids, now=now) if ids else []
            except STORE_ERRORS as exc:
                raise translate_store_error(exc) from None
            _audit(uow, principal, "group.created", group.id,
                   {"display_name": name, "external_id": external_id}, now, request_id)
            _members_changed(uow, principal, group.id, added, [], now, request_id)
            membership_changed(ctx, uow, principal, added, request_id=request_id, now=now)
            created = groups.get_group(principal.tenant_id, group.id)
            uow.commit()
        assert created is not None  # noqa: S101 - written in this transaction
        return Rendered(_render(created, base), created.version)

    return retrying(once)


def replace_group(ctx: ServiceContext, principal: ScimPrincipal, base: str, group_id: str,
                  payload: object, *, if_match: str | None = None,
                  request_id: str | None = None) -> Rendered:
    """PUT /Groups/{id}: displayName, externalId and members become the body's (no
    ``members``: none, RFC 7644 section 3.5.1). Raises NotFound, PreconditionFailed,
    InvalidValue, Uniqueness."""
    name, external_id, ids = _fields(parse_resource("Group", payload, replacing=True))

    def once() -> Rendered:
        now = ctx.clock()
        with UnitOfWork(ctx.db) as uow:
            groups = uow.scim.groups
            current = _current(uow, principal, group_id, if_match)
            try:
                groups.replace_group(group_id, expected_version=current.version,
                                     display_name=name, external_id=external_id, now=now)
                added, removed = groups.replace_members(group_id, ids or [], now=now)
            except store.VersionMismatch:
                raise RaceLost("the group changed meanwhile") from None
            except STORE_ERRORS as exc:
                raise translate_store_error(exc) from None
            _updated(uow, principal, current, name, external_id, now, request_id)
            _members_changed(uow, principal, group_id, added, removed, now, request_id)
            affected = [*added, *removed]
            if name != current.display_name:  # every member's scim_groups changes
                affected += members_changing(ctx, uow, principal, group_id,
                                             request_id=request_id, now=now)
            membership_changed(ctx, uow, principal, affected, request_id=request_id, now=now)
            replaced = groups.get_group(principal.tenant_id, group_id)
            uow.commit()
        assert replaced is not None  # noqa: S101
        return Rendered(_render(replaced, base), replaced.version)

    return retrying(once)


def _current(uow: UnitOfWork, principal: ScimPrincipal, group_id: str,
             if_match: str | None) -> store.ScimGroup:
    current = uow.scim.groups.get_group(principal.tenant_id, group_id, with_members=False)
    if current is None:
        raise e.NotFound(f"no Group {group_id!r}")
    check_if_match(if_match, current.version)
    return current


def _updated(uow: UnitOfWork, principal: ScimPrincipal, current: store.ScimGroup, name: str,
             external_id: str | None, now: Any, request_id: str | None) -> None:
    changes = {k: {"before": b, "after": a} for k, b, a in (
        ("display_name", current.display_name, name),
        ("external_id", current.external_id, external_id)) if b != a}
    if changes:
        _audit(uow, principal, "group.updated", current.id, {"changes": changes}, now,
               request_id)


def patch_group(ctx: ServiceContext, principal: ScimPrincipal, base: str, group_id: str,
                body: object, *, if_match: str | None = None, quirks: Quirks = Quirks(),
                request_id: str | None = None,
                projection: Projection = Projection()) -> Rendered:
    """PATCH /Groups/{id}: member operations are set operations in the store. Answers no
    body unless ``attributes`` is asked (then the projected group). Raises NotFound,
    PreconditionFailed, InvalidPath, InvalidValue, InvalidFilter, NoTarget, Uniqueness."""
    ops = parse_patch(body, quirks)

    def once() -> Rendered:
        now = ctx.clock()
        with UnitOfWork(ctx.db) as uow:
            groups = uow.scim.groups
            current = _current(uow, principal, group_id, if_match)
            before: dict[str, Any] = {"displayName": current.display_name}
            if current.external_id is not None:
                before["externalId"] = current.external_id
            result = apply_patch(GROUP, before, ops, quirks)
            renamed = False
            try:
                version = current.version
                if result.resource != before:
                    name, external_id, _ = _fields(parse_resource(
                        "Group", {"schemas": [GROUP_SCHEMA], **result.resource},
                        replacing=True))
                    version = groups.replace_group(
                        group_id, expected_version=current.version, display_name=name,
                        external_id=external_id, now=now).version
                    _updated(uow, principal, current, name, external_id, now, request_id)
                    renamed = name != current.display_name
                added, removed = _apply_members(groups, group_id, result.members, now)
                if (added or removed) and version == current.version:
                    version = groups.touch_group(group_id, now)
            except store.VersionMismatch:
                raise RaceLost("the group changed meanwhile") from None
            except STORE_ERRORS as exc:
                raise translate_store_error(exc) from None
            _members_changed(uow, principal, group_id, added, removed, now, request_id)
            affected = [*added, *removed]
            if renamed:  # every member's scim_groups changes
                affected += members_changing(ctx, uow, principal, group_id,
                                             request_id=request_id, now=now)
            membership_changed(ctx, uow, principal, affected, request_id=request_id, now=now)
            body_out = None
            if projection.include:
                patched = groups.get_group(principal.tenant_id, group_id,
                                           with_members=projection.wants("members"))
                assert patched is not None  # noqa: S101
                body_out = project("Group", _render(patched, base), projection)
            uow.commit()
        return Rendered(body_out, version)

    return retrying(once)


def _apply_members(groups: store.ScimGroupRepository, group_id: str,
                   changes: Sequence[MemberChange], now: Any) -> tuple[list[str], list[str]]:
    """Apply member set operations in order; (added, removed) net of each other."""
    added: dict[str, None] = {}
    removed: dict[str, None] = {}
    for change in changes:
        if change.op == "add":
            new = groups.add_members(group_id, change.ids or (), now=now)
        elif change.op == "replace":
            new, gone = groups.replace_members(group_id, change.ids or (), now=now)
            _note(added, removed, [], gone)
        elif change.ids is None:
            new, gone = [], [m.value for m in groups.members(group_id)]
            groups.remove_members(group_id, gone)
            _note(added, removed, [], gone)
            continue
        else:
            new = []
            _note(added, removed, [], groups.remove_members(group_id, change.ids))
            continue
        _note(added, removed, new, [])
    return list(added), list(removed)


def _note(added: dict[str, None], removed: dict[str, None], new: Sequence[str],
          gone: Sequence[str]) -> None:
    for account_id in new:
        if removed.pop(account_id, 0) is None:
            continue  # removed then added back: no net change
        added[account_id] = None
    for account_id in gone:
        if added.pop(account_id, 0) is None:
            continue
        removed[account_id] = None


def delete_group(ctx: ServiceContext, principal: ScimPrincipal, group_id: str, *,
                 if_match: str | None = None, request_id: str | None = None) -> None:
    """DELETE /Groups/{id}: the group and its memberships. Raises NotFound,
    PreconditionFailed."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        current = _current(uow, principal, group_id, if_match)
        members = members_changing(ctx, uow, principal, group_id, request_id=request_id,
                                   now=now)
        uow.scim.groups.delete_group(group_id)
        _audit(uow, principal, "group.deleted", group_id,
               {"display_name": current.display_name}, now, request_id)
        membership_changed(ctx, uow, principal, members, request_id=request_id, now=now)
        uow.commit()

