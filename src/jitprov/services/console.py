"""The admin console's use cases: signing admins in and out, and what its pages read.

Two ways in, both ending in an *admin session* (separate from user sessions: its own cookie,
8 hours at most, 30 minutes idle, revocable, stored by SHA-256):

- a one-time **bootstrap link** (``jitprov admin bootstrap``): single use, 15 minutes, only
  its SHA-256 stored; administers one tenant (``--tenant``) or every tenant;
- **SSO**: an account signed in through a connection whose roles include ``jitprov-admin``
  (granted by mapping rules) administers its own tenant only. The account's status and role
  are checked again at every request, so deactivating the account or losing the role ends
  its console access at once.

Writes (deactivation, approvals, passkeys, devices) go through the existing services, so
sessions are revoked and audit and outbox written exactly as from the CLI and the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jitprov.core.audit import AuditEvent, ChainedEvent
from jitprov.core.errors import InvalidInput, JitprovError, NotFound
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.sessions import current_session
from jitprov.store.console import (
    AdminSessionRecord,
    AuditFilter,
    AuditPage,
    GrantRow,
    OpenRequest,
    SessionRow,
    UserPage,
)
from jitprov.store.devices import PasskeyRecord
from jitprov.store.records import AccountView, RoleBlockRecord, TenantRecord
from jitprov.store.unit_of_work import UnitOfWork

ADMIN_ROLE = "jitprov-admin"
BOOTSTRAP_TTL = timedelta(minutes=15)
ADMIN_SESSION_TTL = timedelta(hours=8)
ADMIN_IDLE_TIMEOUT = timedelta(minutes=30)
#: how stale ``last_seen_at`` may get before a request rewrites it (one write a minute at most)
_TOUCH_EVERY = timedelta(minutes=1)
BOOTSTRAP_PREFIX = "jpb_"  # a public prefix, not a secret


class AdminSignInRefused(JitprovError):
    """A bootstrap link that is unknown, spent or expired; an SSO session without the role."""

    code = "admin_sign_in_refused"

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """Who is using the console. ``tenants`` is the tenant slugs it administers; None means
    every tenant (a bootstrap link created without ``--tenant``)."""

    session_id: str  # SHA-256 of the admin cookie
    kind: str  # bootstrap | sso
    account_id: str | None
    display_name: str
    tenants: tuple[str, ...] | None
    csrf_token: str = field(repr=False)
    bootstrap_link_id: int | None = None

    @property
    def actor(self) -> str:
        """The audit actor of what this admin does in the console."""
        if self.kind == "sso":
            return f"admin-console:{self.display_name}:{self.account_id}"
        return f"admin-console:bootstrap-{self.bootstrap_link_id}"

    def may_administer(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants


@dataclass(frozen=True, slots=True)
class BootstrapLink:
    url: str = field(repr=False)  # carries the token: printed once, never logged
    expires_at: datetime
    tenant: str | None


@dataclass(frozen=True, slots=True)
class OpenedSession:
    token: str = field(repr=False)  # the cookie value
    principal: AdminPrincipal
    expires_at: datetime


def csrf_token(key: str, session_id: str) -> str:
    """The CSRF token of an admin session: HMAC-SHA256 of its id under the server's secret
    key. Bound to the session (a token of another session fails), valid on every node that
    shares ``JITPROV_SECRET_KEY``, nothing stored, gone with the session."""
    return hmac.new(key.encode(), b"jitprov-admin-csrf\0" + session_id.encode(),
                    hashlib.sha256).hexdigest()


def sso_continue_token(key: str, user_session_token: str) -> str:
    """The CSRF token of the "continue to the admin console" form, bound to the user session
    that signed in through SSO."""
    return hmac.new(key.encode(), b"jitprov-admin-sso\0" + hash_token(user_session_token)
                    .encode(), hashlib.sha256).hexdigest()


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


# -- signing in -------------------------------------------------------------------------------

def create_bootstrap_link(ctx: ServiceContext, base_url: str, *, tenant: str | None = None,
                          created_by: str = "cli") -> BootstrapLink:
    """A one-time admin link ``{base_url}/admin/bootstrap#<token>``: the token is in the
    fragment, which browsers never send to a server (no access log or proxy sees it); the
    page's script puts it in the sign-in form. Raises NotFound for an unknown tenant."""
    token = BOOTSTRAP_PREFIX + secrets.token_urlsafe(32)
    now = ctx.clock()
    expires_at = now + BOOTSTRAP_TTL
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant) if tenant else None
        link_id = uow.console.links.create(
            token_hash=hash_token(token), tenant_id=ten.id if ten else None,
            created_by=created_by, now=now, expires_at=expires_at)
        if ten is not None:
            uow.audit.append(ten.id, ten.slug, AuditEvent(
                "admin.bootstrap_link_created", created_by,
                {"link": link_id, "expires_at": expires_at.isoformat()}), now)
        uow.commit()
    return BootstrapLink(f"{base_url.rstrip('/')}/admin/bootstrap#{token}", expires_at, tenant)


def open_bootstrap_session(ctx: ServiceContext, token: str, *, csrf_key: str,
                           user_agent: str | None = None,
                           request_id: str | None = None) -> OpenedSession:
    """Spend a bootstrap link and open an admin session. Raises AdminSignInRefused (the
    same answer for unknown, spent and expired links)."""
    token = token.strip()
    if not token.startswith(BOOTSTRAP_PREFIX) or len(token) > 200:
        raise AdminSignInRefused("this admin link is not valid", status=400)
    now = ctx.clock()
    cookie = secrets.token_urlsafe(32)
    session_id = hash_token(cookie)
    with UnitOfWork(ctx.db) as uow:
        spent = uow.console.links.redeem(hash_token(token), now)
        if spent is None:
            raise AdminSignInRefused("this admin link was already used or has expired; "
                                     "run `jitprov admin bootstrap` for a new one")
        name = f"bootstrap link {spent.link_id}"
        uow.console.sessions.create(
            session_id=session_id, kind="bootstrap", account_id=None,
            bootstrap_link_id=spent.link_id, tenant_id=spent.tenant_id, display_name=name,
            user_agent=user_agent, now=now, expires_at=now + ADMIN_SESSION_TTL)
        tenants = [uow.config.tenants.get(spent.tenant_slug)] if spent.tenant_slug \
            else uow.config.tenants.list()
        principal = AdminPrincipal(
            session_id=session_id, kind="bootstrap", account_id=None, display_name=name,
            tenants=(spent.tenant_slug,) if spent.tenant_slug else None,
            csrf_token=csrf_token(csrf_key, session_id), bootstrap_link_id=spent.link_id)
        _audit_sign_in(uow, tenants, principal, now, request_id)
        uow.commit()
    return OpenedSession(cookie, principal, now + ADMIN_SESSION_TTL)


def sso_candidate(ctx: ServiceContext, user_session_token: str | None) -> AccountView | None:
    """The account of a user session (signed in through SSO), or None."""
    signed_in = current_session(ctx, user_session_token)
    return signed_in.view if signed_in else None


def holds_admin_role(view: AccountView, now: datetime) -> bool:
    return view.account.status == "active" and ADMIN_ROLE in view.account.at(now).roles


def open_sso_session(ctx: ServiceContext, user_session_token: str | None, *, csrf_key: str,
                     user_agent: str | None = None,
                     request_id: str | None = None) -> OpenedSession:
    """Open an admin session for the account of a user session, if it holds the
    ``jitprov-admin`` role. Raises AdminSignInRefused (401 without a user session, 403
    without the role)."""
    view = sso_candidate(ctx, user_session_token)
    if view is None:
        raise AdminSignInRefused("sign in through your identity provider first", status=401)
    now = ctx.clock()
    if not holds_admin_role(view, now):
        raise AdminSignInRefused(f"your account does not hold the {ADMIN_ROLE} role")
    cookie = secrets.token_urlsafe(32)
    session_id = hash_token(cookie)
    name = str(view.account.profile.get("email") or view.account.id)
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(view.tenant_slug)
        uow.console.sessions.create(
            session_id=session_id, kind="sso", account_id=view.account.id,
            bootstrap_link_id=None, tenant_id=ten.id, display_name=name,
            user_agent=user_agent, now=now, expires_at=now + ADMIN_SESSION_TTL)
        principal = AdminPrincipal(
            session_id=session_id, kind="sso", account_id=view.account.id, display_name=name,
            tenants=(ten.slug,), csrf_token=csrf_token(csrf_key, session_id))
        _audit_sign_in(uow, [ten], principal, now, request_id)
        uow.commit()
    return OpenedSession(cookie, principal, now + ADMIN_SESSION_TTL)


def _audit_sign_in(uow: UnitOfWork, tenants: Sequence[TenantRecord],
                   principal: AdminPrincipal, now: datetime, request_id: str | None) -> None:
    data: dict[str, object] = {"method": principal.kind,
                               "scope": list(principal.tenants) if principal.tenants else "*"}
    if principal.bootstrap_link_id is not None:
        data["link"] = principal.bootstrap_link_id
    for ten in tenants:
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "admin.signed_in", principal.actor, data, account_id=principal.account_id,
            request_id=request_id), now)


def authenticate(ctx: ServiceContext, cookie: str | None, *,
                 csrf_key: str) -> AdminPrincipal | None:
    """The principal of an admin cookie, or None: unknown, revoked, expired, idle for more
    than 30 minutes, or (SSO) an account that is no longer active or no longer holds the
    role. Fails closed: no cookie, no access."""
    if not cookie or len(cookie) > 200:
        return None
    now = ctx.clock()
    session_id = hash_token(cookie)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        record = uow.console.sessions.get_active(session_id, now)
        if record is None or now - record.last_seen_at > ADMIN_IDLE_TIMEOUT:
            return None
        if record.kind == "sso":
            try:
                view = uow.accounts.view(record.account_id or "")
            except NotFound:
                return None
            if not holds_admin_role(view, now) or view.tenant_slug != record.tenant_slug:
                return None
    if now - record.last_seen_at >= _TOUCH_EVERY:
        with UnitOfWork(ctx.db) as uow:
            uow.console.sessions.touch(session_id, now)
            uow.commit()
    return _principal(record, csrf_key)


def _principal(record: AdminSessionRecord, csrf_key: str) -> AdminPrincipal:
    return AdminPrincipal(
        session_id=record.id, kind=record.kind, account_id=record.account_id,
        display_name=record.display_name,
        tenants=(record.tenant_slug,) if record.tenant_slug else None,
        csrf_token=csrf_token(csrf_key, record.id),
        bootstrap_link_id=record.bootstrap_link_id)


def sign_out(ctx: ServiceContext, principal: AdminPrincipal) -> None:
    """End this admin session."""
    with UnitOfWork(ctx.db) as uow:
        uow.console.sessions.revoke(principal.session_id, ctx.clock())
        uow.commit()


def revoke_admin_sessions(ctx: ServiceContext, *, account_id: str | None = None) -> int:
    """End every open admin session (of one account if given); returns how many."""
    with UnitOfWork(ctx.db) as uow:
        count = uow.console.sessions.revoke_all(ctx.clock(), account_id=account_id)
        uow.commit()
    return count


# -- what the pages read -------------------------------------------------------------------------

def tenant_slugs(ctx: ServiceContext, principal: AdminPrincipal) -> list[str]:
    """The tenants this admin may choose among, sorted."""
    if principal.tenants is not None:
        return sorted(principal.tenants)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return sorted(t.slug for t in uow.config.tenants.list())


LOGIN_TYPES = ("account.created", "account.updated", "account.linked", "login.succeeded",
               "login.passkey", "login.offline")
DECISION_TYPES = ("account.created", "account.updated", "login.denied", "login.pending")
DASHBOARD_DAYS = 14
DEFAULT_DORMANT_DAYS = 90


@dataclass(frozen=True, slots=True)
class DayActivity:
    day: str  # YYYY-MM-DD
    logins: int
    created: int
    updated: int
    denied: int
    pending: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    tenant: str
    days: tuple[DayActivity, ...]  # oldest first, every day present
    pending_approvals: int
    dormant_accounts: int
    dormant_days: int
    webhook_pending: int
    webhook_dead: int

    @property
    def peak(self) -> int:
        return max([1, *(max(d.logins, d.created, d.updated, d.denied, d.pending)
                         for d in self.days)])


def dashboard(ctx: ServiceContext, tenant: str) -> Dashboard:
    """Sign-ins and provisioning decisions of the last 14 UTC days (from the audit log),
    open approvals, dormant accounts (no sign-in for the tenant's dormant warning period, or
    90 days) and the webhook backlog. Raises NotFound."""
    now = ctx.clock()
    today = now.date()
    first = today - timedelta(days=DASHBOARD_DAYS - 1)
    since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=DASHBOARD_DAYS - 1)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        ten = uow.config.tenants.get(tenant)
        counts = uow.console.reads.daily_counts(
            ten.id, sorted(set(LOGIN_TYPES) | set(DECISION_TYPES)), since)
        dormant = uow.config.tenants.settings(ten.id).get("dormant")
        warn = dormant.get("warn_days") if isinstance(dormant, dict) else None
        dormant_days = warn if isinstance(warn, int) and warn > 0 else DEFAULT_DORMANT_DAYS
        dormant_count = uow.console.reads.dormant_accounts(
            ten.id, now - timedelta(days=dormant_days))
        pending = uow.console.reads.pending_approvals(ten.id)
        backlog = uow.console.reads.webhook_backlog(ten.id)
    by_day: dict[str, dict[str, int]] = {}
    for c in counts:
        by_day.setdefault(c.day, {})[c.type] = c.count
    days = []
    for i in range(DASHBOARD_DAYS):
        day = (first + timedelta(days=i)).isoformat()
        got = by_day.get(day, {})
        days.append(DayActivity(day, sum(got.get(k, 0) for k in LOGIN_TYPES),
                                got.get("account.created", 0), got.get("account.updated", 0),
                                got.get("login.denied", 0), got.get("login.pending", 0)))
    return Dashboard(ten.slug, tuple(days), pending, dormant_count, dormant_days, *backlog)


USER_STATUSES = ("active", "suspended", "deactivated")


def search_users(ctx: ServiceContext, tenant: str, *, query: str | None = None,
                 status: str | None = None, role: str | None = None,
                 cursor: str | None = None, limit: int = 50) -> UserPage:
    """One page of a tenant's accounts (see ``ConsoleReads.search_users``). Raises
    NotFound, InvalidInput."""
    if status and status not in USER_STATUSES:
        raise InvalidInput(f"unknown status {status!r}")
    if len(query or "") > 320 or len(role or "") > 128 or len(cursor or "") > 800:
        raise InvalidInput("the search is too long")
    with UnitOfWork(ctx.db, readonly=True) as uow:
        ten = uow.config.tenants.get(tenant)
        return uow.console.reads.search_users(
            ten.id, query=query or None, status=status or None, role=role or None,
            cursor=cursor or None, limit=max(1, min(limit, 200)), now=ctx.clock())


@dataclass(frozen=True, slots=True)
class UserDetail:
    view: AccountView
    grants: tuple[GrantRow, ...]
    open_requests: tuple[OpenRequest, ...]
    sessions: tuple[SessionRow, ...]
    passkeys: tuple[PasskeyRecord, ...]
    events: tuple[ChainedEvent, ...]
    more_events: bool
    #: the roles an admin blocked for this account (overrides), and when the page was read
    #: (a grant whose expiry is before it is shown as expired: it counts nowhere)
    blocks: tuple[RoleBlockRecord, ...] = ()
    at: datetime | None = None


def account_tenant(ctx: ServiceContext, account_id: str) -> str:
    """The tenant slug of an account. Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.accounts.view(account_id).tenant_slug


def user_detail(ctx: ServiceContext, account_id: str) -> UserDetail:
    """Everything the user page shows, in one read transaction. Raises NotFound."""
    now = ctx.clock()
    with UnitOfWork(ctx.db, readonly=True) as uow:
        view = uow.accounts.view(account_id)
        ten = uow.config.tenants.get(view.tenant_slug)
        reads = uow.console.reads
        page = reads.audit_page(ten.id, AuditFilter(account_id=account_id), limit=25)
        return UserDetail(
            view=view, grants=tuple(reads.grants(account_id)),
            open_requests=tuple(reads.open_requests(account_id)),
            sessions=tuple(reads.sessions(account_id, now)),
            passkeys=tuple(uow.devices.passkeys.for_account(account_id, include_revoked=False)),
            events=page.events, more_events=page.next_before is not None,
            blocks=tuple(uow.grants.blocks(ten.id, account_id=account_id)), at=now)


def revoke_user_session(ctx: ServiceContext, account_id: str, session_id: str, *,
                        actor: str, request_id: str | None = None) -> None:
    """End one session of an account (``session_id``: the stored SHA-256). Audited
    ``session.revoked``. Raises NotFound, InvalidInput (not active)."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        view = uow.accounts.view(account_id)
        if not any(s.id == session_id for s in uow.console.reads.sessions(account_id,
                                                                                  now)):
            raise InvalidInput("this session is not active")
        uow.sessions.revoke(session_id, now)
        ten = uow.config.tenants.get(view.tenant_slug)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "session.revoked", actor, {"session": session_id[:12]}, account_id=account_id,
            request_id=request_id), now)
        uow.commit()


def request_tenant(ctx: ServiceContext, pending_id: int) -> str:
    """The tenant of an approval request. Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.console.reads.request_tenant(pending_id)


def audit_page(ctx: ServiceContext, tenant: str, flt: AuditFilter, *,
               before_seq: int | None = None, limit: int = 50) -> AuditPage:
    """One page of a tenant's audit log, newest first. Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        ten = uow.config.tenants.get(tenant)
        return uow.console.reads.audit_page(ten.id, flt, before_seq=before_seq,
                                            limit=max(1, min(limit, 200)))


# -- provenance, in words ------------------------------------------------------------------------

def describe_grant(grant: GrantRow) -> str:
    """Why an account holds a role, for people: "granted by rule `nurses` (connection demo)
    at login on 2026-11-28", "approved by alice on ...", "SCIM", "manual"."""
    day = grant.granted_at.date().isoformat()
    source = grant.source
    if source.startswith("rule:"):
        rule = source.removeprefix("rule:")
        connection, sep, rule_id = rule.partition("/")
        where = f" (connection {connection})" if sep else ""
        return f"granted by rule `{rule_id if sep else rule}`{where} at login on {day}"
    if source == "approval":
        return f"approved by {grant.granted_by} on {day}"
    if source == "scim":
        return f"SCIM ({grant.granted_by}) on {day}"
    if source == "manual":
        return f"manual, by {grant.granted_by} on {day}"
    return f"{source}, by {grant.granted_by} on {day}"


def describe_profile_source(source: str | None) -> str:
    """Where a profile field's value came from."""
    if source is None:
        return "unknown"
    if source.startswith("rule:profile."):
        field_name = source.removeprefix("rule:profile.")
        return f"mapped from the identity provider at login (`{field_name}`)"
    if source == "scim":
        return "SCIM"
    if source == "manual":
        return "set by an administrator"
    return source
