"""What a compiled mapping policy makes of one set of claims: values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

OnLogin = Literal["sync", "create_only"]
LinkByEmail = Literal["never", "verified_email", "pending"]
GroupsMissing = Literal["keep", "revoke"]

TraceKind = Literal["profile", "groups", "default", "grant", "approval", "deny", "linking", "note"]


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One step of a rule trace: which rule (or field) did what, and why.

    ``rule`` is the rule id (``default``, ``nurse-by-group``, ``r2``...) or ``profile.<field>``;
    ``outcome`` is a short machine word (``matched``, ``not_matched``, ``error``, ``set``,
    ``granted``, ``pending``, ``denied``, ``revoked``...), ``detail`` a human sentence.
    """

    kind: TraceKind
    rule: str
    outcome: str
    detail: str = ""
    line: int | None = None
    roles: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "rule": self.rule, "outcome": self.outcome}
        if self.detail:
            out["detail"] = self.detail
        if self.line is not None:
            out["line"] = self.line
        if self.roles:
            out["roles"] = list(self.roles)
        return out


@dataclass(frozen=True, slots=True)
class RuleGrantIntent:
    """A role a rule wants the account to hold: ``source`` is ``rule:<id>``."""

    role: str
    source: str


@dataclass(frozen=True, slots=True)
class Denial:
    rule: str
    reason: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The non-rule knobs of a mapping file."""

    on_login: OnLogin = "sync"
    link_by_email: LinkByEmail = "never"
    groups_missing: GroupsMissing = "keep"
    #: the file has a ``groups:`` line: the IdP groups are mirrored on the account (without it
    #: the ``groups`` claim is still read, to tell a login whose groups claim is missing)
    mirrors_groups: bool = False
    #: ids of the grant rules whose ``when`` may read the IdP's ``groups`` claim: only their
    #: grants are kept when that claim is absent (``groups_missing: keep``); ``None``: every
    #: rule's (a policy built without knowing)
    rules_reading_groups: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class MappedIdentity:
    """The claims after the mapping: what the account should look like, and why.

    ``profile`` holds only fields that evaluated to a value (absent claims are left out, so a
    missing claim never clears a field). ``groups`` is ``None`` when the groups claim was absent
    or empty (and the policy must then decide whether rule grants survive). ``email_verified`` is
    ``True`` only when the IdP asserted it with a JSON ``true``.
    """

    profile: dict[str, str] = field(default_factory=dict)
    groups: frozenset[str] | None = None
    grants: frozenset[RuleGrantIntent] = frozenset()
    pending: frozenset[RuleGrantIntent] = frozenset()
    denials: tuple[Denial, ...] = ()
    email_verified: bool = False
    trace: tuple[TraceEntry, ...] = ()

    def scoped(self, owner: str) -> MappedIdentity:
        """A copy whose rule sources name their connection: ``rule:<owner>/<id>``. An account
        linked to two connections then keeps each connection's rule grants apart."""

        def scope(intents: frozenset[RuleGrantIntent]) -> frozenset[RuleGrantIntent]:
            return frozenset(RuleGrantIntent(i.role, scoped_source(i.source, owner))
                             for i in intents)

        return replace(self, grants=scope(self.grants), pending=scope(self.pending))


def scoped_source(source: str, owner: str) -> str:
    """``rule:<id>`` -> ``rule:<owner>/<id>``; other sources unchanged."""
    prefix = "rule:"
    return f"{prefix}{owner}/{source[len(prefix):]}" if source.startswith(prefix) else source
