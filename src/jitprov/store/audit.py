"""The append-only, hash-chained audit log, one chain per tenant: append (the login hot path),
read in chain order, prune for retention behind an anchor. ``uow.audit``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` or
``Conflict`` for what is missing or taken, never a SQLAlchemy exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from jitprov.core.audit import GENESIS_HASH, AuditEvent, ChainedEvent, chain
from jitprov.core.errors import RaceLost
from jitprov.store import tables as t
from jitprov.store._common import prepared_insert, utc
from jitprov.store.fast import Prepared

# Statements of the login hot path, built once (see ``fast.py``).
_B = sa.bindparam
_AUDIT_HEAD = Prepared(sa.select(t.audit_head.c.seq, t.audit_head.c.hash)
               .where(t.audit_head.c.tenant_id == _B("tenant_id")).with_for_update())
_MOVE_AUDIT_HEAD = Prepared(t.audit_head.update()
                            .where(t.audit_head.c.tenant_id == _B("b_tenant_id"))
                            .values(seq=_B("b_seq"), hash=_B("b_hash")))
_INSERT_AUDIT_EVENT = prepared_insert(t.audit_event)
# PostgreSQL: the event's INSERT and the head's move in one statement (a data-modifying CTE;
# the head row is already locked by ``_AUDIT_HEAD``)
_INSERT_AND_MOVE = Prepared(cast(sa.Insert, _INSERT_AUDIT_EVENT.stmt).add_cte(
    t.audit_head.update().where(t.audit_head.c.tenant_id == _B("b_tenant_id"))
    .values(seq=_B("b_seq"), hash=_B("b_hash")).cte("moved_head")))


class AuditLog:
    """The append-only, hash-chained audit log (one chain per tenant)."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def append(self, tenant_id: int, tenant_slug: str, event: AuditEvent,
               now: datetime) -> ChainedEvent:
        """Chain and insert ``event``. Locks the tenant's chain head until commit, so events of
        one tenant are numbered without gaps even across nodes. Raises RaceLost when the
        tenant's first event is written concurrently (run the unit of work again). Two
        statements on PostgreSQL (read and lock the head; insert and move it), three on
        SQLite."""
        head = _AUDIT_HEAD.first(self._c, {"tenant_id": tenant_id})
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
        chained = chain(event, tenant=tenant_slug, seq=seq + 1, prev_hash=prev, occurred_at=now)
        row = {"tenant_id": tenant_id, "seq": chained.seq, "occurred_at": now,
               "type": chained.type, "actor": chained.actor, "account_id": chained.account_id,
               "request_id": chained.request_id, "data": chained.data,
               "prev_hash": chained.prev_hash, "hash": chained.hash}
        if head is not None and self._c.dialect.name == "postgresql":
            _INSERT_AND_MOVE.rowcount(self._c, {**row, "b_tenant_id": tenant_id,
                                                "b_seq": chained.seq, "b_hash": chained.hash})
            return chained
        _INSERT_AUDIT_EVENT.rowcount(self._c, row)
        if head is None:
            try:
                self._c.execute(t.audit_head.insert(), {
                    "tenant_id": tenant_id, "seq": chained.seq, "hash": chained.hash,
                    "anchor_seq": 0, "anchor_hash": GENESIS_HASH})
            except sa.exc.IntegrityError as exc:
                raise RaceLost("audit chain head created concurrently") from exc
        else:
            _MOVE_AUDIT_HEAD.rowcount(self._c, {"b_tenant_id": tenant_id, "b_seq": chained.seq,
                                                "b_hash": chained.hash})
        return chained

    def append_many(self, tenant_id: int, tenant_slug: str, events: list[AuditEvent],
                    now: datetime) -> None:
        """:meth:`append` for several events of one tenant, in order: one head read, one
        INSERT of them all, one head move (a batch costs three round trips, not three each)."""
        if not events:
            return
        head = _AUDIT_HEAD.first(self._c, {"tenant_id": tenant_id})
        if head is None:  # the tenant's first events: the head is created by the first
            self.append(tenant_id, tenant_slug, events[0], now)
            self.append_many(tenant_id, tenant_slug, events[1:], now)
            return
        seq, prev = head.seq, head.hash
        rows = []
        for event in events:
            seq += 1
            chained = chain(event, tenant=tenant_slug, seq=seq, prev_hash=prev,
                            occurred_at=now)
            prev = chained.hash
            rows.append({"tenant_id": tenant_id, "seq": chained.seq, "occurred_at": now,
                         "type": chained.type, "actor": chained.actor,
                         "account_id": chained.account_id, "request_id": chained.request_id,
                         "data": chained.data, "prev_hash": chained.prev_hash,
                         "hash": chained.hash})
        _INSERT_AUDIT_EVENT.many(self._c, rows)
        _MOVE_AUDIT_HEAD.rowcount(self._c, {"b_tenant_id": tenant_id, "b_seq": seq,
                                            "b_hash": prev})

    def events(self, tenant_id: int, *, after_seq: int = 0,
               batch: int = 1000) -> Iterator[ChainedEvent]:
        """Events of one tenant in chain order, read in batches."""
        while True:
            rows = self._c.execute(
                sa.select(t.audit_event, t.tenant.c.slug.label("tenant_slug"))
                .join(t.tenant, t.tenant.c.id == t.audit_event.c.tenant_id)
                .where(t.audit_event.c.tenant_id == tenant_id, t.audit_event.c.seq > after_seq)
                .order_by(t.audit_event.c.seq).limit(batch)).all()
            for r in rows:
                yield ChainedEvent(tenant=r.tenant_slug, seq=r.seq,
                                   occurred_at=utc(r.occurred_at), type=r.type, actor=r.actor,
                                   account_id=r.account_id, request_id=r.request_id,
                                   data=r.data, prev_hash=r.prev_hash, hash=r.hash)
            if len(rows) < batch:
                return
            after_seq = rows[-1].seq

    def anchor(self, tenant_id: int) -> tuple[int, str]:
        """(seq, hash) of the last event the retention policy removed; (0, genesis) if none."""
        row = self._c.execute(sa.select(t.audit_head.c.anchor_seq, t.audit_head.c.anchor_hash)
                              .where(t.audit_head.c.tenant_id == tenant_id)).first()
        return (0, GENESIS_HASH) if row is None else (row.anchor_seq, row.anchor_hash)

    def prune(self, tenant_id: int, before: datetime) -> int:
        """Remove the events that occurred before ``before`` (retention), keeping the chain
        verifiable: the last removed event becomes the anchor. Returns how many went."""
        _AUDIT_HEAD.first(self._c, {"tenant_id": tenant_id})  # lock out appends
        last = self._c.execute(
            sa.select(t.audit_event.c.seq, t.audit_event.c.hash)
            .where(t.audit_event.c.tenant_id == tenant_id,
                   t.audit_event.c.occurred_at < before)
            .order_by(t.audit_event.c.seq.desc()).limit(1)).first()
        if last is None:
            return 0
        result = self._c.execute(t.audit_event.delete().where(
            t.audit_event.c.tenant_id == tenant_id, t.audit_event.c.seq <= last.seq))
        self._c.execute(t.audit_head.update().where(t.audit_head.c.tenant_id == tenant_id)
                        .values(anchor_seq=last.seq, anchor_hash=last.hash))
        return int(result.rowcount)

    def head(self, tenant_id: int) -> tuple[int, str] | None:
        row = self._c.execute(sa.select(t.audit_head.c.seq, t.audit_head.c.hash)
                              .where(t.audit_head.c.tenant_id == tenant_id)).first()
        return None if row is None else (row.seq, row.hash)
