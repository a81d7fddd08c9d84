"""provision_on_login: the one function every login protocol ends in.

Claims are mapped before the transaction opens (pure work holds no lock), except when the
mapping names ``scim_groups``: then in the transaction, after the identity's login lock, so the
SCIM membership it reads and a concurrent SCIM change are serialized (``entitlements.py``).
Then in ONE transaction: spend the login request (single use, bound to the browser that
started it) -> find the account by (connection, subject) -> ``decide`` -> apply the decision ->
outbox event -> session -> audit event (last, so the tenant's chain head is locked only until
the commit that follows). A lost unique-key race rolls back and runs again; the loser then
finds the winner's account. Nothing is half-written: a denial commits only its audit event
(and the spent state).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from jitprov.core.errors import RaceLost
from jitprov.core.identity import Account, ExternalIdentity
from jitprov.core.mapping import MappedIdentity, Policy, TraceEntry
from jitprov.core.provisioning import Create, Decision, Deny, Link, NoChange, Pending, Update
from jitprov.core.recorded_claims import redact_claims
from jitprov.services import logs, metrics, tracing
from jitprov.services.common import REQUEST_PROBLEMS, LoginRefused, hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.entitlements import (
    SCIM_GROUPS_CLAIM,
    announcements,
    login_mapping,
    uses_scim_groups,
)
from jitprov.services.login.failures import record_login_failure
from jitprov.services.login.state import (
    PREVIOUS_SESSION,
    LoginState,
    check_spent,
    spend_login_request,
)
from jitprov.services.login.steps import (
    audit_event,
    check_auth_context,
    check_sizes,
    decide_login,
)
from jitprov.store.fast import Claim
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork

MAX_ATTEMPTS = 8
#: the trace entries that name a mapping rule (the others are fields, notes and linking)
_RULE_KINDS = frozenset({"default", "grant", "approval", "deny"})
log = logs.get_logger("jitprov.login")
#: run in the provisioning transaction before the identity's read: raises, or returns a
#: check to run once that read is in (the answers of its claims came with it)
Guard = Callable[[UnitOfWork], Callable[[], None] | None]


def _log_decision(conn: ConnectionRecord, outcome: str, account_id: str | None,
                  trace: tuple[TraceEntry, ...] = ()) -> None:
    """One log line per login decision: its outcome (the decision, or the refusal's code),
    the account and the ids of the rules that applied; never a claim."""
    rules = sorted({e.rule for e in trace if e.kind in _RULE_KINDS
                    and e.outcome != "not_matched"})
    log.info("login_decision", outcome=outcome, account_id=account_id,
             tenant=conn.tenant_slug, connection=conn.slug, rules=rules)


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
    #: claims the mapping reads that this login did not carry -> the rules that read them
    absent_claims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The decision, its changes and the rule trace, JSON-ready (CLI and API)."""
        d = self.decision
        out: dict[str, object] = {"decision": d.kind, "trace": [e.as_dict() for e in d.trace]}
        if self.absent_claims:
            out["absent_claims"] = {claim: list(readers)
                                    for claim, readers in self.absent_claims.items()}
        if self.existing is not None:
            out["account_id"] = self.existing.id
        if isinstance(d, Create | Update | Link):
            out["changes"] = d.changes.as_dict()
        if isinstance(d, Deny):
            out.update(code=d.code, reason=d.reason, rule=d.rule)
        if isinstance(d, Pending):
            out.update(reason=d.reason, link_to=d.account_id)
        return out


def provision_on_login(ctx: ServiceContext, connection_slug: str, identity: ExternalIdentity, *,
                       login: LoginState | None = None, request_id: str | None = None,
                       user_agent: str | None = None, previous_session: str | None = None,
                       start_session: bool = True,
                       guard: Guard | None = None,
                       id_token_sealed: str | None = None) -> LoginResult:
    """Provision (or sync) the account of ``identity`` and open a session.

    ``login`` is the state of the login request this callback answers and the browser's
    binding cookie: the request is spent in the same transaction, and must come from the
    browser that started the login. ``guard`` runs first in that transaction (after the
    login's spend is made) and may raise LoginRefused, which rolls everything back, or return
    a check that runs (and may raise) once the identity is read, right after the spend's: the
    SAML ACS records the assertion ID there, so the replay cache costs no transaction of its
    own and an assertion is spent exactly when a login or a denial is committed; on PostgreSQL
    the spend and that record go with the identity's read (``uow.with_next_read``), in one
    round trip. The session records ``identity.idp_session_id`` and ``id_token_sealed`` (the
    OIDC ID token, sealed) for logout propagation. Raises :class:`LoginRefused` for a denial,
    a pending link, or a missing/used/foreign state (the audit event of a denial is committed
    first) and ``NotFound`` for an unknown connection.
    """
    conn = ctx.connections.get(connection_slug)
    logs.annotate(tenant=conn.tenant_slug, connection=conn.slug)
    policy = ctx.policies.get(conn)
    mapped = policy.map(identity.claims).scoped(conn.slug)
    try:
        if not conn.enabled:
            raise LoginRefused("connection_disabled",
                               f"sign-in through {conn.slug} is disabled", request_id)
        check_sizes(identity, mapped.profile.get("email"), request_id)
    except LoginRefused as refused:
        record_login_failure(ctx, conn.slug, refused.code, refused.reason,
                             request_id=request_id)
        _log_decision(conn, refused.code, None)
        raise
    started = time.perf_counter()
    for _attempt in range(MAX_ATTEMPTS):
        try:
            with tracing.span("jitprov.login.provision", connection=conn.slug,
                              tenant=conn.tenant_slug) as span:
                result = _provision_once(ctx, conn, policy, mapped, identity, login=login,
                                         request_id=request_id, user_agent=user_agent,
                                         previous_session=previous_session,
                                         start_session=start_session, guard=guard,
                                         id_token_sealed=id_token_sealed)
                if span is not None:
                    span.set_attribute("outcome", result.decision.kind)
        except RaceLost:
            continue
        except LoginRefused as refused:
            if refused.code in REQUEST_PROBLEMS:  # policy refusals are audited in the unit
                record_login_failure(ctx, conn.slug, refused.code, refused.reason,
                                     request_id=request_id, subject=identity.subject)
                _log_decision(conn, refused.code, None)  # (decisions log themselves)
            # counted once it is audited: a call run again from the start (the audit's unit
            # would have waited on the event loop, Database.run_inline) counts it once
            metrics.LOGINS.labels(refused.code).inc()
            raise
        metrics.DECISION_SECONDS.observe(time.perf_counter() - started)
        metrics.LOGINS.labels(result.decision.kind).inc()
        _log_decision(conn, result.decision.kind, result.account_id, result.decision.trace)
        return result
    raise LoginRefused("busy", "the login could not be completed because of concurrent "
                       "updates; try again", request_id)


def _provision_once(ctx: ServiceContext, conn: ConnectionRecord, policy: Policy,
                    mapped: MappedIdentity, identity: ExternalIdentity, *,
                    login: LoginState | None, request_id: str | None, user_agent: str | None,
                    previous_session: str | None, start_session: bool,
                    guard: Guard | None = None,
                    id_token_sealed: str | None = None) -> LoginResult:
    now = ctx.clock()
    recorded = redact_claims(identity.claims)  # pure, before the lock; written by the touch
    with UnitOfWork(ctx.db) as uow:
        return_to = "/"
        ended: set[str] = {hash_token(previous_session)} if previous_session else set()
        spent: Claim | None = None
        if login is not None:
            request, spent = spend_login_request(uow, ctx, conn, login, request_id, now)
            return_to = request.return_to
            if request.data.get(PREVIOUS_SESSION):  # the session the browser held at the start
                ended.add(str(request.data[PREVIOUS_SESSION]))
        check = guard(uow) if guard is not None else None

        def claims_checked() -> None:  # the spend first, then the guard's (a replay)
            if spent is not None:
                check_spent(spent, request_id)
            if check is not None:
                check()

        then: Callable[[], None] | None = claims_checked
        if uses_scim_groups(conn):  # SCIM membership, read under the identity's login lock
            claims_checked()  # answered on their own first: they come before that lock
            then = None
            mapped = login_mapping(uow, conn, policy, identity)
        # on PostgreSQL the claims go with the identity's read, and ``then`` checks them
        # right after it, before anything else is read or decided
        existing, decision = decide_login(uow, conn, policy, mapped, identity, now=now,
                                          then=then)
        if existing is None and not isinstance(decision, Deny):
            decision = refused_link(uow, conn, identity, decision)
        decision = check_auth_context(conn, identity, existing, decision)  # require_mfa

        # Decided: from here the unit only writes, and nothing reads back what it writes, so
        # the writes that need no answer go with the commit (one round trip on PostgreSQL)
        account_id: str | None
        link_id: int | None = None
        match decision:
            case Create(changes=changes):
                account_id = uow.accounts.create(tenant_id=conn.tenant_id, changes=changes,
                                                 provisioned_by="jit", now=now,
                                                 with_commit=True)
                uow.identities.add_identity(account_id=account_id, connection_id=conn.id,
                                            subject=identity.subject, issuer=identity.issuer,
                                            now=now, claims=recorded, with_commit=True)
            case Link(account_id=target, changes=changes, target=linked):
                account_id = target
                uow.accounts.apply(linked, changes, now)
                uow.identities.add_identity(account_id=target, connection_id=conn.id,
                                            subject=identity.subject, issuer=identity.issuer,
                                            now=now, claims=recorded, with_commit=True)
            case Update(account_id=target, changes=changes):
                account_id = target
                assert existing is not None  # noqa: S101 - decide() updates only what exists
                uow.accounts.apply(existing, changes, now)
            case NoChange(account_id=target):
                account_id = target
            case Pending(account_id=target):
                account_id = None
                link_id = uow.identities.queue_link(
                    tenant_id=conn.tenant_id, connection_id=conn.id, subject=identity.subject,
                    issuer=identity.issuer, account_id=target,
                    email=mapped.profile.get("email"), claims=recorded, now=now)
                if link_id is not None:  # new: announced once, not at every retry
                    uow.outbox.add(conn.tenant_id, "link.requested", {
                        "link": link_id, "tenant": conn.tenant_slug, "account_id": target,
                        "connection": conn.slug, "subject": identity.subject}, now)
            case Deny():
                account_id = None

        event = audit_event(conn, identity, policy, decision, account_id, request_id)
        if link_id is not None:
            event = replace(event, data={**event.data, "link": link_id})
        if isinstance(decision, Deny | Pending):
            uow.audit.append(conn.tenant_id, conn.tenant_slug, event, now)
            uow.commit()
            code = decision.code if isinstance(decision, Deny) else "pending_link"
            _log_decision(conn, code, event.account_id, decision.trace)
            raise LoginRefused(code, decision.reason, request_id)
        assert account_id is not None  # noqa: S101

        if isinstance(decision, Create | Update | Link):
            uow.outbox.add_many(conn.tenant_id, announcements(
                decision, account_id, conn), now, with_commit=True)
        if not isinstance(decision, Create):  # a new account is born logged in
            uow.identities.record_login(account_id=account_id, connection_id=conn.id,
                                        subject=identity.subject, now=now, claims=recorded,
                                        with_commit=True)
        token: str | None = None
        if start_session:
            for session_id in sorted(ended):  # rotated: the browser's sessions end here
                uow.sessions.revoke(session_id, now)
            token = secrets.token_urlsafe(32)
            uow.sessions.create(session_id=hash_token(token), account_id=account_id,
                                connection_id=conn.id, subject=identity.subject, now=now,
                                expires_at=now + ctx.session_ttl, user_agent=user_agent,
                                idp_session_id=identity.idp_session_id,
                                id_token_sealed=id_token_sealed, with_commit=True)
        uow.audit.append(conn.tenant_id, conn.tenant_slug, event, now)
        uow.commit()
        return LoginResult(account_id=account_id, decision=decision, session_token=token,
                           return_to=return_to)


LINK_REFUSED = ("an administrator refused to link this sign-in to the existing account with "
                "your email; ask your administrator if this is a mistake")


def refused_link(uow: UnitOfWork, conn: ConnectionRecord, identity: ExternalIdentity,
                 decision: Decision) -> Decision:
    """A first login of an identity whose link an admin refused is denied, whatever the
    mapping would decide now, until an admin clears the refusal (``services/links.py``)."""
    held = uow.identities.links.refused(conn.id, identity.subject)
    if held is None:
        return decision
    return Deny("link_refused_by_admin", LINK_REFUSED, account_id=held[1],
                trace=decision.trace)


def dry_run_login(ctx: ServiceContext, connection_slug: str,
                  identity: ExternalIdentity, *, policy: Policy | None = None) -> DryRun:
    """What ``provision_on_login`` would decide for these claims (with ``policy`` instead of
    the connection's, when given: a mapping not yet saved); writes nothing."""
    conn = ctx.connections.get(connection_slug)
    policy = policy if policy is not None else ctx.policies.get(conn)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        # with scim_groups whatever the mapping: ``policy`` may be one not saved yet
        mapped = login_mapping(uow, conn, policy, identity, lock=False)
        existing, decision = decide_login(uow, conn, policy, mapped, identity,
                                          now=ctx.clock())
        if existing is None and not isinstance(decision, Deny):  # as the login itself
            decision = refused_link(uow, conn, identity, decision)
        decision = check_auth_context(conn, identity, existing, decision)
    absent = {claim: readers for claim, readers in policy.claim_readers().items()
              if claim not in identity.claims and claim != SCIM_GROUPS_CLAIM}
    return DryRun(decision, mapped, existing, absent)


