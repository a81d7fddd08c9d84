"""Entitlements that follow SCIM membership: the ``scim_groups`` claim of every login, and the
re-evaluation of rule grants when a SCIM client changes a group's members.

Shared by the login flow and the SCIM use cases, which never import each other.

**At a login** (``services/login/flow.py``, where OIDC, SAML, the demo IdP and the step-up of
a stale passkey session all end): when the connection's mapping names ``scim_groups``, the
mapping sees the IdP's claims plus ``scim_groups``, the displayNames of the SCIM groups of the
account this login signs in to (the account bound to (connection, subject), else the account a
SCIM client of this connection created with this subject as its externalId). It is read in
the login's transaction, after the identity's login lock, in one statement, so a login and a
concurrent membership change are serialized; a mapping that does not name it costs nothing.
An IdP claim of that name is replaced: only SCIM decides SCIM membership.

**At a membership change** (group POST with members, PATCH of members, PUT, rename, DELETE,
and through Bulk; a reactivated User), the rule grants of each affected account are
re-evaluated, per identity whose connection's mapping names ``scim_groups``, on that
identity's last recorded claims plus the new ``scim_groups``: exactly the grant part of what
that identity's next login would decide (:func:`jitprov.core.provisioning.reevaluate_grants`):
that connection's rule grants only (``rule:<connection>/<id>``; manual, approval and scim
grants untouched), approval-required rules open or withdraw requests, with provenance
(``granted_by`` is the SCIM actor), an ``account.updated`` audit event (actor
``scim:<token>``) and the login's outbox events (``account.updated``, ``role.granted``,
``role.revoked``, ``approval.requested``). Never a creation, link, denial or deactivation
(deny rules apply at the next login), never the profile or mirrored groups. An identity with
no recorded claims (a SCIM-only account that never signed in, or claims purged after the
tenant's retention) gets nothing from its connection's rules until its next login. An
account that is not active is re-evaluated all the same (its grants match its membership the
day it is reactivated).

Up to ``ctx.reevaluation_inline_max`` accounts (200) are re-evaluated in the SCIM request's
own transaction, so the change and the roles commit together. A larger change queues the
accounts (table ``reevaluation``, in the same transaction) for :func:`process_queue`, run by
the job of ``serve`` and ``dev`` in batches of :data:`BATCH` accounts, one transaction each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from jitprov.core.audit import AuditEvent
from jitprov.core.identity import ExternalIdentity
from jitprov.core.mapping import MappedIdentity, Policy
from jitprov.core.provisioning import (
    Changes,
    Create,
    Link,
    Update,
    apply_changes,
    reevaluate_grants,
)
from jitprov.services.context import ServiceContext
from jitprov.store.entitlements import SCIM_GROUPS_CLAIM, RecordedIdentity
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork

__all__ = ["BATCH", "SCIM_GROUPS_CLAIM", "announcements", "login_mapping",
           "members_changing", "membership_changed", "process_queue", "reevaluate",
           "uses_scim_groups"]

BATCH = 100  # accounts per job transaction: ~0.1 s of write lock on SQLite
_EVENT_TYPES = {"create": "account.created", "update": "account.updated",
                "link": "account.linked"}


class Actor(Protocol):
    """Who changed membership: a SCIM client (``ScimPrincipal``)."""

    @property
    def tenant_id(self) -> int: ...
    @property
    def tenant_slug(self) -> str: ...
    @property
    def actor(self) -> str: ...


# -- logins -----------------------------------------------------------------------------------

def uses_scim_groups(conn: ConnectionRecord) -> bool:
    """Whether the connection's mapping names ``scim_groups`` (a test on its text)."""
    return SCIM_GROUPS_CLAIM in conn.mapping


def login_mapping(uow: UnitOfWork, conn: ConnectionRecord, policy: Policy,
                  identity: ExternalIdentity, *, lock: bool = True) -> MappedIdentity:
    """The mapping of a login whose connection's mapping names ``scim_groups``: the IdP's
    claims plus ``scim_groups``, read in ``uow`` after the identity's login lock (``lock``;
    a dry run takes none)."""
    if lock:
        uow.identities.lock_identity(conn.id, identity.subject)
    names = uow.entitlements.login_groups(conn.tenant_id, conn.id, identity.subject)
    return policy.map({**identity.claims, SCIM_GROUPS_CLAIM: names}).scoped(conn.slug)


def announcements(decision: Create | Update | Link, account_id: str,
                  conn: ConnectionRecord) -> list[tuple[str, dict[str, object]]]:
    """The outbox events of an account change: the change itself, then one event per role
    granted or revoked and per approval requested, for receivers that want only those."""
    base: dict[str, object] = {"account_id": account_id, "tenant": conn.tenant_slug,
                                "connection": conn.slug}
    changes = decision.changes
    events: list[tuple[str, dict[str, object]]] = [
        (_EVENT_TYPES[decision.kind], {**base, "changes": changes.as_dict()})]
    events += [("role.granted", {**base, "role": g.role, "source": g.source})
               for g in sorted(changes.grants_added)]
    events += [("role.revoked", {**base, "role": g.role, "source": g.source})
               for g in sorted(changes.grants_revoked)]
    events += [("approval.requested", {**base, "role": p.role, "source": p.source})
               for p in sorted(changes.pending_added)]
    return events


# -- membership changes -----------------------------------------------------------------------

def membership_changed(ctx: ServiceContext, uow: UnitOfWork, who: Actor,
                       account_ids: Sequence[str], *, request_id: str | None,
                       now: datetime) -> None:
    """After a SCIM change of these accounts' membership, in its transaction: re-evaluate
    them here (up to ``ctx.reevaluation_inline_max``) or queue them for the job. Nothing at
    all (one small read) when no mapping of the tenant names ``scim_groups``."""
    if not account_ids or not uow.entitlements.uses_scim_groups(who.tenant_id):
        return
    unique = list(dict.fromkeys(account_ids))
    if len(unique) > ctx.reevaluation_inline_max:
        uow.entitlements.enqueue(who.tenant_id, unique, actor=who.actor,
                                 request_id=request_id, now=now)
        return
    reevaluate(ctx, uow, [(a, who.actor, request_id) for a in unique], now)


def members_changing(ctx: ServiceContext, uow: UnitOfWork, who: Actor, group_id: str, *,
                     request_id: str | None, now: datetime) -> list[str]:
    """Every member of a group whose name changes or that is deleted, read before the change:
    the ids to pass to :func:`membership_changed` after it, or none when the group is larger
    than ``ctx.reevaluation_inline_max`` (its members are then queued here, in one
    statement) or when no mapping of the tenant names ``scim_groups``."""
    if not uow.entitlements.uses_scim_groups(who.tenant_id):
        return []
    groups = uow.scim.groups
    if groups.count_members(group_id) > ctx.reevaluation_inline_max:
        uow.entitlements.enqueue_members(who.tenant_id, group_id, actor=who.actor,
                                         request_id=request_id, now=now)
        return []
    return [m.value for m in groups.members(group_id)]


@dataclass(frozen=True, slots=True)
class _Evaluation:
    connection: ConnectionRecord
    policy: Policy


def reevaluate(ctx: ServiceContext, uow: UnitOfWork,
               items: Sequence[tuple[str, str, str | None]], now: datetime) -> int:
    """Re-evaluate the rule grants of these accounts ((account id, actor, request id)) in
    ``uow`` (see the module docstring); returns how many accounts changed. Takes the login
    lock of every identity it evaluates first, in one global order (no deadlock between
    batches), and writes the audit and outbox events of a batch in one statement each."""
    who = {account_id: (actor, request_id) for account_id, actor, request_id in items}
    identities = uow.entitlements.recorded_identities(list(who))
    if not identities:
        return 0
    uow.identities.lock_identities([(i.connection_id, i.subject) for i in identities])
    by_account: dict[str, list[RecordedIdentity]] = {}
    for ident in identities:
        by_account.setdefault(ident.account_id, []).append(ident)
    names = uow.scim.groups.groups_of_many(list(by_account))
    accounts = uow.accounts.get_many(list(by_account))
    writes: list[tuple[str, Changes, str]] = []
    evaluations: dict[str, _Evaluation] = {}
    audit: dict[tuple[int, str], list[AuditEvent]] = {}
    outbox: dict[int, list[tuple[str, dict[str, object]]]] = {}
    for account_id, idents in sorted(by_account.items()):
        actor, request_id = who[account_id]
        scim_groups = [name for _, name in names.get(account_id, [])]
        account = accounts.get(account_id)
        if account is None:  # deleted meanwhile
            continue
        changes_of_account = Changes()
        for ident in idents:
            ev = evaluations.get(ident.connection_slug)
            if ev is None:
                conn = uow.config.connections.get(ident.connection_slug)
                ev = evaluations[conn.slug] = _Evaluation(conn, ctx.policies.get(conn))
            claims: Mapping[str, object] = {**ident.claims, SCIM_GROUPS_CLAIM: scim_groups}
            mapped = ev.policy.map(claims).scoped(ev.connection.slug)
            changes = reevaluate_grants(account, mapped, ev.policy.settings,
                                        ev.connection.slug, now=now)
            if changes.is_empty:
                continue
            account = apply_changes(account, changes)
            changes_of_account = _merged(changes_of_account, changes)
            conn = ev.connection
            audit.setdefault((conn.tenant_id, conn.tenant_slug), []).append(AuditEvent(
                "account.updated", actor,
                {"connection": conn.slug, "subject": ident.subject,
                 "decision": "reevaluate", "trigger": "scim_groups",
                 "policy": ev.policy.fingerprint[:16], "scim_groups": scim_groups,
                 "changes": changes.as_dict(), "source": "scim"},
                account_id=account_id, request_id=request_id))
            outbox.setdefault(conn.tenant_id, []).extend(announcements(
                Update(account_id, changes), account_id, conn))
        if not changes_of_account.is_empty:
            writes.append((account_id, changes_of_account, actor))
    uow.entitlements.apply_grants(writes, now)
    for tenant_id, events in outbox.items():
        uow.outbox.add_many(tenant_id, events, now)
    for (tenant_id, tenant_slug), audited in audit.items():  # last: the chain head is locked
        uow.audit.append_many(tenant_id, tenant_slug, audited, now)  # until the commit
    return len(writes)


def _merged(first: Changes, then: Changes) -> Changes:
    """Two identities' grant changes of one account, as one write (their sources differ)."""
    return Changes(grants_added=first.grants_added | then.grants_added,
                   grants_revoked=first.grants_revoked | then.grants_revoked,
                   pending_added=first.pending_added | then.pending_added,
                   pending_withdrawn=first.pending_withdrawn | then.pending_withdrawn)


def process_queue(ctx: ServiceContext, *, batch: int = BATCH) -> int:
    """One batch of the queue in one transaction: claim up to ``batch`` rows, re-evaluate
    their accounts, delete the rows, commit. Returns how many rows it took (0: empty). A
    crash rolls the batch back whole (its rows stay queued); on PostgreSQL concurrent nodes
    take disjoint batches (``SKIP LOCKED``)."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        rows = uow.entitlements.claim(batch)
        if not rows:
            return 0
        latest = {r.account_id: (r.account_id, r.actor, r.request_id) for r in rows}
        reevaluate(ctx, uow, list(latest.values()), now)
        uow.entitlements.done([r.id for r in rows])
        uow.commit()
    return len(rows)


def backlog(ctx: ServiceContext) -> int:
    """Accounts queued for re-evaluation (health, tests)."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.entitlements.backlog()
