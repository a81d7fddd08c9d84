"""What an IdP asserted, and what jitprov holds: frozen values shared by every layer.

Every protocol adapter (OIDC, SAML, the dev mock) ends in one :class:`ExternalIdentity`;
the mapping never sees XML or JWTs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

AccountStatus = Literal["active", "suspended", "deactivated"]
AccountKind = Literal["user", "admin", "break_glass", "service"]
ProvisionedBy = Literal["jit", "scim", "import", "manual"]

#: Grant sources that rules never touch (see ``RoleGrant.source``).
PROTECTED_SOURCES = frozenset({"scim", "manual", "approval"})
RULE_SOURCE_PREFIX = "rule:"

#: What a role name may be: roles are free-form, but a name outside this set is a typo or an
#: injection attempt, never a role (forward-auth headers and tokens carry it verbatim). The
#: one definition for the mapping file (``core/mapping/model.py``) and the admin services.
ROLE_NAME_CHARS = r"[A-Za-z0-9._:-]"
MAX_ROLE_NAME = 64
ROLE_NAME = re.compile(rf"{ROLE_NAME_CHARS}{{1,{MAX_ROLE_NAME}}}")


def valid_role_name(role: str) -> bool:
    return ROLE_NAME.fullmatch(role) is not None


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
    #: the IdP's own id of the sign-in session (OIDC ``sid``, SAML ``SessionIndex``): what its
    #: logout names; recorded on the session, never a claim the mapping sees
    idp_session_id: str | None = None


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

    def active_at(self, now: datetime) -> bool:
        """False from ``expires_at`` on: an expired grant counts nowhere, even before the
        sweep deletes its row."""
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True, order=True)
class PendingGrant:
    """A role a rule wants to grant that waits for an approver (``approval: required``)."""

    role: str
    source: str


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the core sees it: a copy, never a live database row.

    ``groups`` are the IdP groups mirrored by login; ``profile_sources`` records, per profile
    field, who set it (``rule:profile.<field>``, ``scim`` or ``manual``). ``grants`` are the
    stored grants, expired ones included until the sweep removes them: read them through
    :meth:`at`. ``blocked`` are the roles an admin keeps off this account whatever the rules
    say (an override, lifted only by an admin).
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
    blocked: frozenset[str] = frozenset()

    @property
    def email(self) -> str | None:
        return self.profile.get("email")

    @property
    def roles(self) -> frozenset[str]:
        """The roles of ``grants`` as held: on a value from :meth:`at`, the roles in force."""
        return frozenset(g.role for g in self.grants)

    def at(self, now: datetime) -> Account:
        """This account as it stands at ``now``: grants expired by then, and grants of a
        blocked role, left out. A block wins at read time, so a grant that a concurrent
        writer stored just before the block committed is never held (the next login or
        re-evaluation deletes it); ``blocked`` comes with the grants in the same read."""
        live = frozenset(g for g in self.grants
                         if g.active_at(now) and g.role not in self.blocked)
        return self if live == self.grants else replace(self, grants=live)
