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
from dataclasses import dataclass, replace
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from jitprov.core.audit import AuditEvent
from jitprov.core.errors import InvalidInput
from jitprov.core.events import unknown_event_types
from jitprov.services import metrics
from jitprov.services.context import ServiceContext
from jitprov.services.outbound import OutboundPolicy, OutboundRefused, checked, host_of
from jitprov.store.records import (
    DeliveryRecord,
    DueDelivery,
    TenantRecord,
    WebhookEndpointRecord,
)
from jitprov.store.unit_of_work import UnitOfWork

MAX_ATTEMPTS = 12  # 5 s doubling to the 1 h cap: about 2.4 h of retries
FIRST_RETRY = 5.0  # seconds
MAX_RETRY = 3600.0
SEND_TIMEOUT = 10.0  # seconds per network operation; the body of the answer is never read
#: how long one send holds its delivery: connect, write and read timeouts, and some slack
SEND_LEASE = timedelta(seconds=3 * SEND_TIMEOUT + 30)
BATCH = 20  # deliveries one pass claims; the lease covers them all sent one after another
FAN_OUT = 500  # outbox events one pass turns into deliveries, in one write transaction
MAX_URL = 2000


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

    @property
    def more_waiting(self) -> bool:
        """Whether the next pass may find work at once: this one sent something (a failed
        send is rescheduled, not retried now), or fanned out a full batch of events."""
        return bool(self.delivered or self.failed or self.dispatched >= FAN_OUT)


class UnsafeDestination(InvalidInput):
    code = "unsafe_destination"


def check_url(url: str) -> None:
    """A well-formed http(s) URL without credentials. Raises InvalidInput."""
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
        if host:
            host.encode("idna")
    except (ValueError, UnicodeError) as exc:
        raise InvalidInput(f"the webhook URL is not valid: {exc}") from None
    if (len(url) > MAX_URL or parts.scheme not in ("https", "http") or not host
            or parts.username or parts.password or (port is not None and not 0 < port < 65536)):
        raise InvalidInput("the webhook URL must be an http(s) URL without credentials, at "
                           f"most {MAX_URL} characters")


def webhook_policy(ctx: ServiceContext) -> OutboundPolicy:
    """The outbound guard's policy, lifted for webhooks by JITPROV_WEBHOOK_ALLOW_PRIVATE."""
    if ctx.webhook_allow_private:
        return replace(ctx.outbound, allow_private=True)
    return ctx.outbound


UNSAFE = ("the webhook URL cannot be used: its host does not resolve, or it resolves to a "
          "private or local address (set JITPROV_WEBHOOK_ALLOW_PRIVATE=1 or "
          "JITPROV_OUTBOUND_ALLOW to allow private ones)")


def check_destination(url: str, policy: OutboundPolicy) -> str:
    """Refuse a destination that resolves to this machine or a private network (loopback,
    RFC 1918, link-local and cloud metadata, CGNAT, multicast...) unless ``policy`` allows it:
    webhooks must not become a way to reach internal services. Checked when the endpoint is
    added and again before every send (DNS can change). Returns the checked address the send
    must connect to, so a second DNS answer between the check and the connect (DNS
    rebinding) is never used. Raises UnsafeDestination, with one text whether the host does
    not resolve or resolves to a refused address: a tenant admin adding a webhook learns
    nothing of the internal network's names."""
    parts = urlsplit(url)
    try:
        host = host_of(url)  # as the send will name it (IDNA 2008, as httpx encodes it)
    except (httpx.InvalidURL, UnicodeError):
        host = ""
    if host:
        try:
            return policy.destination(host,
                                      parts.port or (443 if parts.scheme == "https" else 80))
        except OutboundRefused:
            pass  # refused below, outside the handler: nothing of the check rides along
    raise UnsafeDestination(UNSAFE)


def check_event_types(event_types: Sequence[str]) -> list[str]:
    """The subscription as stored (``["*"]`` when empty). Raises InvalidInput for a name
    outside the catalogue."""
    types = [t.strip() for t in event_types if t.strip()] or ["*"]
    unknown = unknown_event_types(types)
    if unknown:
        raise InvalidInput(f"unknown event type(s) {', '.join(unknown)}: use * or names from "
                           "`jitprov webhooks events`")
    return types


MIN_SECRET_BYTES = 24


def check_secret(secret: str) -> None:
    """A Standard Webhooks signing secret: ``whsec_`` and base64 of at least
    :data:`MIN_SECRET_BYTES` random bytes. Raises InvalidInput (never quoting it)."""
    try:
        raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raw = b""
    if not secret.startswith("whsec_") or len(raw) < MIN_SECRET_BYTES:
        raise InvalidInput(f"a webhook secret must be whsec_ followed by the base64 of at "
                           f"least {MIN_SECRET_BYTES} random bytes")


def add_endpoint(ctx: ServiceContext, tenant: str, url: str, event_types: Sequence[str], *,
                 actor: str = "cli", secret: str | None = None) -> NewEndpoint:
    """Subscribe ``url`` to ``event_types`` (``*`` for all). Returns the signing secret
    (``secret`` when given, else a new one), shown once (stored sealed). Raises InvalidInput
    (UnsafeDestination), NotFound."""
    types = check_event_types(event_types)
    check_url(url)
    check_destination(url, webhook_policy(ctx))
    if secret is None:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    check_secret(secret)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        ten = uow.config.tenants.get(tenant)
        endpoint_id = uow.outbox.webhooks.add_endpoint(
            tenant_id=ten.id, url=url, sealed_secret=ctx.secretbox.seal({"secret": secret}),
            event_types=types, now=now)
        shown = urlsplit(url)._replace(query="", fragment="").geturl()  # no tokens in logs
        uow.audit.append(ten.id, ten.slug, AuditEvent(
            "webhook.created", actor, {"endpoint": endpoint_id, "url": shown,
                                       "event_types": types}), now)
        uow.commit()
    return NewEndpoint(endpoint_id, secret)


def change_endpoint(ctx: ServiceContext, endpoint_id: int, *,
                    event_types: Sequence[str] | None = None, secret: str | None = None,
                    actor: str = "cli") -> None:
    """Change what is given of an endpoint: its subscriptions, its signing secret (the
    next deliveries are signed with it). Audited ``webhook.updated`` (the secret's value
    never). Raises InvalidInput, NotFound."""
    types = None if event_types is None else check_event_types(event_types)
    if secret is not None:
        check_secret(secret)
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        tenant = _endpoint_tenant(uow, endpoint_id)
        uow.outbox.webhooks.change_endpoint(
            endpoint_id, event_types=types,
            sealed_secret=None if secret is None else ctx.secretbox.seal({"secret": secret}))
        data: dict[str, object] = {"endpoint": endpoint_id}
        if types is not None:
            data["event_types"] = types
        if secret is not None:
            data["secret_changed"] = True
        uow.audit.append(tenant.id, tenant.slug, AuditEvent("webhook.updated", actor, data),
                         now)
        uow.commit()


def remove_endpoint(ctx: ServiceContext, endpoint_id: int, *, actor: str = "cli") -> None:
    """Delete an endpoint and its delivery log; audited ``webhook.removed``. NotFound."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        tenant = _endpoint_tenant(uow, endpoint_id)
        uow.outbox.webhooks.remove_endpoint(endpoint_id)
        uow.audit.append(tenant.id, tenant.slug, AuditEvent(
            "webhook.removed", actor, {"endpoint": endpoint_id}), now)
        uow.commit()


def endpoint_secret(ctx: ServiceContext, endpoint_id: int) -> str:
    """An endpoint's signing secret (for comparison, never shown). Raises NotFound."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        sealed = uow.outbox.webhooks.endpoint_secret(endpoint_id)
    return str(ctx.secretbox.open(sealed)["secret"])


def _endpoint_tenant(uow: UnitOfWork, endpoint_id: int) -> TenantRecord:
    return uow.config.tenants.get_by_id(uow.outbox.webhooks.endpoint_tenant(endpoint_id))


def list_endpoints(ctx: ServiceContext, tenant: str) -> list[WebhookEndpointRecord]:
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.outbox.webhooks.endpoints(uow.config.tenants.get(tenant).id)


DELIVERY_STATUSES = ("pending", "delivered", "dead")


def list_deliveries(ctx: ServiceContext, tenant: str, *, status: str | None = None,
                    limit: int = 100) -> list[DeliveryRecord]:
    """The tenant's deliveries, newest first; ``status`` one of :data:`DELIVERY_STATUSES`.
    Raises InvalidInput, NotFound."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}, "
                           f"not {status!r}")
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return uow.outbox.webhooks.deliveries(uow.config.tenants.get(tenant).id, status=status,
                                              limit=limit)


def replay(ctx: ServiceContext, delivery_id: int, *, actor: str = "cli") -> None:
    """Queue a delivery again (a dead-lettered one, typically). Raises NotFound."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        tenant_id = uow.outbox.webhooks.replay(delivery_id, now)
        tenant = uow.config.tenants.get_by_id(tenant_id)
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
    limit = min(limit, BATCH)
    claim = secrets.token_hex(8)
    with UnitOfWork(ctx.db) as uow:
        dispatched = uow.outbox.webhooks.fan_out(now, limit=FAN_OUT)
        due = uow.outbox.webhooks.claim_due(now, lease=SEND_LEASE, claim=claim, limit=limit)
        uow.commit()
    delivered = failed = 0
    for delivery in due:  # outside any transaction: an HTTP call holds no lock
        # the lease is renewed per send (one send may take its connect, write and read
        # timeouts), so the claims of a node that dies free up within one lease, and a
        # delivery whose lease ran out while earlier ones were sent is left to its new holder
        with UnitOfWork(ctx.db) as uow:
            mine = uow.outbox.webhooks.renew_claim(delivery.id, claim=delivery.claim,
                                                   until=ctx.clock() + SEND_LEASE)
            uow.commit()
        if not mine:
            continue
        try:
            ok, status, error = _send(ctx, delivery)
        except Exception as exc:  # a bad secret, URL or answer: an attempt that failed
            ok, status, error = False, None, type(exc).__name__
        done = ctx.clock()
        attempts = delivery.attempts + 1
        retry_at = (None if ok or attempts >= MAX_ATTEMPTS
                    else done + timedelta(seconds=retry_delay(attempts)))
        with UnitOfWork(ctx.db) as uow:
            uow.outbox.webhooks.record_attempt(delivery.id, claim=delivery.claim, delivered=ok,
                                               status_code=status, error=error, now=done,
                                               next_attempt_at=retry_at)
            uow.commit()
        delivered += ok
        failed += not ok
        metrics.WEBHOOK_ATTEMPTS.labels("delivered" if ok else "failed").inc()
    with UnitOfWork(ctx.db, readonly=True) as uow:
        metrics.WEBHOOK_BACKLOG.set(uow.outbox.webhooks.backlog())
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
    address = check_destination(delivery.url, webhook_policy(ctx))
    try:
        # sent to the checked address by the outbound guard (the URL, Host and TLS keep the
        # name); the status line is the answer: the body is never read, whatever its size or
        # pace
        with ctx.http.stream("POST", delivery.url, content=body, headers=headers,
                             timeout=SEND_TIMEOUT,
                             extensions=checked(delivery.url, address)) as response:
            status = response.status_code
    except httpx.HTTPError as exc:
        return False, None, type(exc).__name__
    if 200 <= status < 300:
        return True, status, None
    return False, status, f"HTTP {status}"
