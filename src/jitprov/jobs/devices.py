"""Shared-device (frontline) housekeeping: probe the IdPs (connection health, which decides
whether a passkey sign-in is ``offline``) and forget spent or expired WebAuthn challenges. Safe
on every node."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from jitprov.services import passkeys
from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.jobs")

PROBE_EVERY = timedelta(seconds=30)


def purge_challenges(ctx: ServiceContext) -> int:
    with UnitOfWork(ctx.db) as uow:
        removed = uow.devices.challenges.purge_expired(ctx.clock())
        uow.commit()
    return removed


def run_periodically(ctx: ServiceContext, every: timedelta,
                     stop: threading.Event) -> threading.Thread:
    """Every ``every``, in a daemon thread until ``stop`` is set."""

    def loop() -> None:
        while not stop.wait(every.total_seconds()):
            try:
                down = [slug for slug, ok in passkeys.probe_idps(ctx).items() if not ok]
                if down:
                    log.warning("IdP unreachable for connection(s) %s", ", ".join(down))
                purge_challenges(ctx)
            except Exception:
                log.exception("frontline housekeeping failed; retrying at the next period")

    thread = threading.Thread(target=loop, name="jitprov-frontline", daemon=True)
    thread.start()
    return thread
