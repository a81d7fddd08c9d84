"""decide(): what one login does to the account store. Pure: values in, a value out.

The login service (``services/login/``) carries the returned decision out in one unit of work.

Semantics (the contract every login path relies on):

- A deactivated or suspended account is refused before anything else: JIT never resurrects
  what SCIM or an admin deactivated.
- A matching deny rule always wins.
- Rule-granted roles (source ``rule:<id>``) follow the rules at every login when the policy
  says ``on_login: sync``; grants from ``scim``, ``manual`` and ``approval`` are never touched.
- A grant past its ``expires_at`` (given ``now``) is not held: a rule that still matches a role
  whose approval expired asks for approval again. A role the account has blocked (an admin
  override) is never granted nor requested by a rule, and a rule grant of it is revoked even
  when the groups claim is missing.
- An absent or empty groups claim revokes no grant of a rule that may read ``groups`` and
  clears no mirrored group unless the policy says ``groups_missing: revoke`` (Entra omits
  groups past its limit, Okta truncates); rules on other claims follow their rule.
  Groups are mirrored on the account only when the policy has a ``groups:`` line.
- ``approval: required`` roles become pending grants; a pending grant whose rule stops matching
  is withdrawn.
- A profile field set by ``scim`` or ``manual`` is not overwritten by a login; an absent claim
  never clears a field.
- A first login whose email belongs to an existing account follows the linking policy:
  ``never`` denies with a clear reason, ``verified_email`` links only when the IdP asserted the
  email verified, exactly one account matches and it is an active ordinary user account,
  ``pending`` queues the link for an admin. An account provisioned for this connection (by a
  SCIM client bound to it) whose ``external_id`` equals the subject is linked (one account,
  never two). Admin, break-glass and service accounts are never linked.
- A later login never takes an email that another account of the tenant holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from jitprov.core.identity import RULE_SOURCE_PREFIX, Account, PendingGrant, RoleGrant
from jitprov.core.mapping.result import MappedIdentity, PolicySettings, TraceEntry

PROFILE_SOURCE_PREFIX = "rule:profile."
LOGIN_OWNED_PROFILE = "rule:"


@dataclass(frozen=True, slots=True)
class Changes:
    """What a decision changes on an account. Empty on every side means nothing to write."""

    profile: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    groups_added: frozenset[str] = frozenset()
    groups_removed: frozenset[str] = frozenset()
    grants_added: frozenset[RoleGrant] = frozenset()
    grants_revoked: frozenset[RoleGrant] = frozenset()
    pending_added: frozenset[PendingGrant] = frozenset()
    pending_withdrawn: frozenset[PendingGrant] = frozenset()

    @property
    def is_empty(self) -> bool:
        return not (self.profile or self.groups_added or self.groups_removed
                    or self.grants_added or self.grants_revoked
                    or self.pending_added or self.pending_withdrawn)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary for the audit log (before/after per field, sorted lists)."""
        out: dict[str, object] = {}
        if self.profile:
            out["profile"] = {k: {"before": b, "after": a}
                              for k, (b, a) in sorted(self.profile.items())}
        for name, grants in (("grants_added", self.grants_added),
                             ("grants_revoked", self.grants_revoked)):
            if grants:
                out[name] = [{"role": g.role, "source": g.source} for g in sorted(grants)]
        for name, pend in (("pending_added", self.pending_added),
                           ("pending_withdrawn", self.pending_withdrawn)):
            if pend:
                out[name] = [{"role": p.role, "source": p.source} for p in sorted(pend)]
        if self.groups_added:
            out["groups_added"] = sorted(self.groups_added)
        if self.groups_removed:
            out["groups_removed"] = sorted(self.groups_removed)
        return out


@dataclass(frozen=True, slots=True)
class Create:
    changes: Changes
    trace: tuple[TraceEntry, ...] = ()
    kind: Literal["create"] = "create"


@dataclass(frozen=True, slots=True)
class Update:
    account_id: str
    changes: Changes
    trace: tuple[TraceEntry, ...] = ()
    kind: Literal["update"] = "update"


@dataclass(frozen=True, slots=True)
class Link:
    """Attach this identity to an existing account, then apply ``changes`` to it."""

    account_id: str
    matched_by: Literal["email", "external_id"]
    changes: Changes
    target: Account
    trace: tuple[TraceEntry, ...] = ()
    kind: Literal["link"] = "link"


@dataclass(frozen=True, slots=True)
class Deny:
    """Refuse the login. ``code`` is stable (for error pages and metrics), ``reason`` human."""

    code: str
    reason: str
    rule: str | None = None
    account_id: str | None = None
    trace: tuple[TraceEntry, ...] = ()
    kind: Literal["deny"] = "deny"


@dataclass(frozen=True, slots=True)
class Pending:
    """The login waits for an admin: a link to ``account_id`` was queued."""

    account_id: str
    reason: str
    trace: tuple[TraceEntry, ...] = ()
    kind: Literal["pending"] = "pending"


@dataclass(frozen=True, slots=True)
class NoChange:
    account_id: str
    trace: tuple[TraceEntry, ...] = ()
    kind: Literal["no_change"] = "no_change"


Decision = Create | Update | Link | Deny | Pending | NoChange


@dataclass(frozen=True, slots=True)
class LinkCandidate:
    """An existing account the identity might belong to, and how it was found."""

    account: Account
    matched_by: Literal["email", "external_id"]


def decide(existing: Account | None, mapped: MappedIdentity, policy: PolicySettings,
           candidates: Sequence[LinkCandidate] = (), *, owner: str | None = None,
           now: datetime | None = None) -> Decision:
    """Decide what this login does.

    ``candidates`` are other accounts of the tenant found by the identity's email or external
    id (linking at a first login; an email a later login must not take). ``owner`` names the
    connection whose rule grants this login manages (``rule:<owner>/...``); without it every
    rule grant is managed. ``now`` is the login's time: grants expired by then are not held
    (without it, the caller has left expired grants out of the accounts already).
    """
    trace = mapped.trace
    if existing is not None and existing.status != "active":
        return Deny("account_inactive", f"account is {existing.status}",
                    account_id=existing.id, trace=trace)
    if mapped.denials:
        first = mapped.denials[0]
        return Deny("denied_by_rule", first.reason, rule=first.rule,
                    account_id=existing.id if existing else None, trace=trace)
    if existing is not None:
        if policy.on_login == "create_only":
            note = TraceEntry("note", "on_login", "create_only",
                              "on_login is create_only: nothing synced")
            return NoChange(existing.id, (*trace, note))
        changes, notes = _sync(existing, mapped, policy, owner, email_taken=any(
            c.matched_by == "email" and c.account.id != existing.id for c in candidates),
            now=now)
        trace = trace + notes
        if changes.is_empty:
            return NoChange(existing.id, trace)
        return Update(existing.id, changes, trace)
    return _first_login(mapped, policy, candidates, trace, owner, now)


def _first_login(mapped: MappedIdentity, policy: PolicySettings,
                 candidates: Sequence[LinkCandidate], trace: tuple[TraceEntry, ...],
                 owner: str | None, now: datetime | None) -> Decision:
    by_external_id = [c for c in candidates if c.matched_by == "external_id"]
    if len(by_external_id) == 1:
        target = by_external_id[0].account
        refused = _refuse_link_target(target, trace)
        if refused is not None:
            return refused
        changes, notes = _sync(target, mapped, policy, owner, now=now)
        note = TraceEntry("linking", "external_id", "linked",
                          "account provisioned for this connection with this subject as its "
                          "external id")
        return Link(target.id, "external_id", changes, target, (*trace, note, *notes))
    by_email = [c for c in candidates if c.matched_by == "email"]
    if by_email:
        return _link_by_email(mapped, policy, [c.account for c in by_email], trace, owner, now)
    empty = Account(id="", tenant="")
    changes, _ = _sync(empty, mapped, policy, owner)
    return Create(changes, trace)


def _link_by_email(mapped: MappedIdentity, policy: PolicySettings, matches: list[Account],
                   trace: tuple[TraceEntry, ...], owner: str | None,
                   now: datetime | None) -> Decision:
    mode = policy.link_by_email
    if mode == "never":
        return Deny("email_in_use", "an account with this email already exists and the "
                    "connection does not link accounts by email (linking.by_email: never)",
                    trace=(*trace, TraceEntry("linking", "by_email", "denied", "never")))
    if len(matches) != 1:
        return Deny("email_ambiguous", "several accounts have this email; an admin must link "
                    "the identity", trace=trace)
    target = matches[0]
    refused = _refuse_link_target(target, trace)
    if refused is not None:
        return refused
    # before ``pending`` too: an admin cannot tell whether the person holds the mailbox, so a
    # link an admin approves must rest on an email the IdP verified (else anyone at any IdP of
    # the tenant could queue a link to a victim's account by asserting their email)
    if not mapped.email_verified:
        return Deny("email_unverified", "the identity provider did not assert this email as "
                    "verified, so it cannot be linked to the existing account", trace=trace)
    if mode == "pending":
        return Pending(target.id, "the link to the account with this email awaits an admin",
                       (*trace, TraceEntry("linking", "by_email", "pending")))
    changes, notes = _sync(target, mapped, policy, owner, now=now)
    note = TraceEntry("linking", "by_email", "linked", "verified email, exactly one account")
    return Link(target.id, "email", changes, target, (*trace, note, *notes))


def _refuse_link_target(target: Account, trace: tuple[TraceEntry, ...]) -> Deny | None:
    """Admin, break-glass and service accounts are never linked; inactive ones never revived."""
    if target.kind != "user":
        return Deny("link_refused", f"an account of kind {target.kind} is never linked to a "
                    "login identity", account_id=target.id, trace=trace)
    if target.status != "active":
        return Deny("account_inactive", f"account is {target.status}",
                    account_id=target.id, trace=trace)
    return None


def _sync(account: Account, mapped: MappedIdentity, policy: PolicySettings,
          owner: str | None, *, email_taken: bool = False, now: datetime | None = None
          ) -> tuple[Changes, tuple[TraceEntry, ...]]:
    """The changes that bring ``account`` in line with ``mapped`` (see the module's
    semantics). ``now``: grants expired by then are not held (an expired row whose role and
    source a rule grants again is replaced: revoked and added)."""
    owned = RULE_SOURCE_PREFIX if owner is None else f"{RULE_SOURCE_PREFIX}{owner}/"
    notes: list[TraceEntry] = []
    profile: dict[str, tuple[str | None, str]] = {}
    for name, value in mapped.profile.items():
        before = account.profile.get(name)
        source = account.profile_sources.get(name)
        if before == value:
            continue
        if name == "email" and email_taken:
            notes.append(TraceEntry("profile", "profile.email", "kept",
                                    "the new email belongs to another account of the tenant"))
            continue
        if before is not None and source is not None and not source.startswith(
                LOGIN_OWNED_PROFILE):
            notes.append(TraceEntry("profile", f"profile.{name}", "kept",
                                    f"set by {source}; logins do not overwrite it"))
            continue
        profile[name] = (before, value)

    revoke_allowed = mapped.groups is not None or policy.groups_missing == "revoke"
    new_groups = (mapped.groups or frozenset()) if policy.mirrors_groups else account.groups
    groups_added = new_groups - account.groups
    groups_removed = (account.groups - new_groups) if revoke_allowed else frozenset()

    blocked = account.blocked
    held = account.grants if now is None else frozenset(
        g for g in account.grants if g.active_at(now))
    expired = {(g.role, g.source): g for g in account.grants - held}
    wanted = {RoleGrant(g.role, g.source) for g in mapped.grants if g.role not in blocked}
    refused = sorted({g.role for g in mapped.grants if g.role in blocked}
                     | {p.role for p in mapped.pending if p.role in blocked})
    if refused:
        notes.append(TraceEntry("note", "override", "blocked",
                                "blocked for this account by an admin", roles=tuple(refused)))
    held_by_rule = {g for g in held if g.source.startswith(owned)}
    held_keys = {(g.role, g.source) for g in held}
    grants_added = frozenset(g for g in wanted if (g.role, g.source) not in held_keys)
    wanted_keys = {(g.role, g.source) for g in wanted}
    stale = frozenset(g for g in held_by_rule if (g.role, g.source) not in wanted_keys)
    kept_if_missing = _reads_groups(policy, owned)
    grants_revoked = stale if revoke_allowed else frozenset(
        g for g in stale if g.role in blocked or not kept_if_missing(g.source))
    if stale - grants_revoked:
        notes.append(TraceEntry("note", "groups_missing", "kept",
                                "groups claim absent or empty: rule-granted roles kept",
                                roles=tuple(sorted(g.role for g in stale - grants_revoked))))
    for g in sorted(grants_revoked):
        why = "blocked for this account by an admin" if g.role in blocked \
            else "rule no longer matches"
        notes.append(TraceEntry("grant", g.source.removeprefix("rule:"), "revoked", why,
                                roles=(g.role,)))
    # an expired row under a key granted again is replaced (the key is unique in the store)
    grants_revoked |= frozenset(expired[(g.role, g.source)] for g in grants_added
                                if (g.role, g.source) in expired)

    revoked_keys = {(g.role, g.source) for g in grants_revoked}
    held_roles = {g.role for g in held if (g.role, g.source) not in revoked_keys} | {
        g.role for g in grants_added}
    wanted_pending = {PendingGrant(p.role, p.source) for p in mapped.pending
                      if p.role not in blocked}
    pending_added = frozenset(p for p in wanted_pending
                              if p not in account.pending and p.role not in held_roles)
    stale_pending = frozenset(p for p in account.pending
                              if p.source.startswith(owned) and p not in wanted_pending)
    pending_withdrawn = stale_pending if revoke_allowed else frozenset(
        p for p in stale_pending if p.role in blocked or not kept_if_missing(p.source))

    changes = Changes(profile=profile, groups_added=frozenset(groups_added),
                      groups_removed=frozenset(groups_removed), grants_added=grants_added,
                      grants_revoked=grants_revoked, pending_added=pending_added,
                      pending_withdrawn=pending_withdrawn)
    return changes, tuple(notes)


def _reads_groups(policy: PolicySettings, owned: str) -> Callable[[str], bool]:
    """Whether a rule grant of ``source`` is one an absent groups claim protects: its rule may
    read ``groups``. A rule on other claims only (``scim_groups``, ``department``) follows its
    rule whatever the groups claim does."""
    reading = policy.rules_reading_groups
    if reading is None:
        return lambda source: True

    def reads(source: str) -> bool:
        return source.removeprefix(RULE_SOURCE_PREFIX).rpartition("/")[2] in reading

    return reads


def apply_changes(account: Account, changes: Changes) -> Account:
    """The account after ``changes``: what the store writes, as a value (tests, dry runs)."""
    profile = dict(account.profile)
    sources = dict(account.profile_sources)
    for name, (_, after) in changes.profile.items():
        profile[name] = after
        sources[name] = f"{PROFILE_SOURCE_PREFIX}{name}"
    revoked = {(g.role, g.source) for g in changes.grants_revoked}
    grants = frozenset(g for g in account.grants if (g.role, g.source) not in revoked)
    return Account(
        id=account.id, tenant=account.tenant, status=account.status, kind=account.kind,
        profile=profile, profile_sources=sources,
        groups=(account.groups | changes.groups_added) - changes.groups_removed,
        grants=grants | changes.grants_added,
        pending=(account.pending | changes.pending_added) - changes.pending_withdrawn,
        provisioned_by=account.provisioned_by, external_id=account.external_id,
        blocked=account.blocked)


def reevaluate_grants(account: Account, mapped: MappedIdentity, policy: PolicySettings,
                      owner: str, *, now: datetime | None = None) -> Changes:
    """The rule grants (and approval requests) of ``owner``'s connection that ``mapped`` (its
    identity's recorded claims plus the current ``scim_groups``) gives ``account`` now,
    without a login: exactly the grant and pending part of what :func:`decide` would do at
    that identity's next login, never a profile or mirrored-group change.

    Never creates, links or denies: when a deny rule matches, nothing changes (as at a login,
    which refuses and writes no grant; the refusal waits for the next login). A policy that
    syncs nothing after the first login (``on_login: create_only``) gets no change either. An
    account that is not active is re-evaluated all the same (a login would refuse it first):
    its grants then match its membership the day it is reactivated, and the admin views never
    list a role it lost."""
    if mapped.denials or policy.on_login == "create_only":
        return Changes()
    changes, _ = _sync(account, mapped, policy, owner, now=now)
    return Changes(grants_added=changes.grants_added, grants_revoked=changes.grants_revoked,
                   pending_added=changes.pending_added,
                   pending_withdrawn=changes.pending_withdrawn)
