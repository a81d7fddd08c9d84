"""The webhook worker of ``serve``: one pass a second, on every node (the claim is safe)."""

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
        while not stop.wait(every.total_seconds()):
            try:
                report = deliver_due(ctx)
                if report.delivered or report.failed:
                    log.info("webhooks: %d delivered, %d failed", report.delivered,
                             report.failed)
            except Exception:
                log.exception("webhook pass failed; retrying at the next one")

    thread = threading.Thread(target=loop, name="jitprov-webhooks", daemon=True)
    thread.start()
    return thread
