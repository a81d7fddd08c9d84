"""A compiled mapping policy, and what it makes of one login's claims.

:meth:`Policy.map` is pure and total: for any claims it returns a :class:`MappedIdentity`, never
raises. Expressions see the claims exactly as given (a plain-JSON copy of them), nothing added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jitprov.core.mapping.expressions import (
    EvaluationError,
    Expression,
    is_truthy,
    prepare_claims,
)
from jitprov.core.mapping.result import (
    Denial,
    MappedIdentity,
    PolicySettings,
    RuleGrantIntent,
    TraceEntry,
    TraceKind,
)

DEFAULT_RULE_ID = "default"  # reserved: the source of default roles is ``rule:default``


@dataclass(frozen=True, slots=True)
class CompiledField:
    """One named expression (``profile.<field>``, ``groups``, ``linking.email_verified``)."""

    name: str
    expression: Expression
    line: int | None = None


@dataclass(frozen=True, slots=True)
class CompiledGrantRule:
    """``roles.rules[]`` compiled: ``when`` is ``None`` for a rule that always matches."""

    id: str
    roles: tuple[str, ...]
    when: Expression | None
    approval_required: bool = False
    line: int | None = None


@dataclass(frozen=True, slots=True)
class CompiledDenyRule:
    """``deny[]`` compiled."""

    id: str
    when: Expression
    reason: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A mapping file, validated and compiled; built by :func:`load_policy`.

    ``source`` names the file (or connection); ``fingerprint`` is the sha256 hex digest of the
    file's text, so two policies with the same fingerprint behave the same.
    """

    settings: PolicySettings
    source: str
    fingerprint: str
    email_verified: CompiledField
    profile: tuple[CompiledField, ...] = ()
    groups: CompiledField | None = None
    default_roles: tuple[str, ...] = ()
    default_line: int | None = None
    rules: tuple[CompiledGrantRule, ...] = ()
    deny: tuple[CompiledDenyRule, ...] = ()

    @property
    def summary(self) -> str:
        """One line for ``mapping check``: what the policy holds, e.g. ``3 profile fields, ...``."""
        defaults = ", ".join(self.default_roles) or "none"
        return (
            f"{_count(len(self.profile), 'profile field')}, "
            f"{_count(len(self.rules), 'grant rule')}, {_count(len(self.deny), 'deny rule')}, "
            f"default roles: {defaults}"
        )

    def claim_readers(self) -> dict[str, tuple[str, ...]]:
        """Which parts of the mapping read which top-level claim, e.g. ``{"groups":
        ("roles rule nurses (line 12)",)}``: what a scope check or a dry run names when the
        claim is missing. The implicit ``groups`` field (no ``groups:`` line) counts only
        where a rule reads the claim; an expression that reads the whole document names no
        claim."""
        readers: dict[str, list[str]] = {}

        def note(expression: Expression | None, label: str, line: int | None) -> None:
            claims = expression.top_level_claims() if expression is not None else None
            for claim in sorted(claims or ()):
                readers.setdefault(claim, []).append(
                    f"{label} (line {line})" if line is not None else label)

        for field in self.profile:
            note(field.expression, f"profile.{field.name}", field.line)
        if self.groups is not None and self.groups.line is not None:
            note(self.groups.expression, "groups", self.groups.line)
        note(self.email_verified.expression, "linking.email_verified",
             self.email_verified.line)
        for rule in self.deny:
            note(rule.when, f"deny rule {rule.id}", rule.line)
        for grant in self.rules:
            note(grant.when, f"roles rule {grant.id}", grant.line)
        return {claim: tuple(labels) for claim, labels in sorted(readers.items())}

    def map(self, claims: Mapping[str, object]) -> MappedIdentity:
        """Map one login's claims; never raises.

        Evaluation order (and trace order): profile fields, groups, ``email_verified``, every
        deny rule, default roles, every grant rule. A deny rule that matches, or that cannot be
        evaluated (fail closed), adds a :class:`Denial`; with any denial, ``grants`` and
        ``pending`` are empty, and the trace still shows which rules matched. Claims that are not
        JSON or are too large are refused with a denial from rule ``claims``.
        """
        trace: list[TraceEntry] = []
        document = prepare_claims(claims)
        if isinstance(document, EvaluationError):
            trace.append(TraceEntry("note", "claims", "error", document.message))
            denial = Denial("claims", f"claims refused: {document.message}")
            return MappedIdentity(denials=(denial,), trace=tuple(trace))

        profile = self._map_profile(document, trace)
        groups = self._map_groups(document, trace)
        email_verified = self._map_email_verified(document, trace)
        denials = self._map_denials(document, trace)
        grants, pending = self._map_roles(document, trace, denied=bool(denials))
        return MappedIdentity(
            profile=profile,
            groups=groups,
            grants=grants,
            pending=pending,
            denials=denials,
            email_verified=email_verified,
            trace=tuple(trace),
        )

    def _map_profile(self, document: object, trace: list[TraceEntry]) -> dict[str, str]:
        profile: dict[str, str] = {}
        for field in self.profile:
            rule = f"profile.{field.name}"
            value = field.expression.evaluate(document)
            if isinstance(value, EvaluationError):
                trace.append(TraceEntry("profile", rule, "error", value.message, field.line))
                continue
            text, problem = _profile_text(value)
            if problem is not None:
                trace.append(TraceEntry("profile", rule, "error", problem, field.line))
            elif text is None:
                detail = "no value: the field is left as it is"
                trace.append(TraceEntry("profile", rule, "absent", detail, field.line))
            else:
                profile[field.name] = text
                trace.append(TraceEntry("profile", rule, "set", "", field.line))
        return profile

    def _map_groups(
        self, document: object, trace: list[TraceEntry]
    ) -> frozenset[str] | None:
        if self.groups is None:
            return None
        line = self.groups.line
        value = self.groups.expression.evaluate(document)
        if isinstance(value, EvaluationError):
            trace.append(TraceEntry("groups", "groups", "error", value.message, line))
            return None
        if isinstance(value, str):
            items: list[object] = [value]
        elif isinstance(value, list):
            items = value
        elif value is None:
            items = []
        else:
            detail = f"expected a list of strings or a string, got {_json_type(value)}"
            trace.append(TraceEntry("groups", "groups", "error", detail, line))
            return None
        kept = frozenset(item for item in items if isinstance(item, str) and item)
        dropped = sum(1 for item in items if not (isinstance(item, str) and item))
        if dropped:
            detail = f"dropped {dropped} item(s) that are not non-empty strings"
            trace.append(TraceEntry("note", "groups", "dropped", detail, line))
        if not kept:
            trace.append(TraceEntry("groups", "groups", "absent", "no groups", line))
            return None
        trace.append(TraceEntry("groups", "groups", "set", f"{len(kept)} group(s)", line))
        return kept

    def _map_email_verified(self, document: object, trace: list[TraceEntry]) -> bool:
        field = self.email_verified
        rule = "linking.email_verified"
        value = field.expression.evaluate(document)
        if isinstance(value, EvaluationError):
            trace.append(TraceEntry("linking", rule, "error", value.message, field.line))
            return False
        # Only a JSON true: IdPs that send the string "true" have to be named in a policy flag.
        verified = value is True
        outcome = "verified" if verified else "not_verified"
        detail = "" if verified else f"got {_json_type(value)}, not true"
        trace.append(TraceEntry("linking", rule, outcome, detail, field.line))
        return verified

    def _map_denials(self, document: object, trace: list[TraceEntry]) -> tuple[Denial, ...]:
        denials: list[Denial] = []
        for rule in self.deny:
            value = rule.when.evaluate(document)
            if isinstance(value, EvaluationError):
                # Fail closed: a deny rule we cannot evaluate might have matched.
                reason = f"deny rule {rule.id} could not be evaluated: {value.message}"
                denials.append(Denial(rule.id, reason, rule.line))
                trace.append(TraceEntry("deny", rule.id, "error", reason, rule.line))
            elif is_truthy(value):
                denials.append(Denial(rule.id, rule.reason, rule.line))
                trace.append(TraceEntry("deny", rule.id, "denied", rule.reason, rule.line))
            else:
                trace.append(TraceEntry("deny", rule.id, "not_matched", "", rule.line))
        return tuple(denials)

    def _map_roles(
        self, document: object, trace: list[TraceEntry], *, denied: bool
    ) -> tuple[frozenset[RuleGrantIntent], frozenset[RuleGrantIntent]]:
        grants: set[RuleGrantIntent] = set()
        pending: set[RuleGrantIntent] = set()
        not_granted = "matched, not granted: the login is denied"
        if self.default_roles:
            grants.update(RuleGrantIntent(role, f"rule:{DEFAULT_RULE_ID}") for role in
                          self.default_roles)
            trace.append(TraceEntry(
                "default", DEFAULT_RULE_ID, "matched" if denied else "granted",
                not_granted if denied else "", self.default_line, self.default_roles,
            ))
        for rule in self.rules:
            kind: TraceKind = "approval" if rule.approval_required else "grant"
            value = True if rule.when is None else rule.when.evaluate(document)
            if isinstance(value, EvaluationError):
                trace.append(TraceEntry(kind, rule.id, "error", value.message, rule.line,
                                        rule.roles))
            elif not is_truthy(value):
                trace.append(TraceEntry(kind, rule.id, "not_matched", "", rule.line, rule.roles))
            else:
                intents = {RuleGrantIntent(role, f"rule:{rule.id}") for role in rule.roles}
                (pending if rule.approval_required else grants).update(intents)
                outcome = "pending" if rule.approval_required else "granted"
                trace.append(TraceEntry(
                    kind, rule.id, "matched" if denied else outcome,
                    not_granted if denied else "", rule.line, rule.roles,
                ))
        if denied:
            # Deny wins: no consumer of a denied identity can grant a role by mistake.
            return frozenset(), frozenset()
        return frozenset(grants), frozenset(pending)


def _profile_text(value: object) -> tuple[str | None, str | None]:
    """``(text, problem)`` for a profile value: a scalar is its text, ``None``/empty is absent."""
    if isinstance(value, list):
        if len(value) > 1:
            return None, f"expected one value, got a list of {len(value)}"
        if not value:
            return None, None
        value = value[0]  # a one-element list (as SAML sends attributes) gives its element
    if value is None:
        return None, None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int | float | str):
        return (str(value) or None), None
    return None, f"expected one value, got {_json_type(value)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    return "an object"
