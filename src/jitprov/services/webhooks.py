"""Webhooks: apps hear about every account change, at least once, signed.

Changes write outbox events in their own transaction; the worker (``deliver_due``, run by
``serve`` every second on every node) fans them out to the tenant's subscribed endpoints and
POSTs each one, signed per the Standard Webhooks spec (https://www.standardwebhooks.com:
``webhook-id``, ``webhook-timestamp``, ``webhook-signature``). ``webhook-id`` is the same for
every retry of an event: receivers deduplicate on it. A failed attempt is retried with
exponential backoff and jitter (5 s doubling, 1 h cap); after MAX_ATTEMPTS (about 2.4 hours)
the delivery is dead and can be replayed. A receiver down for an hour loses nothing.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput
from jitprov.services import metrics
from jitprov.services.context import ServiceContext
from jitprov.store.records import DeliveryRecord, DueDelivery, WebhookEndpointRecord
from jitprov.store.unit_of_work import UnitOfWork

MAX_ATTEMPTS = 12  # 5 s doubling to the 1 h cap: about 2.4 h of retries
FIRST_RETRY = 5.0  # seconds
MAX_RETRY = 3600.0
LEASE = timedelta(seconds=60)  # a claimed delivery is this worker's for as long
SEND_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    id: int
    secret: str  # shown once

    def __repr__(self) -> str:
        return f"NewEndpoint(id={self.id}, secret=<hidden>)"


@dataclass(frozen=True, slots=True)
class RunReport:
    dispatched: int
    delivered: int
    failed: int


def add_endpoint(ctx: ServiceContext, tenant: str, url: str, event_types: Sequence[str], *,
                 actor: str = "cli") -> NewEndpoint:
    """Subscribe ``url`` to ``event_types`` (``*`` for all). Returns the signing secret, shown
    once (stored sealed). Raises InvalidInput, NotFound."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"the webhook URL must be an http(s) URL, not {url!r}")
    types = [t.strip() for t in event_types if t.strip()] or ["*"]
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.tenants.get(tenant)
        endpoint_id = uow.webhooks.add_endpoint(
            tenant_id=ten.id, url=url, sealed_secret=ctx.secretbox.seal({"secret": secret}),
            event_types=types, now=now)
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "webhook.created", actor, {"endpoint": endpoint_id, "url": url,
                                       "event_types": types}), now)
        uow.commit()
    return NewEndpoint(endpoint_id, secret)


def list_endpoints(ctx: ServiceContext, tenant: str) -> list[WebhookEndpointRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.webhooks.endpoints(uow.tenants.get(tenant).id)


def list_deliveries(ctx: ServiceContext, tenant: str, *, status: str | None = None,
                    limit: int = 100) -> list[DeliveryRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.webhooks.deliveries(uow.tenants.get(tenant).id, status=status, limit=limit)


def replay(ctx: ServiceContext, delivery_id: int, *, actor: str = "cli") -> None:
    """Queue a delivery again (a dead-lettered one, typically). Raises NotFound."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        tenant_id = uow.webhooks.replay(delivery_id, now)
        tenant = next(t for t in uow.tenants.list() if t.id == tenant_id)
        uow.audit.append(tenant_id, tenant.slug, AuditEvent(
            "webhook.replayed", actor, {"delivery": delivery_id}), now)
        uow.commit()


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with +-20 % jitter so a
    recovered receiver is not hit by every retry at once."""
    base: float = min(MAX_RETRY, FIRST_RETRY * 2.0 ** max(0, attempts - 1))
    generator = rng if rng is not None else random.Random()  # noqa: S311 - jitter only
    return base * generator.uniform(0.8, 1.2)


def deliver_due(ctx: ServiceContext, *, limit: int = 50) -> RunReport:
    """One worker pass: fan out new outbox events, then send what is due. Safe to run on
    several nodes at once."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        dispatched = uow.webhooks.fan_out(now)
        due = uow.webhooks.claim_due(now, lease=LEASE, limit=limit)
        uow.commit()
    delivered = failed = 0
    for delivery in due:  # outside any transaction: an HTTP call holds no lock
        ok, status, error = _send(ctx, delivery)
        done = ctx.clock()
        attempts = delivery.attempts + 1
        retry_at = (None if ok or attempts >= MAX_ATTEMPTS
                    else done + timedelta(seconds=retry_delay(attempts)))
        with UnitOfWork(ctx.db) as uow:
            uow.webhooks.record_attempt(delivery.id, delivered=ok, status_code=status,
                                        error=error, now=done, next_attempt_at=retry_at)
            uow.commit()
        delivered += ok
        failed += not ok
        metrics.WEBHOOK_ATTEMPTS.labels("delivered" if ok else "failed").inc()
    metrics.WEBHOOK_BACKLOG.set(failed)
    return RunReport(dispatched, delivered, failed)


def message_body(delivery: DueDelivery) -> str:
    return json.dumps({"type": delivery.event_type,
                       "timestamp": delivery.created_at.isoformat(),
                       "data": delivery.payload}, sort_keys=True, separators=(",", ":"))


def _send(ctx: ServiceContext, delivery: DueDelivery) -> tuple[bool, int | None, str | None]:
    secret = ctx.secretbox.open(delivery.sealed_secret)["secret"]
    msg_id = f"msg_{delivery.outbox_id}"
    now = ctx.clock()
    body = message_body(delivery)
    signature = Webhook(secret).sign(msg_id, now, body)
    headers = {"content-type": "application/json", "webhook-id": msg_id,
               "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
               "user-agent": "jitprov-webhooks"}
    try:
        response = ctx.http.post(delivery.url, content=body, headers=headers,
                                 timeout=SEND_TIMEOUT)
    except httpx.HTTPError as exc:
        return False, None, type(exc).__name__
    if 200 <= response.status_code < 300:
        return True, response.status_code, None
    return False, response.status_code, f"HTTP {response.status_code}"
