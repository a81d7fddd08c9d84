"""The outbox (events for webhooks, written in the transaction of the change they announce) and
the webhook endpoints and deliveries fanned out from it. ``uow.outbox``, with
``uow.outbox.webhooks``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` or
``Conflict`` for what is missing or taken, never a SQLAlchemy exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from jitprov.core.errors import Conflict, NotFound
from jitprov.core.events import WEBHOOK_EVENTS
from jitprov.store import tables as t
from jitprov.store._common import opt_utc, prepared_insert, utc
from jitprov.store.fast import Prepared, WithCommit
from jitprov.store.records import DeliveryRecord, DueDelivery, WebhookEndpointRecord

_INSERT_OUTBOX_EVENT = prepared_insert(t.outbox_event)


def _insert_outbox_events() -> sa.Insert:
    """PostgreSQL: the events of ``events`` (a JSON array of ``[type, payload]``) in one
    INSERT. ``ORDER BY`` the array position: the ids (defaults, evaluated per row as the
    sorted rows reach the INSERT) follow the order of the array."""
    e = (sa.func.json_array_elements(sa.bindparam("events", type_=sa.JSON))
         .table_valued("value", with_ordinality="n").render_derived(name="e"))
    return t.outbox_event.insert().from_select(
        ["tenant_id", "type", "payload", "created_at", "delivered_at", "attempts"],
        sa.select(sa.bindparam("tenant_id", type_=sa.Integer),
                  e.c.value.op("->>")(sa.literal_column("0")),
                  e.c.value.op("->")(sa.literal_column("1")),
                  sa.bindparam("created_at", type_=t.TS), sa.null(), sa.literal_column("0"))
        .select_from(e).order_by(e.c.n))


_INSERT_OUTBOX_EVENTS = Prepared(_insert_outbox_events())


class WebhookRepository:
    """Webhook endpoints, and deliveries fanned out from the outbox.

    Several nodes may run the worker at once: the outbox fan-out and the claim of due
    deliveries take their rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite runs one
    writer at a time), and a claim leases the row by moving ``next_attempt_at``, so the HTTP
    call happens outside any transaction and no other worker takes it meanwhile.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def add_endpoint(self, *, tenant_id: int, url: str, sealed_secret: str,
                     event_types: Sequence[str], now: datetime) -> int:
        new_id = self._c.execute(t.webhook_endpoint.insert().values(
            tenant_id=tenant_id, url=url, secret=sealed_secret, event_types=list(event_types),
            enabled=True, created_at=now)).inserted_primary_key
        assert new_id is not None  # noqa: S101
        return int(new_id[0])

    def endpoint_secret(self, endpoint_id: int) -> str:
        """The sealed signing secret of an endpoint. Raises NotFound."""
        value = self._c.execute(sa.select(t.webhook_endpoint.c.secret)
                                .where(t.webhook_endpoint.c.id == endpoint_id)).scalar()
        if value is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return str(value)

    def endpoint_tenant(self, endpoint_id: int) -> int:
        """The id of the endpoint's tenant. Raises NotFound."""
        value = self._c.execute(sa.select(t.webhook_endpoint.c.tenant_id)
                                .where(t.webhook_endpoint.c.id == endpoint_id)).scalar()
        if value is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return int(value)

    def change_endpoint(self, endpoint_id: int, *, event_types: Sequence[str] | None = None,
                        sealed_secret: str | None = None) -> None:
        """Replace what is given of an endpoint's subscriptions and secret. NotFound."""
        values: dict[str, object] = {}
        if event_types is not None:
            values["event_types"] = list(event_types)
        if sealed_secret is not None:
            values["secret"] = sealed_secret
        result = self._c.execute(t.webhook_endpoint.update()
                                 .where(t.webhook_endpoint.c.id == endpoint_id)
                                 .values(**values))
        if not result.rowcount:
            raise NotFound(f"no webhook endpoint {endpoint_id}")

    def remove_endpoint(self, endpoint_id: int) -> None:
        """Delete an endpoint and its deliveries. Raises NotFound."""
        self._c.execute(t.webhook_delivery.delete()
                        .where(t.webhook_delivery.c.endpoint_id == endpoint_id))
        result = self._c.execute(t.webhook_endpoint.delete()
                                 .where(t.webhook_endpoint.c.id == endpoint_id))
        if not result.rowcount:
            raise NotFound(f"no webhook endpoint {endpoint_id}")

    def endpoints(self, tenant_id: int) -> list[WebhookEndpointRecord]:
        rows = self._c.execute(sa.select(t.webhook_endpoint)
                               .where(t.webhook_endpoint.c.tenant_id == tenant_id)
                               .order_by(t.webhook_endpoint.c.id))
        return [WebhookEndpointRecord(r.id, r.tenant_id, r.url, tuple(r.event_types), r.enabled,
                                      utc(r.created_at)) for r in rows]

    def fan_out(self, now: datetime, *, limit: int = 500) -> int:
        """Turn undispatched outbox events into one delivery per subscribed endpoint; returns
        how many events were dispatched."""
        events = self._c.execute(
            sa.select(t.outbox_event.c.id, t.outbox_event.c.tenant_id, t.outbox_event.c.type)
            .where(t.outbox_event.c.delivered_at.is_(None))
            .order_by(t.outbox_event.c.id).limit(limit)
            .with_for_update(skip_locked=True)).all()
        if not events:
            return 0
        tenants = {e.tenant_id for e in events}
        subscribed: dict[int, list[tuple[int, tuple[str, ...]]]] = {}
        for row in self._c.execute(
                sa.select(t.webhook_endpoint.c.id, t.webhook_endpoint.c.tenant_id,
                          t.webhook_endpoint.c.event_types)
                .where(t.webhook_endpoint.c.enabled.is_(True),
                       t.webhook_endpoint.c.tenant_id.in_(tenants))):
            subscribed.setdefault(row.tenant_id, []).append((row.id, tuple(row.event_types)))
        deliveries = [
            {"outbox_id": e.id, "endpoint_id": endpoint_id, "event_type": e.type,
             "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
            for e in events for endpoint_id, types in subscribed.get(e.tenant_id, [])
            if "*" in types or e.type in types]
        if deliveries:
            self._c.execute(t.webhook_delivery.insert(), deliveries)
        self._c.execute(t.outbox_event.update()
                        .where(t.outbox_event.c.id.in_([e.id for e in events]))
                        .values(delivered_at=now))
        return len(events)

    def claim_due(self, now: datetime, *, lease: timedelta, claim: str,
                  limit: int = 50) -> list[DueDelivery]:
        """Due pending deliveries, leased to this worker pass (``claim``) until
        ``now + lease``; only the holder of the claim can record their result."""
        ids = [r.id for r in self._c.execute(
            sa.select(t.webhook_delivery.c.id)
            .where(t.webhook_delivery.c.status == "pending",
                   t.webhook_delivery.c.next_attempt_at <= now)
            .order_by(t.webhook_delivery.c.next_attempt_at, t.webhook_delivery.c.id)
            .limit(limit).with_for_update(skip_locked=True))]
        if not ids:
            return []
        self._c.execute(t.webhook_delivery.update().where(t.webhook_delivery.c.id.in_(ids))
                        .values(next_attempt_at=now + lease, claim=claim))
        rows = self._c.execute(
            sa.select(t.webhook_delivery.c.id, t.webhook_delivery.c.outbox_id,
                      t.webhook_delivery.c.event_type, t.webhook_delivery.c.attempts,
                      t.webhook_endpoint.c.url, t.webhook_endpoint.c.secret,
                      t.outbox_event.c.payload, t.outbox_event.c.created_at)
            .join(t.webhook_endpoint,
                  t.webhook_endpoint.c.id == t.webhook_delivery.c.endpoint_id)
            .join(t.outbox_event, t.outbox_event.c.id == t.webhook_delivery.c.outbox_id)
            .where(t.webhook_delivery.c.id.in_(ids)).order_by(t.webhook_delivery.c.id))
        return [DueDelivery(id=r.id, outbox_id=r.outbox_id, url=r.url, sealed_secret=r.secret,
                            event_type=r.event_type, payload=r.payload, attempts=r.attempts,
                            created_at=utc(r.created_at), claim=claim) for r in rows]

    def renew_claim(self, delivery_id: int, *, claim: str, until: datetime) -> bool:
        """Extend this pass's lease on one delivery right before its send; False when the
        lease ran out and another pass took it meanwhile (then this pass must not send)."""
        result = self._c.execute(
            t.webhook_delivery.update()
            .where(t.webhook_delivery.c.id == delivery_id,
                   t.webhook_delivery.c.claim == claim,
                   t.webhook_delivery.c.status == "pending")
            .values(next_attempt_at=until))
        return bool(result.rowcount)

    def record_attempt(self, delivery_id: int, *, claim: str, delivered: bool,
                       status_code: int | None, error: str | None, now: datetime,
                       next_attempt_at: datetime | None) -> bool:
        """After one attempt: delivered, retry at ``next_attempt_at``, or dead (None). Only
        the pass still holding the claim writes (a late result never undoes another
        worker's delivery); returns whether it did."""
        status = "delivered" if delivered else "pending" if next_attempt_at else "dead"
        result = self._c.execute(
            t.webhook_delivery.update()
            .where(t.webhook_delivery.c.id == delivery_id,
                   t.webhook_delivery.c.claim == claim,
                   t.webhook_delivery.c.status == "pending")
            .values(status=status, attempts=t.webhook_delivery.c.attempts + 1, claim=None,
                                last_status=status_code,
                                last_error=(error or "")[:500] or None,
                                next_attempt_at=next_attempt_at or now,
                                delivered_at=now if delivered else None))
        return bool(result.rowcount)

    def backlog(self) -> int:
        """Deliveries waiting (pending) plus outbox events not yet fanned out."""
        pending = self._c.execute(sa.select(sa.func.count()).select_from(t.webhook_delivery)
                                  .where(t.webhook_delivery.c.status == "pending")).scalar_one()
        undispatched = self._c.execute(
            sa.select(sa.func.count()).select_from(t.outbox_event)
            .where(t.outbox_event.c.delivered_at.is_(None))).scalar_one()
        return int(pending) + int(undispatched)

    def deliveries(self, tenant_id: int, *, status: str | None = None,
                   limit: int = 100) -> list[DeliveryRecord]:
        """Newest first."""
        query = (sa.select(t.webhook_delivery)
                 .join(t.webhook_endpoint,
                       t.webhook_endpoint.c.id == t.webhook_delivery.c.endpoint_id)
                 .where(t.webhook_endpoint.c.tenant_id == tenant_id)
                 .order_by(t.webhook_delivery.c.id.desc()).limit(limit))
        if status:
            query = query.where(t.webhook_delivery.c.status == status)
        return [DeliveryRecord(r.id, r.outbox_id, r.endpoint_id, r.event_type, r.status,
                               r.attempts, utc(r.next_attempt_at), r.last_status, r.last_error,
                               opt_utc(r.delivered_at)) for r in self._c.execute(query)]

    def replay(self, delivery_id: int, now: datetime) -> int:
        """Send a dead (or delivered) delivery again, from a fresh retry budget; returns its
        tenant id. Raises NotFound, or Conflict for one still pending."""
        row = self._c.execute(
            sa.select(t.webhook_endpoint.c.tenant_id)
            .join(t.webhook_delivery,
                  t.webhook_delivery.c.endpoint_id == t.webhook_endpoint.c.id)
            .where(t.webhook_delivery.c.id == delivery_id)).first()
        if row is None:
            raise NotFound(f"no webhook delivery {delivery_id}")
        result = self._c.execute(
            t.webhook_delivery.update()
            .where(t.webhook_delivery.c.id == delivery_id,
                   t.webhook_delivery.c.status.in_(["dead", "delivered"]))
            .values(status="pending", attempts=0, next_attempt_at=now, delivered_at=None,
                    claim=None))
        if not result.rowcount:
            raise Conflict(f"webhook delivery {delivery_id} is still being delivered")
        return int(row.tenant_id)



def _check_types(types: Sequence[str]) -> None:
    """An event type outside the catalogue is a programming error: no endpoint could ever
    subscribe to it (``core.events``)."""
    for kind in types:
        if kind not in WEBHOOK_EVENTS:
            raise ValueError(f"event type {kind!r} is not in core.events.WEBHOOK_EVENTS")


class Outbox:
    """Events for webhooks, written in the same transaction as the change they announce;
    ``webhooks``: the endpoints and the deliveries fanned out from these events."""

    def __init__(self, conn: sa.Connection, later: WithCommit) -> None:
        self._c = conn
        self._later = later
        self.webhooks = WebhookRepository(conn)

    def add(self, tenant_id: int, type: str, payload: Mapping[str, object],
            now: datetime) -> None:
        _check_types((type,))
        _INSERT_OUTBOX_EVENT.rowcount(self._c, {
            "tenant_id": tenant_id, "type": type, "payload": dict(payload), "created_at": now,
            "delivered_at": None, "attempts": 0})

    def add_many(self, tenant_id: int, events: Sequence[tuple[str, Mapping[str, object]]],
                 now: datetime, with_commit: bool = False) -> None:
        """Several (type, payload) events, their ids in the order given (webhooks are
        delivered in outbox id order). PostgreSQL: one statement (``_INSERT_OUTBOX_EVENTS``;
        ``with_commit``: written with the unit's commit); SQLite: one ``executemany``."""
        _check_types([kind for kind, _ in events])
        if not events:
            return
        if self._c.dialect.name == "postgresql":
            row = {"tenant_id": tenant_id, "created_at": now,
                   "events": [[kind, dict(payload)] for kind, payload in events]}
            self._later.write(_INSERT_OUTBOX_EVENTS, row, with_commit=with_commit)
            return
        _INSERT_OUTBOX_EVENT.many(self._c, [
            {"tenant_id": tenant_id, "type": kind, "payload": dict(payload),
             "created_at": now, "delivered_at": None, "attempts": 0}
            for kind, payload in events])

    def oldest_pending_at(self) -> datetime | None:
        """When the oldest event not yet fanned out to webhooks was written."""
        return opt_utc(self._c.execute(sa.select(sa.func.min(t.outbox_event.c.created_at))
                                       .where(t.outbox_event.c.delivered_at.is_(None))
                                       ).scalar())

    def pending(self, limit: int = 100) -> Sequence[tuple[int, str, Mapping[str, object]]]:
        """Undelivered events, oldest first: (id, type, payload)."""
        rows = self._c.execute(sa.select(t.outbox_event.c.id, t.outbox_event.c.type,
                                         t.outbox_event.c.payload)
                               .where(t.outbox_event.c.delivered_at.is_(None))
                               .order_by(t.outbox_event.c.id).limit(limit))
        return [(r.id, r.type, r.payload) for r in rows]
