"""provision_on_login: the one function every login protocol ends in.

Claims are mapped before the transaction opens (pure work holds no lock). Then in ONE
transaction: consume the login request (single use, bound to the browser that started it) ->
find the account by (connection, subject) -> ``decide`` -> apply the decision -> outbox event ->
session -> audit event (last, so the tenant's chain head is locked only until the commit that
follows). A lost unique-key race rolls back and runs again; the loser then finds the winner's
account. Nothing is half-written: a denial commits only its audit event (and the spent state).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.core.identity import Account, ExternalIdentity
from jitprov.core.mapping import MappedIdentity, Policy
from jitprov.core.provisioning import (
    Create,
    Decision,
    Deny,
    Link,
    LinkCandidate,
    NoChange,
    Pending,
    Update,
    decide,
)
from jitprov.core.recorded_claims import redact_claims
from jitprov.services import metrics
from jitprov.services.context import ServiceContext
from jitprov.store.records import ConnectionRecord, LoginRequestRecord
from jitprov.store.repositories import RaceLost
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.login")

MAX_ATTEMPTS = 8
MAX_SUBJECT = 255  # characters, as stored
MAX_ISSUER = 500
MAX_EMAIL = 320  # RFC 5321 path limit

AUDIT_TYPES = {
    "create": "account.created",
    "update": "account.updated",
    "link": "account.linked",
    "no_change": "login.succeeded",
    "deny": "login.denied",
    "pending": "login.pending",
}


#: refusals caused by the request itself (HTTP 400) rather than by policy (HTTP 403)
REQUEST_PROBLEMS = frozenset({"login_expired", "login_foreign", "invalid_identity",
                              "break_glass_refused", "replay"})


class LoginRefused(JitprovError):
    """The login ended without a session. ``code`` is stable; ``reason`` is for the user;
    ``status`` is the HTTP status that fits it."""

    code = "login_refused"

    def __init__(self, code: str, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.request_id = request_id
        self.status = 400 if code in REQUEST_PROBLEMS else 403

    def __reduce__(self) -> tuple[type[LoginRefused], tuple[str, str, str | None]]:
        return (LoginRefused, (self.code, self.reason, self.request_id))  # picklable


@dataclass(frozen=True, slots=True)
class LoginState:
    """The ``state`` a callback carries and the browser binding cookie that must go with it."""

    state: str
    browser: str | None


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A successful login: the decision, the new session's cookie value, where to go next."""

    account_id: str
    decision: Decision
    session_token: str | None
    return_to: str = "/"


@dataclass(frozen=True, slots=True)
class DryRun:
    """What a login would do, written nowhere."""

    decision: Decision
    mapped: MappedIdentity
    existing: Account | None

    def as_dict(self) -> dict[str, object]:
        """The decision, its changes and the rule trace, JSON-ready (CLI and API)."""
        d = self.decision
        out: dict[str, object] = {"decision": d.kind, "trace": [e.as_dict() for e in d.trace]}
        if self.existing is not None:
            out["account_id"] = self.existing.id
        if isinstance(d, Create | Update | Link):
            out["changes"] = d.changes.as_dict()
        if isinstance(d, Deny):
            out.update(code=d.code, reason=d.reason, rule=d.rule)
        if isinstance(d, Pending):
            out.update(reason=d.reason, link_to=d.account_id)
        return out


def hash_token(token: str) -> str:
    """Sessions, states and tokens are stored by SHA-256 of their value, never the value."""
    return hashlib.sha256(token.encode()).hexdigest()


def provision_on_login(ctx: ServiceContext, connection_slug: str, identity: ExternalIdentity, *,
                       login: LoginState | None = None, request_id: str | None = None,
                       user_agent: str | None = None, previous_session: str | None = None,
                       start_session: bool = True,
                       guard: Callable[[UnitOfWork], None] | None = None) -> LoginResult:
    """Provision (or sync) the account of ``identity`` and open a session.

    ``login`` is the state of the login request this callback answers: it is consumed in the
    same transaction, and must come from the browser that started the login. ``guard`` runs
    first in that transaction (after the login is spent) and may raise LoginRefused, which
    rolls everything back: the SAML ACS records the assertion ID there, so the replay cache
    costs no transaction of its own and an assertion is spent exactly when a login or a
    denial is committed. Raises
    :class:`LoginRefused` for a denial, a pending link, or a missing/used/foreign state (the
    audit event of a denial is committed first) and ``NotFound`` for an unknown connection.
    """
    conn = ctx.connections.get(connection_slug)
    policy = ctx.policies.get(conn)
    mapped = policy.map(identity.claims).scoped(conn.slug)
    try:
        if not conn.enabled:
            raise LoginRefused("connection_disabled",
                               f"sign-in through {conn.slug} is disabled", request_id)
        _check_sizes(identity, mapped.profile.get("email"), request_id)
    except LoginRefused as refused:
        record_login_failure(ctx, conn.slug, refused.code, refused.reason,
                             request_id=request_id)
        raise
    started = time.perf_counter()
    for _attempt in range(MAX_ATTEMPTS):
        try:
            result = _provision_once(ctx, conn, policy, mapped, identity, login=login,
                                     request_id=request_id, user_agent=user_agent,
                                     previous_session=previous_session,
                                     start_session=start_session, guard=guard)
        except RaceLost:
            continue
        except LoginRefused as refused:
            metrics.LOGINS.labels(refused.code).inc()
            if refused.code in REQUEST_PROBLEMS:  # policy refusals are audited in the unit
                record_login_failure(ctx, conn.slug, refused.code, refused.reason,
                                     request_id=request_id, subject=identity.subject)
            raise
        metrics.DECISION_SECONDS.observe(time.perf_counter() - started)
        metrics.LOGINS.labels(result.decision.kind).inc()
        return result
    raise LoginRefused("busy", "the login could not be completed because of concurrent "
                       "updates; try again", request_id)


@contextmanager
def failures_audited(ctx: ServiceContext, connection_slug: str,
                     request_id: str | None) -> Iterator[None]:
    """Around a protocol adapter's work before the decision (verify the response, redeem the
    code): whatever it refuses is audited as ``login.failed`` and raised again; a ValueError
    or TypeError (an unreadable sealed key, say) becomes a readable InvalidInput, never a 500."""
    try:
        yield
    except JitprovError as exc:
        record_login_failure(ctx, connection_slug, exc.code, str(exc), request_id=request_id)
        raise
    except (ValueError, TypeError) as exc:
        record_login_failure(ctx, connection_slug, "misconfigured", type(exc).__name__,
                             request_id=request_id)
        raise InvalidInput("this sign-in connection is misconfigured; tell the "
                           "administrator") from exc


def record_login_failure(ctx: ServiceContext, connection_slug: str, code: str, reason: str, *,
                         request_id: str | None, subject: str | None = None) -> None:
    """Audit a login that failed before any decision (bad or spent state, a response that does
    not verify, an IdP error): ``login.failed`` with the reason, in the connection's tenant.
    Never raises: the user's error page matters more than this event, and the server log
    keeps the failure if the database cannot."""
    try:
        conn = ctx.connections.get(connection_slug)
        now = ctx.clock()
        with UnitOfWork(ctx.db) as uow:
            uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
                type="login.failed", actor=f"login:{conn.slug}:{subject or '-'}",
                data={"connection": conn.slug, "code": code, "reason": reason,
                      "subject": subject},
                request_id=request_id), now)
            uow.commit()
    except JitprovError:
        log.warning("login.failed not audited (connection %s, code %s, request %s)",
                    connection_slug, code, request_id, exc_info=True)


def _check_sizes(identity: ExternalIdentity, email: str | None,
                 request_id: str | None) -> None:
    if email is not None and len(email) > MAX_EMAIL:
        raise LoginRefused("invalid_identity", f"the email sent by the identity provider is "
                           f"longer than {MAX_EMAIL} characters", request_id)
    if not identity.subject or len(identity.subject) > MAX_SUBJECT:
        raise LoginRefused("invalid_identity", "the identity provider sent an empty subject or "
                           f"one longer than {MAX_SUBJECT} characters", request_id)
    if len(identity.issuer) > MAX_ISSUER:
        raise LoginRefused("invalid_identity", f"the issuer is longer than {MAX_ISSUER} "
                           "characters", request_id)


def _provision_once(ctx: ServiceContext, conn: ConnectionRecord, policy: Policy,
                    mapped: MappedIdentity, identity: ExternalIdentity, *,
                    login: LoginState | None, request_id: str | None, user_agent: str | None,
                    previous_session: str | None, start_session: bool,
                    guard: Callable[[UnitOfWork], None] | None = None) -> LoginResult:
    now = ctx.clock()
    recorded = redact_claims(identity.claims)  # pure, before the lock; written by the touch
    with UnitOfWork(ctx.db) as uow:
        return_to = "/"
        if login is not None:
            return_to = _consume_login(uow, conn, login, request_id, now)
        if guard is not None:
            guard(uow)
        existing, decision = _decide(uow, conn, policy, mapped, identity)

        account_id: str | None
        match decision:
            case Create(changes=changes):
                account_id = uow.accounts.create(tenant_id=conn.tenant_id, changes=changes,
                                                 provisioned_by="jit", now=now)
                uow.accounts.add_identity(account_id=account_id, connection_id=conn.id,
                                          subject=identity.subject, issuer=identity.issuer,
                                          now=now, claims=recorded)
            case Link(account_id=target, changes=changes, target=linked):
                account_id = target
                uow.accounts.apply(linked, changes, now)
                uow.accounts.add_identity(account_id=target, connection_id=conn.id,
                                          subject=identity.subject, issuer=identity.issuer,
                                          now=now, claims=recorded)
            case Update(account_id=target, changes=changes):
                account_id = target
                assert existing is not None  # noqa: S101 - decide() updates only what exists
                uow.accounts.apply(existing, changes, now)
            case NoChange(account_id=target):
                account_id = target
            case Pending(account_id=target):
                account_id = None
                uow.accounts.queue_link(tenant_id=conn.tenant_id, connection_id=conn.id,
                                        subject=identity.subject, issuer=identity.issuer,
                                        account_id=target, claims=recorded, now=now)
            case Deny():
                account_id = None

        event = _audit_event(conn, identity, policy, decision, account_id, request_id)
        if isinstance(decision, Deny | Pending):
            uow.audit.append(conn.tenant_id, conn.tenant_slug, event, now)
            uow.commit()
            code = decision.code if isinstance(decision, Deny) else "pending_link"
            raise LoginRefused(code, decision.reason, request_id)
        assert account_id is not None  # noqa: S101

        if isinstance(decision, Create | Update | Link):
            uow.outbox.add_many(conn.tenant_id, _announcements(
                decision, account_id, conn), now)
        if not isinstance(decision, Create):  # a new account is born logged in
            uow.accounts.record_login(account_id=account_id, connection_id=conn.id,
                                      subject=identity.subject, now=now, claims=recorded)
        token: str | None = None
        if start_session:
            if previous_session:
                uow.sessions.revoke(hash_token(previous_session), now)
            token = secrets.token_urlsafe(32)
            uow.sessions.create(session_id=hash_token(token), account_id=account_id,
                                connection_id=conn.id, subject=identity.subject, now=now,
                                expires_at=now + ctx.session_ttl, user_agent=user_agent)
        uow.audit.append(conn.tenant_id, conn.tenant_slug, event, now)
        uow.commit()
        return LoginResult(account_id=account_id, decision=decision, session_token=token,
                           return_to=return_to)


def consume_login_request(ctx: ServiceContext, connection_slug: str, login: LoginState, *,
                          request_id: str | None) -> LoginRequestRecord:
    """Spend the login request a callback answers, before talking to the IdP (OIDC needs its
    nonce and PKCE verifier for the code exchange). Raises LoginRefused (audited) when the
    state is unknown, spent, expired, of another connection or from another browser."""
    conn = ctx.connections.get(connection_slug)
    try:
        with UnitOfWork(ctx.db) as uow:
            record = _consume_record(uow, conn, login, request_id, ctx.clock())
            uow.commit()
            return record
    except LoginRefused as refused:
        record_login_failure(ctx, conn.slug, refused.code, refused.reason,
                             request_id=request_id)
        raise


def _consume_login(uow: UnitOfWork, conn: ConnectionRecord, login: LoginState,
                   request_id: str | None, now: datetime) -> str:
    return _consume_record(uow, conn, login, request_id, now).return_to


def _consume_record(uow: UnitOfWork, conn: ConnectionRecord, login: LoginState,
                    request_id: str | None, now: datetime) -> LoginRequestRecord:
    record = uow.login_requests.consume(hash_token(login.state), now)
    if record is None or record.connection_id != conn.id:
        raise LoginRefused("login_expired", "this sign-in link has expired or was already "
                           "used; start again", request_id)
    expected = str(record.data.get("browser", ""))
    presented = hash_token(login.browser) if login.browser else ""
    if not expected or not hmac.compare_digest(expected, presented):
        uow.commit()  # the state is spent either way: it may be an attacker's
        raise LoginRefused("login_foreign", "this sign-in was not started in this browser; "
                           "start again from the application", request_id)
    return record


def _announcements(decision: Create | Update | Link, account_id: str,
                   conn: ConnectionRecord) -> list[tuple[str, dict[str, object]]]:
    """The outbox events of an account change: the change itself, then one event per role
    granted or revoked and per approval requested, for receivers that want only those."""
    base: dict[str, object] = {"account_id": account_id, "tenant": conn.tenant_slug,
                                "connection": conn.slug}
    changes = decision.changes
    events: list[tuple[str, dict[str, object]]] = [
        (AUDIT_TYPES[decision.kind], {**base, "changes": changes.as_dict()})]
    events += [("role.granted", {**base, "role": g.role, "source": g.source})
               for g in sorted(changes.grants_added)]
    events += [("role.revoked", {**base, "role": g.role, "source": g.source})
               for g in sorted(changes.grants_revoked)]
    events += [("approval.requested", {**base, "role": p.role, "source": p.source})
               for p in sorted(changes.pending_added)]
    return events


def _audit_event(conn: ConnectionRecord, identity: ExternalIdentity, policy: Policy,
                 decision: Decision, account_id: str | None,
                 request_id: str | None) -> AuditEvent:
    data: dict[str, object] = {
        "connection": conn.slug, "subject": identity.subject, "issuer": identity.issuer,
        "decision": decision.kind, "policy": policy.fingerprint[:16],
        "trace": [e.as_dict() for e in decision.trace],
    }
    if isinstance(decision, Create | Update | Link):
        data["changes"] = decision.changes.as_dict()
    if identity.notes:
        data["notes"] = list(identity.notes)
    if isinstance(decision, Link):
        data["matched_by"] = decision.matched_by
    if isinstance(decision, Deny):
        data.update(code=decision.code, reason=decision.reason, rule=decision.rule)
    if isinstance(decision, Pending):
        data.update(reason=decision.reason, link_to=decision.account_id)
    subject_account = account_id or getattr(decision, "account_id", None)
    return AuditEvent(type=AUDIT_TYPES[decision.kind],
                      actor=f"login:{conn.slug}:{identity.subject}", data=data,
                      account_id=subject_account, request_id=request_id)


def dry_run_login(ctx: ServiceContext, connection_slug: str,
                  identity: ExternalIdentity, *, policy: Policy | None = None) -> DryRun:
    """What ``provision_on_login`` would decide for these claims (with ``policy`` instead of
    the connection's, when given: a mapping not yet saved); writes nothing."""
    conn = ctx.connections.get(connection_slug)
    policy = policy if policy is not None else ctx.policies.get(conn)
    mapped = policy.map(identity.claims).scoped(conn.slug)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        existing, decision = _decide(uow, conn, policy, mapped, identity)
    return DryRun(decision, mapped, existing)


def _decide(uow: UnitOfWork, conn: ConnectionRecord, policy: Policy, mapped: MappedIdentity,
            identity: ExternalIdentity) -> tuple[Account | None, Decision]:
    uow.accounts.lock_identity(conn.id, identity.subject)
    existing = uow.accounts.find_by_identity(conn.id, identity.subject)
    email = mapped.profile.get("email")
    # Other accounts matter at a first login (linking), or when this login changes the email.
    look_up = existing is None or (
        email is not None and email.lower() != (existing.email or "").lower())
    candidates: list[LinkCandidate] = []
    if look_up:
        if email:
            uow.accounts.lock_email(conn.tenant_id, email)
        found = uow.accounts.find_link_candidates(
            conn.tenant_id, connection_id=conn.id, email=email,
            external_id=identity.subject if existing is None else None)
        candidates = [LinkCandidate(acc, how) for acc, how in found
                      if existing is None or acc.id != existing.id]
    return existing, decide(existing, mapped, policy.settings, candidates, owner=conn.slug)
