"""Impact preview: what a proposed mapping would change for the people who recently signed in.

:func:`compare_policies` replays recorded claims (the redacted claims of each identity's most
recent login) through the policy in force and the proposed one, and reports, per person, the
roles gained and lost (granted outright or pending approval), the profile fields whose mapped
value changes, and whether the person becomes denied or stops being denied.

It compares what the two *mappings* make of the same claims; it does not read accounts. So a
role the person also holds manually, by SCIM or by approval is still reported as lost by the
mapping (the account would keep it), and a profile field set by SCIM or an admin is reported
although a login would not overwrite it. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from jitprov.core.mapping.policy import Policy
from jitprov.core.mapping.result import Denial, MappedIdentity, RuleGrantIntent


@dataclass(frozen=True, slots=True)
class RecordedLogin:
    """The claims of one identity's most recent login, as recorded (secrets redacted)."""

    subject: str
    account_id: str
    claims: Mapping[str, object]
    recorded_at: datetime
    #: who this is for a human: the account's email, else its name, else the subject
    label: str = ""


@dataclass(frozen=True, slots=True)
class ProfileChange:
    field: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class PersonImpact:
    """What the proposed mapping changes for one person. ``denied_before``/``denied_after`` are
    the reason of the first deny rule that matches (``None``: not denied)."""

    subject: str
    account_id: str
    label: str
    recorded_at: datetime
    roles_gained: tuple[str, ...] = ()
    roles_lost: tuple[str, ...] = ()
    pending_gained: tuple[str, ...] = ()
    pending_lost: tuple[str, ...] = ()
    profile: tuple[ProfileChange, ...] = ()
    denied_before: str | None = None
    denied_after: str | None = None
    #: the rules behind the roles gained and the denial, e.g. ``{"nurse": "nurses"}``
    granted_by: Mapping[str, str] = field(default_factory=dict)
    denied_by: str | None = None

    @property
    def newly_denied(self) -> bool:
        return self.denied_before is None and self.denied_after is not None

    @property
    def undenied(self) -> bool:
        return self.denied_before is not None and self.denied_after is None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (API, CLI ``--json``, the console's fetch)."""
        out: dict[str, object] = {
            "subject": self.subject, "account_id": self.account_id, "label": self.label,
            "recorded_at": self.recorded_at.isoformat(),
        }
        for name in ("roles_gained", "roles_lost", "pending_gained", "pending_lost"):
            value = getattr(self, name)
            if value:
                out[name] = list(value)
        if self.profile:
            out["profile"] = [{"field": c.field, "before": c.before, "after": c.after}
                              for c in self.profile]
        if self.newly_denied:
            out["newly_denied"] = {"reason": self.denied_after, "rule": self.denied_by}
        if self.undenied:
            out["undenied"] = {"was": self.denied_before}
        if self.granted_by:
            out["granted_by"] = dict(self.granted_by)
        return out


@dataclass(frozen=True, slots=True)
class ImpactReport:
    """Who the proposed mapping changes, among ``examined`` recorded logins (only changed
    people are in ``people``, in the order of the recorded logins: most recent first)."""

    examined: int
    people: tuple[PersonImpact, ...] = ()

    @property
    def newly_denied(self) -> tuple[PersonImpact, ...]:
        return tuple(p for p in self.people if p.newly_denied)

    @property
    def undenied(self) -> tuple[PersonImpact, ...]:
        return tuple(p for p in self.people if p.undenied)

    def as_dict(self) -> dict[str, object]:
        return {
            "examined": self.examined, "changed": len(self.people),
            "newly_denied": len(self.newly_denied), "undenied": len(self.undenied),
            "roles_gained": sum(len(p.roles_gained) for p in self.people),
            "roles_lost": sum(len(p.roles_lost) for p in self.people),
            "people": [p.as_dict() for p in self.people],
        }


def compare_policies(current: Policy, proposed: Policy,
                     logins: Iterable[RecordedLogin]) -> ImpactReport:
    """Map every recorded login with both policies and keep the people whose outcome differs.

    A denied identity holds no role under that policy: a person who becomes denied is reported
    as newly denied (not as losing every role), one who stops being denied as undenied, with
    the roles the proposed mapping then grants as gained.
    """
    examined = 0
    people: list[PersonImpact] = []
    for login in logins:
        examined += 1
        impact = _compare_one(current.map(login.claims), proposed.map(login.claims), login)
        if impact is not None:
            people.append(impact)
    return ImpactReport(examined=examined, people=tuple(people))


def _compare_one(before: MappedIdentity, after: MappedIdentity,
                 login: RecordedLogin) -> PersonImpact | None:
    denied_before = _first(before.denials)
    denied_after = _first(after.denials)
    roles_before, roles_after = _roles(before.grants), _roles(after.grants)
    pending_before, pending_after = _roles(before.pending), _roles(after.pending)
    if denied_after is not None:  # deny wins: nothing is granted, nothing to list
        roles_after, pending_after = roles_before, pending_before
    gained = sorted(set(roles_after) - set(roles_before))
    lost = sorted(set(roles_before) - set(roles_after))
    pend_gained = sorted(set(pending_after) - set(pending_before))
    pend_lost = sorted(set(pending_before) - set(pending_after))
    profile = tuple(
        ProfileChange(name, before.profile.get(name), after.profile.get(name))
        for name in sorted(before.profile.keys() | after.profile.keys())
        if before.profile.get(name) != after.profile.get(name))
    deny_changed = (denied_before is None) != (denied_after is None)
    if not (gained or lost or pend_gained or pend_lost or profile or deny_changed):
        return None
    return PersonImpact(
        subject=login.subject, account_id=login.account_id,
        label=login.label or login.subject, recorded_at=login.recorded_at,
        roles_gained=tuple(gained), roles_lost=tuple(lost),
        pending_gained=tuple(pend_gained), pending_lost=tuple(pend_lost), profile=profile,
        denied_before=None if denied_before is None else denied_before.reason,
        denied_after=None if denied_after is None else denied_after.reason,
        granted_by={role: roles_after[role] for role in gained},
        denied_by=None if denied_after is None else denied_after.rule)


def _first(denials: tuple[Denial, ...]) -> Denial | None:
    return denials[0] if denials else None


def _roles(intents: frozenset[RuleGrantIntent]) -> dict[str, str]:
    """Role -> the rule id that grants it (the first in sorted order when several do)."""
    out: dict[str, str] = {}
    for intent in sorted(intents, key=lambda i: (i.role, i.source)):
        out.setdefault(intent.role, intent.source.removeprefix("rule:"))
    return out
