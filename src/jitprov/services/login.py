"""provision_on_login: the one function every login protocol ends in.

In ONE transaction: find the account by (connection, subject) -> ``decide`` -> apply the
decision -> audit event (with the rule trace) -> outbox event -> session. A lost unique-key race
(two first logins of one new subject at once) rolls back and runs again; the loser then finds
the winner's account. Nothing is half-written: a denial commits only its audit event.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import JitprovError
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
from jitprov.services.context import ServiceContext
from jitprov.store.records import ConnectionRecord
from jitprov.store.repositories import RaceLost
from jitprov.store.unit_of_work import UnitOfWork

MAX_ATTEMPTS = 8

AUDIT_TYPES = {
    "create": "account.created",
    "update": "account.updated",
    "link": "account.linked",
    "no_change": "login.succeeded",
    "deny": "login.denied",
    "pending": "login.pending",
}


class LoginRefused(JitprovError):
    """The login ended without a session. ``code`` is stable; ``reason`` is for the user."""

    code = "login_refused"

    def __init__(self, code: str, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.request_id = request_id

    def __reduce__(self) -> tuple[type[LoginRefused], tuple[str, str, str | None]]:
        return (LoginRefused, (self.code, self.reason, self.request_id))  # picklable


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A successful login: the decision taken and the new session's cookie value."""

    account_id: str
    decision: Decision
    session_token: str | None


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
    """Sessions and login states are stored by SHA-256 of their value, never the value."""
    return hashlib.sha256(token.encode()).hexdigest()


def provision_on_login(ctx: ServiceContext, connection_slug: str, identity: ExternalIdentity, *,
                       request_id: str | None = None, user_agent: str | None = None,
                       previous_session: str | None = None,
                       start_session: bool = True) -> LoginResult:
    """Provision (or sync) the account of ``identity`` and open a session.

    Raises :class:`LoginRefused` for a denial or a pending link (the audit event of the refusal
    is committed first) and ``NotFound`` for an unknown connection.
    """
    for _attempt in range(MAX_ATTEMPTS):
        try:
            return _provision_once(ctx, connection_slug, identity, request_id=request_id,
                                   user_agent=user_agent, previous_session=previous_session,
                                   start_session=start_session)
        except RaceLost:
            continue
    raise LoginRefused("busy", "the login could not be completed because of concurrent "
                       "updates; try again", request_id)


def _provision_once(ctx: ServiceContext, connection_slug: str, identity: ExternalIdentity, *,
                    request_id: str | None, user_agent: str | None,
                    previous_session: str | None, start_session: bool) -> LoginResult:
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        conn = uow.connections.get(connection_slug)
        if not conn.enabled:
            raise LoginRefused("connection_disabled", f"sign-in through {conn.slug} is disabled",
                               request_id)
        policy, _, existing, decision = _decide(ctx, uow, conn, identity)
        actor = f"login:{conn.slug}:{identity.subject}"

        account_id: str | None
        match decision:
            case Create(changes=changes):
                account_id = uow.accounts.create(tenant_id=conn.tenant_id, changes=changes,
                                                 provisioned_by="jit", now=now)
                uow.accounts.add_identity(account_id=account_id, connection_id=conn.id,
                                          subject=identity.subject, issuer=identity.issuer,
                                          now=now)
            case Link(account_id=target, changes=changes):
                account_id = target
                uow.accounts.apply(uow.accounts.get(target), changes, now)
                uow.accounts.add_identity(account_id=target, connection_id=conn.id,
                                          subject=identity.subject, issuer=identity.issuer,
                                          now=now)
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
                                        account_id=target, claims=identity.claims, now=now)
            case Deny():
                account_id = None

        data: dict[str, object] = {
            "connection": conn.slug, "subject": identity.subject, "issuer": identity.issuer,
            "decision": decision.kind, "policy": policy.fingerprint[:16],
            "trace": [e.as_dict() for e in decision.trace],
        }
        if isinstance(decision, Create | Update | Link):
            data["changes"] = decision.changes.as_dict()
        if isinstance(decision, Link):
            data["matched_by"] = decision.matched_by
        if isinstance(decision, Deny):
            data.update(code=decision.code, reason=decision.reason, rule=decision.rule)
        if isinstance(decision, Pending):
            data.update(reason=decision.reason, link_to=decision.account_id)
        audit_account = account_id or getattr(decision, "account_id", None)
        uow.audit.append(conn.tenant_id, conn.tenant_slug, AuditEvent(
            type=AUDIT_TYPES[decision.kind], actor=actor, data=data,
            account_id=audit_account, request_id=request_id), now)

        if isinstance(decision, Deny | Pending):
            uow.commit()
            reason = decision.reason
            code = decision.code if isinstance(decision, Deny) else "pending_link"
            raise LoginRefused(code, reason, request_id)
        assert account_id is not None  # noqa: S101

        if isinstance(decision, Create | Update | Link):
            uow.outbox.add(conn.tenant_id, AUDIT_TYPES[decision.kind], {
                "account_id": account_id, "tenant": conn.tenant_slug,
                "connection": conn.slug, "changes": decision.changes.as_dict()}, now)
        uow.accounts.record_login(account_id=account_id, connection_id=conn.id,
                                  subject=identity.subject, now=now)
        token: str | None = None
        if start_session:
            if previous_session:
                uow.sessions.revoke(hash_token(previous_session), now)
            token = secrets.token_urlsafe(32)
            uow.sessions.create(session_id=hash_token(token), account_id=account_id,
                                connection_id=conn.id, subject=identity.subject, now=now,
                                expires_at=now + ctx.session_ttl, user_agent=user_agent)
        uow.commit()
        return LoginResult(account_id=account_id, decision=decision, session_token=token)


def dry_run_login(ctx: ServiceContext, connection_slug: str,
                  identity: ExternalIdentity) -> DryRun:
    """What ``provision_on_login`` would decide for these claims; writes nothing."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        _, mapped, existing, decision = _decide(ctx, uow, uow.connections.get(connection_slug),
                                                identity)
        return DryRun(decision, mapped, existing)


def _decide(ctx: ServiceContext, uow: UnitOfWork, conn: ConnectionRecord,
            identity: ExternalIdentity) -> tuple[Policy, MappedIdentity, Account | None, Decision]:
    policy = ctx.policies.get(conn)
    mapped = policy.map(identity.claims)
    uow.accounts.lock_for_login(conn.tenant_id, conn.id, identity.subject,
                                mapped.profile.get("email"))
    existing = uow.accounts.find_by_identity(conn.id, identity.subject)
    candidates: list[LinkCandidate] = []
    if existing is None:
        candidates = [LinkCandidate(acc, "external_id" if how == "external_id" else "email")
                      for acc, how in uow.accounts.find_link_candidates(
                          conn.tenant_id, email=mapped.profile.get("email"),
                          external_id=identity.subject)]
    return policy, mapped, existing, decide(existing, mapped, policy.settings, candidates)
