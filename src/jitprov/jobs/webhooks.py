"""The webhook worker of ``serve``, on every node (the claim is safe): passes back to back while
they find work (at start, while a surge's announcements drain at the speed of the receivers,
and while more events wait than one pass fans out), then one pass every ``every``."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from jitprov.services.context import ServiceContext
from jitprov.services.webhooks import deliver_due

log = logging.getLogger("jitprov.jobs")


def run_periodically(ctx: ServiceContext, every: timedelta,
                     stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        pause = 0.0  # at start, deliver what waits at once
        while not stop.wait(pause):
            pause = every.total_seconds()
            try:
                report = deliver_due(ctx)
                if report.delivered or report.failed:
                    log.info("webhooks: %d delivered, %d failed", report.delivered,
                             report.failed)
                if report.more_waiting:
                    pause = 0
            except Exception:
                log.exception("webhook pass failed; retrying at the next one")

    thread = threading.Thread(target=loop, name="jitprov-webhooks", daemon=True)
    thread.start()
    return thread
