"""Small frozen records the repositories return besides core values. Copies, never rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from jitprov.core.identity import Account


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: int
    slug: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """A connection as configured. ``secrets`` is still encrypted (Fernet token) here."""

    id: int
    tenant_id: int
    tenant_slug: str
    slug: str
    kind: str
    config: Mapping[str, object]
    secrets: str | None
    mapping: str
    mapping_source: str
    enabled: bool
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IdentityLink:
    connection: str
    subject: str
    issuer: str


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account with what the API and console show about it."""

    account: Account
    tenant_slug: str
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    identities: tuple[IdentityLink, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    account_id: str
    connection_slug: str | None
    subject: str | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SessionState(SessionRecord):
    """A session as ``current_session`` reads it: one indexed read with what the idle lock,
    the device and the offline re-check need."""

    device_id: int | None = None
    method: str | None = None
    offline: bool = False
    last_seen_at: datetime | None = None
    idle_seconds: int | None = None
    #: the IdP of the session's connection answered after this (offline) session started
    idp_back: bool = False


@dataclass(frozen=True, slots=True)
class EndedSession:
    """A session just revoked by its own sign-out, with what RP-initiated logout needs: its
    connection (slug and kind) and the ID token it was opened with, still sealed."""

    account_id: str
    connection_slug: str | None
    connection_kind: str | None
    id_token_sealed: str | None
    #: sso | passkey | offline | break_glass: only an ``sso`` session has an IdP session
    method: str | None = None
    #: what a SAML LogoutRequest names: the NameID and the SessionIndex of the sign-in
    subject: str | None = None
    idp_session_id: str | None = None

    def __repr__(self) -> str:  # the sealed token stays out of logs too
        return (f"EndedSession(account_id={self.account_id!r}, "
                f"connection_slug={self.connection_slug!r})")


@dataclass(frozen=True, slots=True)
class IdpLogoutMatch:
    """What an IdP's logout found: ``known`` says a session (active or not, kept until the
    purge) ever carried that session id or subject at the connection; ``revoked`` lists
    (account id, sessions revoked now) per account, in account id order."""

    known: bool
    revoked: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class LoginRequestRecord:
    connection_id: int
    return_to: str
    data: Mapping[str, object]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PendingGrantRecord:
    """A role waiting for an approver (``approval: required``)."""

    id: int
    account_id: str
    email: str | None
    role: str
    source: str
    status: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookEndpointRecord:
    id: int
    tenant_id: int
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery claimed for one attempt, with what sending it needs."""

    id: int
    outbox_id: int
    url: str
    sealed_secret: str
    event_type: str
    payload: Mapping[str, object]
    attempts: int
    created_at: datetime
    claim: str


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    outbox_id: int
    endpoint_id: int
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class BreakGlassRecord:
    id: int
    tenant_id: int
    roles: tuple[str, ...]
    reason: str
    valid_minutes: int
    requested_by: str
    requested_at: datetime
    approved_by: str | None
    expires_at: datetime | None
    used_at: datetime | None
    account_id: str | None
    status: str


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A role grant of an account, with its provenance and expiry."""

    account_id: str
    email: str | None
    role: str
    source: str  # rule:<connection>/<id> | approval | scim | manual | break_glass
    granted_at: datetime
    granted_by: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class RoleBlockRecord:
    """An admin override: ``role`` stays off the account whatever the rules say."""

    account_id: str
    email: str | None
    role: str
    blocked_at: datetime
    blocked_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class DomainRecord:
    """A tenant's verified email domain (lowercase ASCII form) and the connection its people
    sign in through."""

    domain: str
    tenant_slug: str
    connection_slug: str
    connection_kind: str
    connection_enabled: bool
    verified_by: str
    verified_at: datetime
