"""The re-evaluation job of ``serve`` and ``dev``, on every node (batches are claimed with
``SKIP LOCKED``, so nodes share the queue): passes back to back while the queue holds
accounts (a 10,000-member group deleted drains in seconds, one batch per transaction with a
breath between batches, so no other request waits longer than about one batch), then one pass
every ``every``."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from jitprov.services.context import ServiceContext
from jitprov.services.entitlements import process_queue

log = logging.getLogger("jitprov.jobs")

#: between two batches: the requests waiting for the write lock (SQLite) or the tenant's audit
#: chain head go first (a lock is not fair: re-taken at once, it could starve them)
BREATH = 0.005


def run_periodically(ctx: ServiceContext, every: timedelta,
                     stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        pause = 0.0  # at start, finish what a stopped node left queued
        while not stop.wait(pause):
            pause = every.total_seconds()
            try:
                if process_queue(ctx):
                    pause = BREATH  # more may wait
            except Exception:
                log.exception("re-evaluation pass failed; retrying at the next one")

    thread = threading.Thread(target=loop, name="jitprov-entitlements", daemon=True)
    thread.start()
    return thread
