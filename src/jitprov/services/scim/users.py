"""SCIM Users (RFC 7644 sections 3.3-3.6) on the accounts JIT login writes: one unit of work
per request, the audit event and the outbox event in the same transaction.

Lifecycle:

- ``active: false`` (PUT or PATCH, Entra's ``"False"`` included) deactivates and revokes every
  session at once, through :func:`jitprov.services.accounts.announce_status`, so the audit event
  records the revocation time as an admin's deactivation does. A valid deactivation is never
  refused because another attribute of the same request is invalid: the deactivation alone is
  applied (the audit event names what was refused). ``If-Match``, when sent, still applies.
- ``active: true`` reactivates an inactive account, explicitly: audited
  ``account.reactivated`` (the IdP is the source of truth of the accounts it manages). A POST
  with ``active: false`` creates a suspended account. A PUT without ``active`` leaves the
  status as it is.
- DELETE follows the tenant's ``scim_delete``: ``deactivate`` (default: the account stays,
  deactivated, with its identities and history, but is deleted for SCIM: 404 for its id from
  then on, absent from lists and filters, out of its groups, its userName free) or ``erase``.
  A later POST of the same person creates a new resource (a new id); when its ``externalId``
  names a login identity the deleted account kept, that identity signs in to the new account.
- POST of a userName (or email) JIT already created: 409 ``uniqueness``, or the account is
  adopted, by the tenant's ``scim_on_existing`` (default ``conflict``).
- A SCIM-created account's ``externalId`` is a subject of the token's connection: the first
  login through that connection with that subject signs in to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import RaceLost
from jitprov.protocols.scim import errors as e
from jitprov.protocols.scim.discovery import list_response
from jitprov.protocols.scim.limits import bounded_page
from jitprov.protocols.scim.patch import Operation, apply_patch, parse_patch
from jitprov.protocols.scim.quirks import Quirks
from jitprov.protocols.scim.resources import (
    USER,
    USER_SCHEMA,
    Projection,
    check_user_name,
    parse_resource,
    primary_email,
    project,
    render,
    user_profile,
)
from jitprov.services import metrics
from jitprov.services.accounts import announce_status, change_status
from jitprov.services.context import ServiceContext
from jitprov.services.entitlements import membership_changed
from jitprov.services.scim.common import (
    STORE_ERRORS,
    Rendered,
    check_if_match,
    page,
    parse_query_filter,
    retrying,
    translate_store_error,
)
from jitprov.services.scim.tokens import ScimPrincipal, scim_policy
from jitprov.store import scim as store
from jitprov.store.unit_of_work import UnitOfWork

#: profile fields a User sets (see ``resources.user_profile``); others (JIT's) are kept
SCIM_PROFILE_FIELDS = frozenset({"email", "name", "department", "title", "employee_number"})
#: attributes with a column of their own; the rest of a User is the account's ``scim`` JSON
COLUMNS = ("userName", "externalId", "active")

P = TypeVar("P")

# -- resources -------------------------------------------------------------------------------

def to_resource(user: store.ScimUser) -> dict[str, Any]:
    """The canonical User of an account. One that SCIM never wrote (JIT-created) shows its
    email as userName and its only email, and its profile name as displayName."""
    res: dict[str, Any] = {"userName": user.effective_user_name or user.id}
    if user.external_id is not None:
        res["externalId"] = user.external_id
    res["active"] = user.active
    if user.scim is None:
        if user.email:
            res["emails"] = [{"value": user.email, "primary": True}]
        if user.profile.get("name"):
            res["displayName"] = user.profile["name"]
    else:
        res.update(user.scim)
    return res


def _render(user: store.ScimUser, base: str,
            groups: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    extra = None
    if groups:
        extra = {"groups": [{"value": gid, "$ref": f"{base}/Groups/{gid}", "display": name,
                             "type": "direct"} for gid, name in groups]}
    return render("User", to_resource(user), id=user.id, created=user.created_at,
                  modified=user.updated_at, version=user.version,
                  location=f"{base}/Users/{user.id}", extra=extra)


def _split(res: Mapping[str, Any]) -> tuple[str, str | None, bool | None, dict[str, Any]]:
    user_name = check_user_name(res.get("userName"))
    external_id = res.get("externalId")
    if external_id is not None and (not isinstance(external_id, str) or len(external_id) > 255):
        raise e.InvalidValue("externalId must be a string of at most 255 characters")
    active = res.get("active")
    return user_name, external_id, active, {k: v for k, v in res.items() if k not in COLUMNS}


def _profile(current: Mapping[str, object], res: Mapping[str, Any]) -> dict[str, object]:
    kept = {k: v for k, v in current.items() if k not in SCIM_PROFILE_FIELDS}
    fields = user_profile(res)
    fields.pop("user_name", None)
    return {**kept, **fields}


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, object]:
    keys = [k for k in dict.fromkeys([*before, *after]) if k != "active"]
    return {k: {"before": before.get(k), "after": after.get(k)} for k in keys
            if before.get(k) != after.get(k)}


# -- use cases -------------------------------------------------------------------------------

def get_user(ctx: ServiceContext, principal: ScimPrincipal, base: str, user_id: str,
             projection: Projection = Projection()) -> Rendered:
    """Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        user = uow.scim.users.get_user(principal.tenant_id, user_id)
        if user is None:
            raise e.NotFound(f"no User {user_id!r}")
        groups = uow.scim.groups.groups_of(user.id) if projection.wants("groups") else None
    return Rendered(project("User", _render(user, base, groups), projection), user.version)


def query_users(ctx: ServiceContext, principal: ScimPrincipal, base: str, *,
                filter_text: str | None, sort_by: str | None = None,
                descending: bool = False, start_index: int | None = None,
                count: int | None = None,
                projection: Projection = Projection()) -> dict[str, Any]:
    """A ListResponse page. ``groups`` is listed only when ``attributes`` asks for it (a
    query answers without one lookup per user). Raises InvalidFilter."""
    ast = parse_query_filter(filter_text)
    start, size = page(start_index, count)
    explicit_groups = any(n == "groups" and u is None for u, n, _ in projection.include)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        try:
            total, users = uow.scim.users.query_users(
                principal.tenant_id, ast, sort_by=sort_by, descending=descending,
                start_index=start, count=size)
        except STORE_ERRORS as exc:
            raise translate_store_error(exc) from None
        bodies = [project("User", _render(u, base, uow.scim.groups.groups_of(u.id)
                                          if explicit_groups else None), projection)
                  for u in users]
    return list_response(bounded_page(bodies), total=total, start_index=start)


def create_user(ctx: ServiceContext, principal: ScimPrincipal, base: str, payload: object, *,
                request_id: str | None = None) -> Rendered:
    """POST /Users. Raises InvalidSyntax, InvalidValue, Uniqueness."""
    res = parse_resource("User", payload)
    user_name, external_id, active, scim = _split(res)
    email = primary_email(res)
    profile = _profile({}, res)
    login_identity = (None if external_id is None or principal.connection_id is None
                      else (principal.connection_id, external_id))

    def once() -> Rendered:
        now = ctx.clock()
        with UnitOfWork(ctx.db) as uow:
            users = uow.scim.users
            email_lock = (principal.tenant_id, email) if email else None
            if login_identity is not None:  # then the email's, as a login takes them
                uow.identities.lock_identity(*login_identity, email=email_lock)
            elif email_lock is not None:
                uow.identities.lock_email(*email_lock)
            existing = _by_email(uow, principal, email) if email else None
            if existing is None:
                try:  # the store checks userName uniqueness itself (one read saved)
                    user = users.create_user(
                        principal.tenant_id, user_name=user_name, external_id=external_id,
                        external_id_connection_id=principal.connection_id,
                        active=active is not False, email=email, scim=scim,
                        profile=profile, now=now)
                except store.Uniqueness:
                    existing = users.find_by_user_name(principal.tenant_id, user_name)
                    if existing is None:
                        raise RaceLost("the userName was taken meanwhile") from None
                except STORE_ERRORS as exc:
                    raise translate_store_error(exc) from None
            if existing is not None:
                adopted = _adopt(uow, principal, existing, res, now, request_id)
                uow.commit()
                return Rendered(_render(adopted, base), adopted.version)
            data: dict[str, object] = {"user_name": user_name, "external_id": external_id,
                                       "email": email, "status": user.status,
                                       "provisioned_by": "scim"}
            if login_identity is not None:
                # the same person re-created after a DELETE: their login identity, left on
                # the deleted account, is this new account's (its externalId names it)
                previous = uow.identities.take_over(
                    tenant_id=principal.tenant_id, connection_id=login_identity[0],
                    subject=login_identity[1], account_id=user.id)
                if previous is not None:
                    data["identity_taken_from"] = previous
            uow.audit.append(principal.tenant_id, principal.tenant_slug, AuditEvent(
                "account.created", principal.actor, data, account_id=user.id,
                request_id=request_id), now)
            uow.outbox.add(principal.tenant_id, "account.created", {
                "account_id": user.id, "tenant": principal.tenant_slug, "source": "scim",
                "user_name": user_name, "status": user.status}, now)
            uow.commit()
        return Rendered(_render(user, base), user.version)

    return retrying(once)


def _by_email(uow: UnitOfWork, principal: ScimPrincipal, email: str) -> store.ScimUser | None:
    """The account JIT created with this email and SCIM never named, if any. (SCIM users may
    share an email: Entra's validator creates several with one; only a JIT account is the
    same person by its email.)"""
    found = uow.accounts.find_link_candidates(principal.tenant_id, connection_id=0,
                                              email=email, external_id=None)
    for account, _how in found:
        if account.kind == "user" and account.provisioned_by == "jit":
            user = uow.scim.users.get_user(principal.tenant_id, account.id)
            if user is not None and user.user_name is None:
                return user
    return None


def _adopt(uow: UnitOfWork, principal: ScimPrincipal, existing: store.ScimUser,
           res: Mapping[str, Any], now: datetime, request_id: str | None) -> store.ScimUser:
    """POST of an account that exists: take over one JIT created (never a SCIM-named one), by
    the tenant's ``scim_on_existing``; else 409 uniqueness."""
    policy = scim_policy(uow.config.tenants.settings(principal.tenant_id))
    adoptable = existing.provisioned_by == "jit" and existing.user_name is None
    if policy.on_existing != "adopt" or not adoptable:
        raise e.Uniqueness(f"a User with userName {res['userName']!r} (or its email) already "
                           "exists")
    return _write(uow, principal, existing, dict(res), now=now, request_id=request_id,
                  note="adopted: a JIT account taken over by SCIM (scim_on_existing=adopt)")


def replace_user(ctx: ServiceContext, principal: ScimPrincipal, base: str, user_id: str,
                 payload: object, *, if_match: str | None = None,
                 request_id: str | None = None) -> Rendered:
    """PUT /Users/{id}. Raises NotFound, PreconditionFailed, InvalidSyntax, InvalidValue,
    Uniqueness (a deactivation among them is applied alone)."""
    started = time.perf_counter()

    def apply(res: dict[str, Any]) -> Rendered:
        def once() -> Rendered:
            now = ctx.clock()
            with UnitOfWork(ctx.db) as uow:
                current = _current(uow, principal, user_id, if_match)
                updated = _write(uow, principal, current, res, now=now, request_id=request_id,
                                 started=started)
                uow.commit()
            return Rendered(_render(updated, base), updated.version)

        return retrying(once)

    return _deactivation_wins(
        ctx, principal, base, user_id, if_match=if_match, started=started,
        request_id=request_id, deactivates=lambda: _put_deactivates(payload),
        parse=lambda: parse_resource("User", payload, replacing=True), apply=apply,
        refusals=(e.InvalidValue, e.InvalidSyntax, e.Uniqueness, e.Mutability))


def patch_user(ctx: ServiceContext, principal: ScimPrincipal, base: str, user_id: str,
               body: object, *, if_match: str | None = None, quirks: Quirks = Quirks(),
               request_id: str | None = None,
               projection: Projection = Projection()) -> Rendered:
    """PATCH /Users/{id}: answers the resource (200). Raises as :func:`replace_user`, plus
    InvalidPath, NoTarget, Mutability."""
    started = time.perf_counter()

    def apply(ops: list[Operation]) -> Rendered:
        def once() -> Rendered:
            now = ctx.clock()
            with UnitOfWork(ctx.db) as uow:
                current = _current(uow, principal, user_id, if_match)
                res = _patched(current, ops, quirks)
                updated = _write(uow, principal, current, res, now=now, request_id=request_id,
                                 started=started)
                uow.commit()
            return Rendered(project("User", _render(updated, base), projection),
                            updated.version)

        return retrying(once)

    return _deactivation_wins(
        ctx, principal, base, user_id, if_match=if_match, started=started,
        request_id=request_id, deactivates=lambda: _patch_deactivates(body),
        parse=lambda: parse_patch(body, quirks), apply=apply,
        refusals=(e.InvalidValue, e.InvalidSyntax, e.InvalidPath, e.NoTarget, e.Mutability,
                  e.Uniqueness, e.InvalidFilter))


def _deactivation_wins(ctx: ServiceContext, principal: ScimPrincipal, base: str, user_id: str,
                       *, if_match: str | None, started: float, request_id: str | None,
                       deactivates: Callable[[], bool], parse: Callable[[], P],
                       apply: Callable[[P], Rendered],
                       refusals: tuple[type[e.ScimError], ...]) -> Rendered:
    """``apply(parse())``, unless the request is refused (any SCIM error of ``parse``, one of
    ``refusals`` of ``apply``) while it deactivates the user: then the deactivation alone is
    applied (an IdP must always be able to cut access) and the rest refused in its audit."""
    try:
        parsed = parse()
    except e.ScimError as refused:
        if not deactivates():
            raise
        return _deactivate_only(ctx, principal, base, user_id, if_match, refused, started,
                                request_id)
    try:
        return apply(parsed)
    except refusals as refused:
        if not deactivates():
            raise
        return _deactivate_only(ctx, principal, base, user_id, if_match, refused, started,
                                request_id)


def _patched(current: store.ScimUser, ops: Sequence[Operation],
             quirks: Quirks) -> dict[str, Any]:
    result = apply_patch(USER, to_resource(current), ops, quirks)
    return parse_resource("User", {"schemas": [USER_SCHEMA], **result.resource}, replacing=True)


def _current(uow: UnitOfWork, principal: ScimPrincipal, user_id: str,
             if_match: str | None) -> store.ScimUser:
    current = uow.scim.users.get_user(principal.tenant_id, user_id)
    if current is None:
        raise e.NotFound(f"no User {user_id!r}")
    check_if_match(if_match, current.version)
    return current


def _write(uow: UnitOfWork, principal: ScimPrincipal, current: store.ScimUser,
           res: dict[str, Any], *, now: datetime, request_id: str | None,
           started: float | None = None, note: str | None = None) -> store.ScimUser:
    """Replace the account's SCIM-held fields with ``res``; audit and announce the change and,
    separately, a status change (sessions revoked at once on deactivation)."""
    user_name, external_id, active, scim = _split(res)
    status: str | None = None
    if active is False and current.status == "active":
        status = "deactivated"
    elif active is True and current.status != "active":
        status = "active"
    try:
        updated = uow.scim.users.replace_user(
            current.id, expected_version=current.version, user_name=user_name,
            external_id=external_id, email=primary_email(res), scim=scim,
            profile=_profile(current.profile, res), now=now, status=status,
            writer_connection_id=principal.connection_id)
    except store.VersionMismatch:
        raise RaceLost("the user changed meanwhile") from None
    except STORE_ERRORS as exc:
        raise translate_store_error(exc) from None
    changes = _changes(to_resource(current), to_resource(updated))
    if changes or note:
        data: dict[str, object] = {"changes": changes, "source": "scim"}
        if note:
            data["note"] = note
        uow.audit.append(principal.tenant_id, principal.tenant_slug, AuditEvent(
            "account.updated", principal.actor, data, account_id=current.id,
            request_id=request_id), now)
        uow.outbox.add(principal.tenant_id, "account.updated", {
            "account_id": current.id, "tenant": principal.tenant_slug, "source": "scim",
            "changes": sorted(changes)}, now)
    if status is not None:
        tenant = uow.config.tenants.get(principal.tenant_slug)
        announce_status(uow, tenant, current.id, current.status, status,  # type: ignore[arg-type]
                        reason=f"SCIM active={str(status == 'active').lower()}",
                        actor=principal.actor, now=now, started=started)
    return updated


def _is_false(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "false")


def _put_deactivates(payload: object) -> bool:
    return isinstance(payload, dict) and any(
        k.lower() == "active" and _is_false(v) for k, v in payload.items())


def _patch_deactivates(body: object) -> bool:
    """Whether a PatchOp sets ``active`` to false (by path, or in a pathless value)."""
    if not isinstance(body, dict):
        return False
    ops = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(ops, list):
        return False
    for op in ops:
        if not isinstance(op, dict):
            continue
        fields = {str(k).lower(): v for k, v in op.items()}
        if str(fields.get("op", "")).lower() not in ("add", "replace"):
            continue
        path, value = fields.get("path"), fields.get("value")
        if isinstance(path, str) and path.strip().lower() in ("active", f"{USER_SCHEMA}:active"
                                                              .lower()):
            if _is_false(value):
                return True
        elif path is None and isinstance(value, dict) and any(
                k.lower() == "active" and _is_false(v) for k, v in value.items()):
            return True
    return False


def _deactivate_only(ctx: ServiceContext, principal: ScimPrincipal, base: str, user_id: str,
                     if_match: str | None, refused: e.ScimError, started: float,
                     request_id: str | None) -> Rendered:
    """A request that deactivates but is otherwise invalid: deactivate, refuse the rest."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        current = _current(uow, principal, user_id, if_match)
        if current.status == "active":
            change_status(uow, uow.config.tenants.get(principal.tenant_slug), current.id, "active",
                          "deactivated", reason=f"SCIM active=false; the rest of the request "
                          f"was refused: {refused.detail}", actor=principal.actor, now=now,
                          started=started)
        uow.commit()
    updated = _reread(ctx, principal, user_id)
    metrics.REVOCATION_SECONDS.observe(time.perf_counter() - started)
    return Rendered(_render(updated, base), updated.version)


def _reread(ctx: ServiceContext, principal: ScimPrincipal, user_id: str) -> store.ScimUser:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        user = uow.scim.users.get_user(principal.tenant_id, user_id)
    if user is None:
        raise e.NotFound(f"no User {user_id!r}")
    return user


def delete_user(ctx: ServiceContext, principal: ScimPrincipal, user_id: str, *,
                if_match: str | None = None, request_id: str | None = None) -> None:
    """DELETE /Users/{id}: deactivate (sessions revoked at once) or erase, by the tenant's
    ``scim_delete``. Raises NotFound, PreconditionFailed."""
    started = time.perf_counter()
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        current = _current(uow, principal, user_id, if_match)
        policy = scim_policy(uow.config.tenants.settings(principal.tenant_id))
        tenant = uow.config.tenants.get(principal.tenant_slug)
        if policy.delete == "erase":
            revoked = uow.sessions.revoke_all(current.id, now)
            _leave_groups(uow, current.id, now)
            uow.scim.users.delete_user(current.id)
            uow.audit.append(principal.tenant_id, principal.tenant_slug, AuditEvent(
                "account.deleted", principal.actor,
                {"user_name": current.effective_user_name, "source": "scim",
                 "policy": "erase", "sessions_revoked": revoked,
                 "revocation_ms": round((time.perf_counter() - started) * 1000, 3)},
                account_id=current.id, request_id=request_id), now)
            uow.outbox.add(principal.tenant_id, "account.deleted", {
                "account_id": current.id, "tenant": principal.tenant_slug,
                "source": "scim"}, now)
        else:
            if current.status != "deactivated":
                change_status(uow, tenant, current.id, current.status, "deactivated",
                              reason="SCIM DELETE (scim_delete=deactivate)",
                              actor=principal.actor, now=now, started=started)
            _forget(uow, principal, current, now, request_id)
        if policy.delete != "erase":  # the groups it leaves: its rule grants follow
            membership_changed(ctx, uow, principal, [current.id], request_id=request_id,
                               now=now)
        uow.commit()


def _forget(uow: UnitOfWork, principal: ScimPrincipal, current: store.ScimUser,
            now: datetime, request_id: str | None) -> None:
    """DELETE under ``scim_delete: deactivate``: the account stays (deactivated, with its
    identities and history) but is deleted for SCIM (RFC 7644 section 3.6): 404 for every
    later request of its id, absent from lists and filters, its userName free for a new
    resource, and it leaves its groups."""
    left = _leave_groups(uow, current.id, now)
    uow.scim.users.mark_deleted(current.id, now)
    uow.audit.append(principal.tenant_id, principal.tenant_slug, AuditEvent(
        "account.scim_deleted", principal.actor,
        {"user_name": current.effective_user_name, "external_id": current.external_id,
         "source": "scim", "policy": "deactivate", "groups_left": left},
        account_id=current.id, request_id=request_id), now)


def _leave_groups(uow: UnitOfWork, account_id: str, now: datetime) -> list[str]:
    """Take a deleted user out of its groups, each group's version bumped (its ETag
    changes with its members); the ids of those groups."""
    left = [group_id for group_id, _name in uow.scim.groups.groups_of(account_id)]
    for group_id in left:
        uow.scim.groups.remove_members(group_id, [account_id])
        uow.scim.groups.touch_group(group_id, now)
    return left
