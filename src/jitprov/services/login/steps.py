"""The steps of ``provision_on_login`` inside its transaction: the size limits of an identity,
the decision (with the identity and email locks that make concurrent first logins safe) and
the audit event of the decision. (The outbox events of an account change are
``services.entitlements.announcements``, shared with the SCIM re-evaluation.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from jitprov.core.audit import AuditEvent
from jitprov.core.auth_context import AUTH_CONTEXT_CLAIM, AuthContext, MfaRequirement
from jitprov.core.identity import Account, ExternalIdentity
from jitprov.core.mapping import MappedIdentity, Policy
from jitprov.core.provisioning import (
    Create,
    Decision,
    Deny,
    Link,
    LinkCandidate,
    Pending,
    Update,
    decide,
)
from jitprov.core.text import InvalidText, check_text, check_tree
from jitprov.services.common import LoginRefused
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork

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


def check_sizes(identity: ExternalIdentity, email: str | None,
                request_id: str | None) -> None:
    """Raise LoginRefused(``invalid_identity``) for a subject, issuer or email past what is
    stored."""
    if email is not None and len(email) > MAX_EMAIL:
        raise LoginRefused("invalid_identity", f"the email sent by the identity provider is "
                           f"longer than {MAX_EMAIL} characters", request_id)
    if not identity.subject or len(identity.subject) > MAX_SUBJECT:
        raise LoginRefused("invalid_identity", "the identity provider sent an empty subject or "
                           f"one longer than {MAX_SUBJECT} characters", request_id)
    if len(identity.issuer) > MAX_ISSUER:
        raise LoginRefused("invalid_identity", f"the issuer is longer than {MAX_ISSUER} "
                           "characters", request_id)
    try:  # the input rule of core.text: nothing of a login is stored that a page cannot show
        check_text(identity.subject, "subject", multiline=False)
        check_text(identity.issuer, "issuer", multiline=False)
        check_tree(dict(identity.claims), "")
    except InvalidText as bad:
        raise LoginRefused("invalid_identity", "the identity provider sent text that cannot "
                           f"be stored (claim {bad.field}: {bad.reason})", request_id) from None



def check_auth_context(conn: ConnectionRecord, identity: ExternalIdentity,
                       existing: Account | None, decision: Decision) -> Decision:
    """A connection with ``require_mfa`` denies (``mfa_required``) a login whose claim
    ``auth_context`` (set by the protocol adapter from the verified token or assertion)
    holds no accepted value, whatever the mapping decided: nothing is created, linked or
    updated, and the denial is audited as ``login.denied`` like a deny rule's. A denial
    stands as it is."""
    requirement = MfaRequirement.of(conn.config)
    if requirement is None or isinstance(decision, Deny):
        return decision
    context = AuthContext.from_claim(identity.claims.get(AUTH_CONTEXT_CLAIM))
    if requirement.satisfied_by(context):
        return decision
    return Deny("mfa_required", requirement.refusal(context),
                account_id=existing.id if existing is not None else None,
                trace=decision.trace)


def audit_event(conn: ConnectionRecord, identity: ExternalIdentity, policy: Policy,
                decision: Decision, account_id: str | None,
                request_id: str | None) -> AuditEvent:
    """The audit event of a decision: its kind, the rule trace, the changes, the policy."""
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



def decide_login(uow: UnitOfWork, conn: ConnectionRecord, policy: Policy,
                 mapped: MappedIdentity, identity: ExternalIdentity, *,
                 now: datetime, then: Callable[[], None] | None = None
                 ) -> tuple[Account | None, Decision]:
    """The account of (connection, subject), if any, and what this login does to it at
    ``now`` (grants expired by then are not held). Locks the identity and the email for the
    rest of ``uow``: both in one statement, sent with the account's read in one round trip and
    run before it (the email lock matters only when other accounts do, at a first login or an
    email change, but a returning login pays nothing more for it). The claims the unit sent
    ahead (``uow.with_next_read``: the login's spend, a SAML assertion's ID) go first, in
    that round trip too, and ``then`` (their check, which may raise) runs right after it."""
    email = mapped.profile.get("email")
    locks = uow.identities.identity_locks(conn.id, identity.subject,
                                          email=(conn.tenant_id, email) if email else None)
    existing = uow.accounts.find_by_identity(conn.id, identity.subject, after=locks,
                                             claims=uow.with_next_read.take())
    if then is not None:
        then()
    # Other accounts matter at a first login (linking), or when this login changes the email.
    look_up = existing is None or (
        email is not None and email.lower() != (existing.email or "").lower())
    candidates: list[LinkCandidate] = []
    if look_up:
        found = uow.accounts.find_link_candidates(
            conn.tenant_id, connection_id=conn.id, email=email,
            external_id=identity.subject if existing is None else None)
        candidates = [LinkCandidate(acc, how) for acc, how in found
                      if existing is None or acc.id != existing.id]
    return existing, decide(existing, mapped, policy.settings, candidates, owner=conn.slug,
                            now=now)
