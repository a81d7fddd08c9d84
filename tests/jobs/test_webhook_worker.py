"""The webhook worker runs its passes back to back while they find work, then waits."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from jitprov.jobs import webhooks
from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.webhooks import FAN_OUT, RunReport
from jitprov.store.unit_of_work import UnitOfWork


def test_passes_run_back_to_back_while_they_send_then_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent = [20, 20, 7, 0, 0]  # what each pass sends: a backlog of 47, then nothing
    passes: list[float] = []
    done = threading.Event()

    def deliver_due(ctx: Any) -> RunReport:
        passes.append(time.monotonic())
        n = sent.pop(0) if sent else 0
        if len(passes) == 4:
            done.set()
        return RunReport(dispatched=0, delivered=n, failed=0)

    monkeypatch.setattr(webhooks, "deliver_due", deliver_due)
    stop = threading.Event()
    webhooks.run_periodically(None, timedelta(hours=1), stop)  # type: ignore[arg-type]
    try:
        # at start and through the backlog without waiting: four passes long before an hour
        assert done.wait(10)
        time.sleep(0.2)
        assert len(passes) == 4  # the idle fourth pass waits for the next period
    finally:
        stop.set()


def test_events_past_one_pass_are_fanned_out_without_waiting_a_period(
        ctx: ServiceContext) -> None:
    # a shift change announces more events a second than one pass fans out: with an hour
    # between passes, every event still leaves the outbox at once
    admin.create_tenant(ctx, "hospital")
    with UnitOfWork(ctx.db) as uow:
        tenant = uow.config.tenants.get("hospital")
        uow.outbox.add_many(tenant.id, [("account.created", {"n": n})
                                        for n in range(2 * FAN_OUT + 100)], ctx.clock())
        uow.commit()
    stop = threading.Event()
    worker = webhooks.run_periodically(ctx, timedelta(hours=1), stop)
    try:
        deadline = time.monotonic() + 20
        waiting = True
        while waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            with UnitOfWork(ctx.db, readonly=True) as uow:
                waiting = uow.outbox.oldest_pending_at() is not None
        assert not waiting
    finally:
        stop.set()
        worker.join(timeout=10)
