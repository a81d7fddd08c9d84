"""Housekeeping: delete expired sessions, login requests, role grants (announced) and
recorded login claims, sweep dormant accounts. Idempotent: safe to run on every node."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from jitprov.services import accounts, lifecycle, mapping_preview
from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.jobs")

#: expired sessions are kept this long (audit questions about "was X signed in yesterday")
SESSION_RETENTION = timedelta(days=7)


def purge_expired(ctx: ServiceContext) -> tuple[int, int]:
    """Remove sessions expired more than SESSION_RETENTION ago and login requests already
    expired; returns (sessions, login requests) removed."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        sessions = uow.sessions.purge_expired(now - SESSION_RETENTION)
        requests = uow.logins.requests.purge_expired(now)
        uow.commit()
    return sessions, requests


def purge_saml_replay(ctx: ServiceContext) -> int:
    """Forget SAML assertion IDs and single-use token ids (logout tokens' ``jti``) whose
    message has expired (it can no longer be replayed: it is refused as expired); returns
    how many were removed."""
    with UnitOfWork(ctx.db) as uow:
        removed = uow.logins.saml_replay.purge_expired(ctx.clock())
        removed += uow.logins.token_replay.purge_expired(ctx.clock())
        uow.commit()
    return removed


def purge_expired_grants(ctx: ServiceContext) -> int:
    """Delete the role grants past their expiry, each audited (``grant.expired``) and
    announced (``role.revoked``, reason ``expired``). They stopped counting at their expiry
    already; this removes the rows and tells the receivers. Returns how many."""
    return accounts.remove_expired_grants(ctx)


def purge_recorded_claims(ctx: ServiceContext) -> int:
    """Clear the recorded login claims (mapping editor) older than each tenant's retention
    (``claims_retention_days``, default 30); returns how many were cleared."""
    return mapping_preview.purge_recorded_claims(ctx)


def run_periodically(ctx: ServiceContext, every: timedelta,
                     stop: threading.Event) -> threading.Thread:
    """Every ``every``, in a daemon thread until ``stop`` is set: purge what expired, and
    sweep dormant accounts (per tenant policy; one node at a time per tenant)."""

    def loop() -> None:
        while not stop.wait(every.total_seconds()):
            try:
                sessions, requests = purge_expired(ctx)
                assertions = purge_saml_replay(ctx)
                grants = purge_expired_grants(ctx)
                claims = purge_recorded_claims(ctx)
                log.info("purged %d sessions, %d login requests, %d SAML assertion ids, "
                         "%d expired grants, %d recorded claims", sessions, requests,
                         assertions, grants, claims)
                for report in lifecycle.sweep(ctx):
                    if report.deactivated or report.warned:
                        log.info("tenant %s: %d dormant accounts deactivated, %d warned",
                                 report.tenant, len(report.deactivated), len(report.warned))
            except Exception:
                log.exception("housekeeping failed; retrying at the next period")

    thread = threading.Thread(target=loop, name="jitprov-purge", daemon=True)
    thread.start()
    return thread
