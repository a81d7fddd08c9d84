"""What an IdP asserted, and what jitprov holds: frozen values shared by every layer.

Every protocol adapter (OIDC, SAML, the dev mock) ends in one :class:`ExternalIdentity`;
the mapping never sees XML or JWTs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

AccountStatus = Literal["active", "suspended", "deactivated"]
AccountKind = Literal["user", "admin", "break_glass", "service"]
ProvisionedBy = Literal["jit", "scim", "import", "manual"]

#: Grant sources that rules never touch (see ``RoleGrant.source``).
PROTECTED_SOURCES = frozenset({"scim", "manual", "approval"})
RULE_SOURCE_PREFIX = "rule:"


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """One identity as the IdP asserted it, after the protocol adapter verified it.

    ``claims`` is JSON-like: OIDC claims as sent (ID token merged with userinfo); SAML attributes
    by name (and FriendlyName) as lists of strings.
    """

    issuer: str
    subject: str
    claims: Mapping[str, object] = field(default_factory=dict)
    #: what the adapter noticed and the audit log should say (an IdP quirk, a dropped claim)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class RoleGrant:
    """A role held by an account, with its provenance.

    ``source`` is ``rule:<id>`` (granted by a mapping rule), ``scim``, ``manual`` or ``approval``.
    """

    role: str
    source: str
    expires_at: datetime | None = None

    @property
    def by_rule(self) -> bool:
        return self.source.startswith(RULE_SOURCE_PREFIX)


@dataclass(frozen=True, slots=True, order=True)
class PendingGrant:
    """A role a rule wants to grant that waits for an approver (``approval: required``)."""

    role: str
    source: str


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the core sees it: a copy, never a live database row.

    ``groups`` are the IdP groups mirrored by login; ``profile_sources`` records, per profile
    field, who set it (``rule:profile.<field>``, ``scim`` or ``manual``).
    """

    id: str
    tenant: str
    status: AccountStatus = "active"
    kind: AccountKind = "user"
    profile: Mapping[str, str] = field(default_factory=dict)
    profile_sources: Mapping[str, str] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()
    grants: frozenset[RoleGrant] = frozenset()
    pending: frozenset[PendingGrant] = frozenset()
    provisioned_by: ProvisionedBy = "jit"
    external_id: str | None = None

    @property
    def email(self) -> str | None:
        return self.profile.get("email")

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(g.role for g in self.grants)
