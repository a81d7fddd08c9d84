"""Accounts: status changes and grants an approver decides.

Status: deactivating or suspending an account revokes every session of it in the same
transaction (the next request with an old cookie is refused), is audited and announced
through the outbox; only an explicit reactivation brings it back (JIT never resurrects it).
Admins, the CLI and the API go through :func:`set_account_status`; SCIM and the dormant
sweep, already in a unit of work, through :func:`change_status` and :func:`announce_status`.

Grants: roles a rule marks ``approval: required`` wait as requests for an approver. An
approved request becomes a grant with source ``approval`` (rules never revoke it), optionally
time-bound; a denied one is closed. Each decision is audited with its approver and reason and
announced through the outbox.

Manual grants and overrides: an admin grants one role (source ``manual``, optionally
time-bound) or revokes a manual, approved, SCIM or break-glass grant. A rule grant cannot be
revoked by hand (the next login would grant it again): the revocation names the rule, unless
the admin blocks the role, an override that keeps it off the account whatever the rules say
until it is unblocked. Each change is one transaction with its audit event (``grant.added``,
``grant.revoked``, ``grant.blocked``, ``grant.unblocked``) and outbox events (``role.granted``,
``role.revoked``). Expiry: a grant past its ``expires_at`` is not held anywhere at once; the
sweep (:func:`remove_expired_grants`) deletes it and announces it (``grant.expired``,
``role.revoked`` with reason ``expired``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import Conflict, InvalidInput, NotFound, RaceLost
from jitprov.core.identity import (
    MAX_ROLE_NAME,
    ROLE_NAME_CHARS,
    Account,
    AccountStatus,
    RoleGrant,
    valid_role_name,
)
from jitprov.services import metrics
from jitprov.services.console import ADMIN_ROLE
from jitprov.services.context import ServiceContext
from jitprov.store.records import (
    GrantRecord,
    PendingGrantRecord,
    RoleBlockRecord,
    TenantRecord,
)
from jitprov.store.unit_of_work import UnitOfWork

# -- status ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StatusChange:
    account_id: str
    before: str
    after: str
    sessions_revoked: int


def change_status(uow: UnitOfWork, tenant: TenantRecord, account_id: str, before: str,
                  status: AccountStatus, *, reason: str, actor: str, now: datetime,
                  started: float | None = None) -> int:
    """Within ``uow``: set the status, then :func:`announce_status`."""
    uow.accounts.set_status(account_id, status, now)
    return announce_status(uow, tenant, account_id, before, status, reason=reason, actor=actor,
                           now=now, started=started)


def announce_status(uow: UnitOfWork, tenant: TenantRecord, account_id: str, before: str,
                    status: AccountStatus, *, reason: str, actor: str, now: datetime,
                    started: float | None = None) -> int:
    """Within ``uow``, after a status change: revoke every session unless active, audit,
    announce. Returns the number of sessions revoked. Shared by admins and the sweep.
    ``started`` (``time.perf_counter()`` when the trigger arrived) puts the trigger-to-
    revocation time in the audit event."""
    revoked = uow.sessions.revoke_all(account_id, now) if status != "active" else 0
    metrics.SESSIONS_REVOKED.inc(revoked)
    event = {"active": "account.reactivated", "suspended": "account.suspended",
             "deactivated": "account.deactivated"}[status]
    data: dict[str, object] = {"before": before, "after": status, "reason": reason,
                               "sessions_revoked": revoked}
    if started is not None and status != "active":
        data["revocation_ms"] = round((time.perf_counter() - started) * 1000, 3)
    uow.audit.append(tenant.id, tenant.slug, AuditEvent(event, actor, data,
                                                        account_id=account_id), now)
    uow.outbox.add(tenant.id, event, {"account_id": account_id, "tenant": tenant.slug,
                                      "status": status}, now)
    return revoked


def set_account_status(ctx: ServiceContext, account_id: str, status: AccountStatus, *,
                       reason: str, actor: str = "cli") -> StatusChange:
    """Deactivate, suspend or reactivate an account, with a mandatory reason. Anything but
    active revokes every session of the account in the same transaction (the next request
    with an old cookie is 401), and logins are refused until an admin reactivates it: JIT
    never resurrects it. Audited (``account.deactivated`` / ``suspended`` / ``reactivated``)
    and announced to webhooks through the outbox. An account SCIM deleted is not reactivated
    here (Conflict): SCIM answers 404 for it, so its IdP could never deprovision it again; the
    IdP re-creates the person instead (a SCIM POST). Raises NotFound, InvalidInput, Conflict."""
    started = time.perf_counter()
    if not reason.strip():
        raise InvalidInput("a reason is required")
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        view = uow.accounts.view(account_id)
        before = view.account.status
        if before == status:
            raise InvalidInput(f"account {account_id} is already {status}")
        deleted = uow.accounts.scim_deleted_at(account_id) if status == "active" else None
        if deleted is not None:
            raise Conflict(f"account {account_id} was deleted by SCIM on "
                           f"{deleted.date().isoformat()}; the IdP must re-create it "
                           "(reactivating it here would leave it beyond its IdP's reach)")
        revoked = change_status(uow, uow.config.tenants.get(view.tenant_slug), account_id, before,
                                status, reason=reason, actor=actor, now=now, started=started)
        uow.commit()
    if status != "active":  # committed: the next request with an old cookie is refused
        metrics.REVOCATION_SECONDS.observe(time.perf_counter() - started)
    return StatusChange(account_id, before, status, revoked)


# -- grants ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    request: PendingGrantRecord
    approved: bool
    expires_at: datetime | None


def list_requests(ctx: ServiceContext, tenant: str, *,
                  status: str = "pending") -> list[PendingGrantRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.grants.requests(uow.config.tenants.get(tenant).id, status=status)


def decide_request(ctx: ServiceContext, pending_id: int, *, approve: bool, reason: str,
                   approver: str, valid_for: timedelta | None = None) -> ApprovalDecision:
    """Approve (granting the role, until ``now + valid_for`` if given) or deny a request.
    Raises NotFound, Conflict (already decided or withdrawn), InvalidInput (no reason)."""
    if not reason.strip():
        raise InvalidInput("a reason is required")
    if valid_for is not None and not approve:
        raise InvalidInput("only an approval can be time-bound")
    now = ctx.clock()
    expires_at = now + valid_for if valid_for is not None else None

    def work() -> PendingGrantRecord:
        with UnitOfWork(ctx.db) as uow:
            request, tenant_id = uow.grants.get_request(pending_id)
            uow.accounts.lock(request.account_id)  # against a concurrent block
            account = uow.accounts.get(request.account_id)
            if approve and request.role in account.blocked:
                raise InvalidInput(f"role {request.role} is blocked for this account; unblock "
                                   "it first")
            uow.grants.decide(pending_id, approved=approve, decided_by=approver,
                              reason=reason, now=now)
            expired: list[RoleGrant] = []
            if approve:  # an expired approval of the role is replaced: announce it gone
                expired = _expired_of(account, request.role, now, source="approval")
                uow.grants.grant(request.account_id,
                                 RoleGrant(request.role, "approval", expires_at), now, approver)
            tenant = uow.config.tenants.get_by_id(tenant_id)
            event = "grant.approved" if approve else "grant.denied"
            data: dict[str, object] = {"request": pending_id, "role": request.role,
                                       "requested_by": request.source, "reason": reason,
                                       "expires_at": _iso(expires_at)}
            audit, outbox = _expiry_notices(expired, request.account_id, approver)
            _announce(uow, tenant, [*audit, AuditEvent(
                event, approver, data, account_id=request.account_id)],
                [*outbox, (event, {"role": request.role})], request.account_id, now)
            uow.commit()
            return request

    return ApprovalDecision(_retrying(work), approve, expires_at)


# -- manual grants, overrides, expiry ----------------------------------------------------------

MANUAL = "manual"
MAX_GRANT_DAYS = 3650


@dataclass(frozen=True, slots=True)
class GrantListing:
    """The grants in force (expired ones left out) and the overrides of a tenant or account."""

    grants: list[GrantRecord]
    blocks: list[RoleBlockRecord]


@dataclass(frozen=True, slots=True)
class GrantChange:
    account_id: str
    role: str
    source: str | None  # the grant added or removed (None: a block or unblock only)
    expires_at: datetime | None = None
    blocked: bool = False


#: attempts of one admin write before a lost race is reported (409 in the API)
ATTEMPTS = 3
#: what a stored role name may be at most (the column); names written before the rule was
#: tightened can still be revoked, blocked and unblocked
_STORED_ROLE_NAME = 128
_T = TypeVar("_T")


def _retrying(work: Callable[[], _T]) -> _T:
    """Run a unit of work again when it lost a race (a unique key written or a lock taken
    concurrently: RaceLost), as the login does; still lost after ``ATTEMPTS``: RaceLost,
    which the API answers 409."""
    for _ in range(ATTEMPTS - 1):
        try:
            return work()
        except RaceLost:
            continue
    return work()


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _checked(reason: str, role: str, *, strict: bool = True) -> tuple[str, str]:
    """The reason and the role name, trimmed. ``strict`` (a role being added): the role-name
    rule of ``core/identity.py``; otherwise (revoke, block, unblock) any name the store can
    hold, so a role stored before the rule can still be removed."""
    reason, role = reason.strip(), role.strip()
    if not reason:
        raise InvalidInput("a reason is required")
    if strict and not valid_role_name(role):
        raise InvalidInput(f"invalid role name {role[:80]!r}: 1 to {MAX_ROLE_NAME} characters "
                           f"among {ROLE_NAME_CHARS}")
    if not strict and not 1 <= len(role) <= _STORED_ROLE_NAME:
        raise InvalidInput(f"invalid role name {role[:80]!r}: 1 to {_STORED_ROLE_NAME} "
                           "characters")
    return reason[:500], role


def _account_of(uow: UnitOfWork, tenant: str, account_id: str) -> tuple[TenantRecord, Account]:
    """The tenant and the account, which must belong to it. Raises NotFound."""
    ten = uow.config.tenants.get(tenant)
    try:
        account = uow.accounts.get(account_id)
    except NotFound:
        account = None
    if account is None or account.tenant != ten.slug:
        raise NotFound(f"no account {account_id!r} in tenant {ten.slug}")
    return ten, account


def _locked_account(uow: UnitOfWork, tenant: str,
                    account_id: str) -> tuple[TenantRecord, Account]:
    """:func:`_account_of`, read after locking the account row: grants, revokes, blocks,
    unblocks and approvals of one account run one at a time (PostgreSQL read committed would
    otherwise let a grant and a block of the same role both commit)."""
    ten = uow.config.tenants.get(tenant)
    uow.accounts.lock(account_id)
    return _account_of(uow, ten.slug, account_id)


def _expired_of(account: Account, role: str, now: datetime, *,
                source: str | None = None) -> list[RoleGrant]:
    """The account's rows of ``role`` (of ``source`` if given) expired at ``now``: a write
    that deletes or replaces them announces them as the sweep would have."""
    return sorted(g for g in account.grants if g.role == role and not g.active_at(now)
                  and (source is None or g.source == source))


def _expiry_notices(expired: Iterable[RoleGrant], account_id: str, actor: str
                    ) -> tuple[list[AuditEvent], list[tuple[str, dict[str, object]]]]:
    """The sweep's announcements (audit ``grant.expired``, outbox ``role.revoked`` with
    reason ``expired``) for expired rows an admin write removes before the sweep does."""
    audit: list[AuditEvent] = []
    outbox: list[tuple[str, dict[str, object]]] = []
    for g in expired:
        audit.append(AuditEvent("grant.expired", "lifecycle:expiry", {
            "role": g.role, "source": g.source, "expires_at": _iso(g.expires_at),
            "removed_by": actor}, account_id=account_id))
        outbox.append(("role.revoked", {"role": g.role, "source": g.source,
                                        "reason": "expired"}))
    return audit, outbox


def _announce(uow: UnitOfWork, ten: TenantRecord, events: list[AuditEvent],
              outbox: list[tuple[str, dict[str, object]]], account_id: str | None,
              now: datetime) -> None:
    """The outbox events, then the audit events: appended last, so the tenant's chain head
    stays locked only until the commit that follows."""
    base: dict[str, object] = {"tenant": ten.slug}
    if account_id is not None:
        base["account_id"] = account_id
    uow.outbox.add_many(ten.id, [(kind, {**base, **payload}) for kind, payload in outbox], now)
    uow.audit.append_many(ten.id, ten.slug, events, now)


def list_grants(ctx: ServiceContext, tenant: str, *,
                account_id: str | None = None) -> GrantListing:
    """The grants in force now with their provenance and expiry, and the overrides, of a
    tenant or of one account of it. Raises NotFound."""
    now = ctx.clock()
    with UnitOfWork(ctx.db, readonly=True) as uow:
        if account_id is not None:
            ten, _ = _account_of(uow, tenant, account_id)
        else:
            ten = uow.config.tenants.get(tenant)
        grants = uow.grants.grants(ten.id, account_id=account_id)
        blocks = uow.grants.blocks(ten.id, account_id=account_id)
    blocked = {(b.account_id, b.role) for b in blocks}  # a block wins, as in Account.at
    return GrantListing([g for g in grants if (g.expires_at is None or g.expires_at > now)
                         and (g.account_id, g.role) not in blocked], blocks)


def grant_role(ctx: ServiceContext, tenant: str, account_id: str, role: str, *, reason: str,
               actor: str, expires_in_days: int | None = None) -> GrantChange:
    """Grant ``role`` by hand (source ``manual``; rules never revoke it), until ``now +
    expires_in_days`` if given. Granting it again replaces the grant (a new expiry, or none).
    Only ordinary user accounts take manual grants (admin, service and break-glass accounts
    have their own paths), and never the console's admin role, which only a mapping rule
    gives (a tenant admin must not mint admins by hand). Raises NotFound, InvalidInput (no
    reason, a bad role name or validity, a blocked role, another kind of account, the admin
    role), RaceLost (still lost to concurrent writes after retries)."""
    reason, role = _checked(reason, role)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_GRANT_DAYS:
        raise InvalidInput(f"expires in: 1 to {MAX_GRANT_DAYS} days")
    if role == ADMIN_ROLE:
        raise InvalidInput(f"role {ADMIN_ROLE} opens the admin console: it is given by a "
                           "mapping rule only, not by a manual grant")
    now = ctx.clock()
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None

    def work() -> None:
        with UnitOfWork(ctx.db) as uow:
            ten, account = _locked_account(uow, tenant, account_id)
            if account.kind != "user":
                raise InvalidInput(f"account {account_id} is a {account.kind} account: manual "
                                   "grants are for user accounts only")
            if role in account.blocked:
                raise InvalidInput(f"role {role} is blocked for account {account_id}; unblock "
                                   "it first (grants unblock)")
            expired = _expired_of(account, role, now, source=MANUAL)
            uow.grants.grant(account_id, RoleGrant(role, MANUAL, expires_at), now, actor)
            audit, outbox = _expiry_notices(expired, account_id, actor)
            _announce(uow, ten, [*audit, AuditEvent("grant.added", actor, {
                "role": role, "source": MANUAL, "reason": reason,
                "expires_at": _iso(expires_at)}, account_id=account_id)],
                [*outbox, ("role.granted", {"role": role, "source": MANUAL,
                                            "expires_at": _iso(expires_at)})],
                account_id, now)
            uow.commit()

    _retrying(work)
    return GrantChange(account_id, role, MANUAL, expires_at)


def revoke_role(ctx: ServiceContext, tenant: str, account_id: str, role: str, *, reason: str,
                actor: str, block: bool = False) -> GrantChange:
    """Revoke the account's grants of ``role`` that are not a rule's (manual, approval, SCIM,
    break-glass). A role held by a rule is refused with the rule's name, unless ``block``:
    then an override keeps the role off the account (rule grants included, now and at every
    later login) until :func:`unblock_role`; a block also withdraws the account's open
    approval requests for the role. Expired rows of the role go too, announced as the sweep
    would (``grant.expired``, ``role.revoked`` with reason ``expired``). Raises NotFound,
    InvalidInput (not held, held by a rule without ``block``), Conflict (already blocked),
    RaceLost (still lost to concurrent writes after retries)."""
    reason, role = _checked(reason, role, strict=False)
    now = ctx.clock()

    def work() -> list[RoleGrant]:
        with UnitOfWork(ctx.db) as uow:
            ten, account = _locked_account(uow, tenant, account_id)
            held = [g for g in account.at(now).grants if g.role == role]
            by_rule = sorted(g.source for g in held if g.by_rule)
            if not block:
                if not held:
                    raise InvalidInput(f"account {account_id} does not hold role {role}")
                if by_rule:
                    rules = ", ".join(s.removeprefix("rule:") for s in by_rule)
                    raise InvalidInput(f"role {role} is granted by rule {rules}: it would "
                                       "come back at the next login; revoke with --block to "
                                       "keep it off this account")
            elif role in account.blocked:
                raise Conflict(f"role {role} is already blocked for account {account_id}")
            removed = sorted(g for g in account.grants if g.role == role)
            for g in removed:  # expired rows of the role go too: nothing of it is left behind
                uow.grants.revoke(account_id, role, g.source)
            withdrawn: list[int] = []
            if block:
                uow.grants.block(account_id, role, blocked_by=actor, reason=reason, now=now)
                withdrawn = uow.grants.withdraw_requests(
                    account_id, role, decided_by=actor, reason=f"role blocked: {reason}",
                    now=now)
            live = [g for g in removed if g.active_at(now)]
            audit, outbox = _expiry_notices(_expired_of(account, role, now), account_id, actor)
            data: dict[str, object] = {"role": role, "reason": reason,
                                       "sources": [g.source for g in live]}
            if block:
                data["requests_withdrawn"] = withdrawn
            why = "blocked" if block else "revoked"
            outbox += [("role.revoked", {"role": g.role, "source": g.source, "reason": why})
                       for g in live]
            _announce(uow, ten, [*audit, AuditEvent(
                "grant.blocked" if block else "grant.revoked", actor, data,
                account_id=account_id)], outbox, account_id, now)
            uow.commit()
            return live

    live = _retrying(work)
    return GrantChange(account_id, role, ",".join(g.source for g in live) or None,
                       blocked=block)


def unblock_role(ctx: ServiceContext, tenant: str, account_id: str, role: str, *,
                 reason: str, actor: str) -> RoleBlockRecord:
    """Lift an override: rules may grant the role again from the next login. Raises
    NotFound, InvalidInput (no such block), RaceLost (still lost after retries)."""
    reason, role = _checked(reason, role, strict=False)
    now = ctx.clock()

    def work() -> RoleBlockRecord:
        with UnitOfWork(ctx.db) as uow:
            ten, _ = _locked_account(uow, tenant, account_id)
            lifted = uow.grants.unblock(account_id, role)
            if lifted is None:
                raise InvalidInput(f"role {role} is not blocked for account {account_id}")
            _announce(uow, ten, [AuditEvent("grant.unblocked", actor, {
                "role": role, "reason": reason, "blocked_by": lifted.blocked_by,
                "blocked_at": lifted.blocked_at.isoformat()}, account_id=account_id)], [],
                account_id, now)
            uow.commit()
            return lifted

    return _retrying(work)


def remove_expired_grants(ctx: ServiceContext, *, batch: int = 500) -> int:
    """The sweep: delete every grant expired by now and announce each (audit
    ``grant.expired``, outbox ``role.revoked`` with reason ``expired``). Reads a batch of
    expired grants (any tenant), then works one tenant at a time, in tenant-id order, one
    transaction each: guarded deletes first, then the outbox, then the tenant's audit events
    in one append, last, so its chain head is locked only until that commit (a batch never
    holds the heads of several tenants, nor one head across hundreds of deletes). Safe on
    several nodes at once: a guarded delete succeeds once, and only the node that deleted a
    grant announces it. Returns how many this call removed."""
    now = ctx.clock()
    removed = 0
    while True:
        with UnitOfWork(ctx.db, readonly=True) as uow:
            due = uow.grants.expired(now, limit=batch)
        by_tenant: dict[int, list[GrantRecord]] = {}
        for tenant_id, _, g in due:
            by_tenant.setdefault(tenant_id, []).append(g)
        for tenant_id, grants in sorted(by_tenant.items()):
            removed += _retrying(partial(_expire, ctx, tenant_id, grants, now))
        if len(due) < batch:
            return removed


def _expire(ctx: ServiceContext, tenant_id: int, grants: list[GrantRecord],
            now: datetime) -> int:
    """One tenant's part of a sweep batch, in one transaction. Returns how many it deleted."""
    with UnitOfWork(ctx.db) as uow:
        gone = [g for g in grants
                if uow.grants.delete_if_expired(g.account_id, g.role, g.source, now)]
        if not gone:
            return 0
        ten = uow.config.tenants.get_by_id(tenant_id)
        uow.outbox.add_many(ten.id, [("role.revoked", {
            "account_id": g.account_id, "tenant": ten.slug, "role": g.role,
            "source": g.source, "reason": "expired"}) for g in gone], now)
        uow.audit.append_many(ten.id, ten.slug, [AuditEvent(
            "grant.expired", "lifecycle:expiry", {
                "role": g.role, "source": g.source, "granted_by": g.granted_by,
                "expires_at": _iso(g.expires_at)}, account_id=g.account_id)
            for g in gone], now)
        uow.commit()
    return len(gone)
