"""Gauges read from the database when ``/metrics`` is scraped: each enabled connection's IdP
health (``jitprov_idp_up``), the age of the oldest event not yet fanned out to webhooks
(``jitprov_outbox_oldest_age_seconds``), and the database pool of the process that answers
(``jitprov_db_pool_checked_out``, ``jitprov_db_pool_size``). Read at scrape time, so every
worker and node tells the same state; two short reads per scrape. And the objects the
answering process left out of Python's full collections at start
(``jitprov_gc_frozen_objects``, see :func:`jitprov.web.asgi.settle_heap`).
"""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork


def exposition(ctx: ServiceContext) -> bytes:
    """The gauges above in the Prometheus text format."""
    registry = CollectorRegistry()
    idp_up = Gauge("jitprov_idp_up", "1 when the last thing heard from the connection's IdP "
                   "was a success (or nothing yet), 0 when it was a failure",
                   ["connection"], registry=registry)
    outbox_age = Gauge("jitprov_outbox_oldest_age_seconds", "age of the oldest event not yet "
                       "fanned out to webhooks (0 when none waits)", registry=registry)
    with UnitOfWork(ctx.db, readonly=True) as uow:
        health = uow.devices.health.of_enabled_connections()
        oldest = uow.outbox.oldest_pending_at()
    for slug, record in health:
        idp_up.labels(slug).set(1 if record.reachable else 0)
    outbox_age.set(max(0.0, (ctx.clock() - oldest).total_seconds()) if oldest else 0.0)
    pool = ctx.db.engine.pool
    checked_out = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if callable(checked_out) and callable(size):
        Gauge("jitprov_db_pool_checked_out", "database connections in use by this process",
              registry=registry).set(checked_out())
        Gauge("jitprov_db_pool_size", "database connections this process keeps",
              registry=registry).set(size())
    Gauge("jitprov_gc_frozen_objects", "objects this process left out of Python's full "
          "garbage collections when it started serving (0: none)",
          registry=registry).set(gc.get_freeze_count())
    return generate_latest(registry)
