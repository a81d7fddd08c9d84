"""``login.failed``: the audit event of a login that failed before any decision (bad or spent
state, a response that does not verify, an IdP error), shared by every protocol adapter."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.login")


@contextmanager
def failures_audited(ctx: ServiceContext, connection_slug: str,
                     request_id: str | None) -> Iterator[None]:
    """Around a protocol adapter's work before the decision (verify the response, redeem the
    code): whatever it refuses is audited as ``login.failed`` and raised again; a ValueError
    or TypeError (an unreadable sealed key, say) becomes a readable InvalidInput, never a 500."""
    try:
        yield
    except (JitprovError, ValueError, TypeError) as exc:
        raise audited_failure(ctx, connection_slug, request_id, exc)  # noqa: B904 - its cause set


def audited_failure(ctx: ServiceContext, connection_slug: str, request_id: str | None,
                    exc: JitprovError | ValueError | TypeError) -> JitprovError:
    """:func:`failures_audited` for one exception: ``exc`` audited, and what to raise for it
    (``exc`` itself, or for a ValueError or TypeError a readable InvalidInput whose
    ``__cause__`` it is)."""
    if isinstance(exc, JitprovError):
        record_login_failure(ctx, connection_slug, exc.code, str(exc), request_id=request_id)
        return exc
    record_login_failure(ctx, connection_slug, "misconfigured", type(exc).__name__,
                         request_id=request_id)
    refused = InvalidInput("this sign-in connection is misconfigured; tell the administrator")
    refused.__cause__ = exc
    return refused


def record_login_failure(ctx: ServiceContext, connection_slug: str, code: str, reason: str, *,
                         request_id: str | None, subject: str | None = None) -> None:
    """Audit a login that failed before any decision: ``login.failed`` with the reason, in the
    connection's tenant. Never raises: the user's error page matters more than this event,
    and the server log keeps the failure if the database cannot."""
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
