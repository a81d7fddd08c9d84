"""Pending links: an admin approves, refuses or clears the link a first login asked for.

A mapping with ``linking.by_email: pending`` answers a first login whose email belongs to an
existing account with ``login.pending`` and queues a link (``services/login/flow.py``, which
also announces ``link.requested``). Here, each decision is one unit of work with its audit
event and its outbox event:

- **approve** binds the identity to the account, the same store write a verified-email link
  does (the link's recorded claims become the identity's, received when the link was asked
  for, so their retention runs from then): the person's next login signs in to that account.
  A link to an account that is no longer an active user account, that no longer has the email
  the login asked with (changed since: the link would join someone else's account), or of an
  identity that meanwhile signs in elsewhere, cannot be approved (Conflict). Only a login whose
  email the IdP verified queues a link (``core/provisioning.py``): an admin cannot check who
  holds a mailbox.
- **refuse** holds: every later login of that (connection, subject) is refused
  (``link_refused_by_admin``) until an admin clears the refusal; it is never asked again on its
  own, so a refused person cannot make the request reappear by signing in again.
- **clear** lifts a refusal: the identity's next login is decided afresh (and, under
  ``pending``, asks again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import Conflict, InvalidInput, NotFound, RaceLost
from jitprov.services.context import ServiceContext
from jitprov.store.pending_links import PendingLinkRecord
from jitprov.store.unit_of_work import UnitOfWork

__all__ = ["LinkDecision", "PendingLinkRecord", "as_json", "clear_refusal", "decide_link",
           "list_links"]

MAX_REASON = 500
_EVENTS = {"approved": "link.approved", "refused": "link.refused", "cleared": "link.cleared"}


@dataclass(frozen=True, slots=True)
class LinkDecision:
    link: PendingLinkRecord  # as it was before the decision
    status: str  # approved | refused | cleared


def as_json(link: PendingLinkRecord) -> dict[str, object]:
    """A link as the CLI's ``--json`` and the admin API show it (its claims redacted as
    recorded claims are; none once decided)."""
    return {"id": link.id, "status": link.status, "connection": link.connection,
            "subject": link.subject, "issuer": link.issuer, "email": link.email,
            "account_id": link.account_id,
            "account_email": link.account_email, "account_status": link.account_status,
            "claims": dict(link.claims), "requested_at": link.created_at.isoformat(),
            "decided_at": link.decided_at.isoformat() if link.decided_at else None,
            "decided_by": link.decided_by, "reason": link.reason}


def list_links(ctx: ServiceContext, tenant: str, *,
               statuses: tuple[str, ...] = ("pending",)) -> list[PendingLinkRecord]:
    """The tenant's links in these statuses (default: those waiting), oldest first. Raises
    NotFound for an unknown tenant."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        tenant_id = uow.config.tenants.get(tenant).id
        return uow.identities.links.of_tenant(tenant_id, statuses=statuses)


def decide_link(ctx: ServiceContext, tenant: str, link_id: int, *, approve: bool, reason: str,
                actor: str) -> LinkDecision:
    """Approve (bind the identity to the account) or refuse a pending link. Raises NotFound
    (unknown tenant, or no such link in it), Conflict (not pending; approving a link to an
    inactive account, to one whose email changed since, or of an identity already bound),
    InvalidInput (no reason)."""
    return _decide(ctx, tenant, link_id, "approved" if approve else "refused", reason, actor)


def clear_refusal(ctx: ServiceContext, tenant: str, link_id: int, *, reason: str,
                  actor: str) -> LinkDecision:
    """Lift a refusal: the identity's next login is decided afresh. Raises NotFound,
    Conflict (the link is not refused), InvalidInput."""
    return _decide(ctx, tenant, link_id, "cleared", reason, actor)


def _decide(ctx: ServiceContext, tenant: str, link_id: int, status: str, reason: str,
            actor: str) -> LinkDecision:
    reason = reason.strip()
    if not reason:
        raise InvalidInput("a reason is required")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        record = uow.config.tenants.get(tenant)
        link = uow.identities.links.get(link_id)
        if link.tenant_id != record.id:
            raise NotFound(f"no pending link {link_id} in tenant {tenant}")
        if status == "approved":
            _bind(uow, link, now)
        uow.identities.links.decide(link_id, status, decided_by=actor, reason=reason, now=now)
        event = _EVENTS[status]
        data: dict[str, object] = {"link": link_id, "connection": link.connection,
                                   "subject": link.subject, "reason": reason}
        uow.audit.append(record.id, record.slug, AuditEvent(event, actor, data,
                                                            account_id=link.account_id), now)
        uow.outbox.add(record.id, event, {"link": link_id, "tenant": record.slug,
                                          "account_id": link.account_id,
                                          "connection": link.connection,
                                          "subject": link.subject}, now)
        uow.commit()
    return LinkDecision(link, status)


def _bind(uow: UnitOfWork, link: PendingLinkRecord, now: datetime) -> None:
    if link.status != "pending":
        raise Conflict(f"pending link {link.id} is not pending (it is {link.status})")
    if link.account_kind != "user":
        raise Conflict(f"account {link.account_id} is of kind {link.account_kind}: it is "
                       "never linked to a login identity")
    if link.account_status != "active":
        raise Conflict(f"account {link.account_id} is {link.account_status}: a link to an "
                       "inactive account cannot be approved (refuse it, or reactivate the "
                       "account first)")
    if link.email is not None and (link.account_email or "").lower() != link.email.lower():
        raise Conflict(f"account {link.account_id}'s email is now "
                       f"{link.account_email or 'unset'}, not {link.email} as when the link "
                       "was asked for: it cannot be approved (refuse it)")
    uow.identities.lock_identity(link.connection_id, link.subject)
    bound = uow.accounts.find_by_identity(link.connection_id, link.subject)
    if bound is not None:
        raise Conflict(f"{link.connection}/{link.subject} already signs in to account "
                       f"{bound.id}")
    try:
        uow.identities.add_identity(account_id=link.account_id, connection_id=link.connection_id,
                                    subject=link.subject, issuer=link.issuer,
                                    now=now, claims=link.claims or None,
                                    claims_at=link.created_at)
    except RaceLost:
        raise Conflict(f"{link.connection}/{link.subject} was bound meanwhile") from None
