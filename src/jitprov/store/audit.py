"""The append-only, hash-chained audit log, one chain per tenant: append (the login hot path;
chained and written at the end of the unit of work), read in chain order, prune for retention
behind an anchor. ``uow.audit``.

Same contract as every repository here: narrow methods over one open transaction (see
``unit_of_work.py``), copies out (core values or ``records.py`` records), ``NotFound`` or
``Conflict`` for what is missing or taken, never a SQLAlchemy exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa

from jitprov.core.audit import (
    GENESIS_HASH,
    AuditEvent,
    ChainedEvent,
    canonical_json,
    hash_body,
    link_hash,
)
from jitprov.core.errors import RaceLost
from jitprov.store import tables as t
from jitprov.store._common import utc
from jitprov.store.fast import Prepared, pipeline

# Statements of the login hot path, built once (see ``fast.py``).
_B = sa.bindparam
_AUDIT_HEAD = Prepared(sa.select(t.audit_head.c.seq, t.audit_head.c.hash)
               .where(t.audit_head.c.tenant_id == _B("tenant_id")).with_for_update())
_MOVE_AUDIT_HEAD = Prepared(t.audit_head.update()
                            .where(t.audit_head.c.tenant_id == _B("b_tenant_id"))
                            .values(seq=_B("b_seq"), hash=_B("b_hash")))
# the event's data bound as the canonical JSON it was hashed from, encoded once when queued
_INSERT_AUDIT_EVENT = Prepared(t.audit_event.insert().values(
    {c.name: sa.bindparam(c.name, type_=sa.Text if c.name == "data" else c.type)
     for c in t.audit_event.columns if c.name != "id"}))
# PostgreSQL: take the tenant's head, number and hash the event, insert it: one statement. The
# head's upsert computes the hash from the previous one (``hash_body`` gives the rest of the
# hashed text, encoded here once); a tenant without a head gets one, as the event's first
_APPEND = Prepared(sa.text("""
WITH moved AS (
    INSERT INTO audit_head AS h (tenant_id, seq, hash, prev_hash, anchor_seq, anchor_hash)
    VALUES (:tenant_id, 1, :first_hash, :genesis, 0, :genesis)
    ON CONFLICT (tenant_id) DO UPDATE SET
        seq = h.seq + 1,
        prev_hash = h.hash,
        hash = encode(sha256(convert_to(h.hash || E'\\n', 'UTF8') || :prefix
                             || convert_to(CAST(h.seq + 1 AS text), 'UTF8') || :suffix), 'hex')
    RETURNING h.seq, h.hash, h.prev_hash)
INSERT INTO audit_event (tenant_id, seq, occurred_at, type, actor, account_id, request_id,
                         data, prev_hash, hash)
SELECT :tenant_id, moved.seq, :occurred_at, :type, :actor, :account_id, :request_id,
       CAST(:data AS JSON), moved.prev_hash, moved.hash
FROM moved""").bindparams(
    sa.bindparam("tenant_id", type_=sa.Integer), sa.bindparam("first_hash", type_=sa.String),
    sa.bindparam("genesis", GENESIS_HASH, type_=sa.String),
    sa.bindparam("prefix", type_=sa.LargeBinary), sa.bindparam("suffix", type_=sa.LargeBinary),
    sa.bindparam("occurred_at", type_=t.audit_event.c.occurred_at.type),
    sa.bindparam("type", type_=sa.String), sa.bindparam("actor", type_=sa.String),
    sa.bindparam("account_id", type_=sa.String), sa.bindparam("request_id", type_=sa.String),
    sa.bindparam("data", type_=sa.Text)))


class AuditLog:
    """The append-only, hash-chained audit log (one chain per tenant).

    :meth:`append` queues an event; :meth:`flush` chains and writes what is queued, and the
    unit of work calls it right before its COMMIT. The tenant's chain head is locked from
    that point to the end of the commit, not from the event's place in the unit: on
    PostgreSQL every writer of a tenant waits for that row, so the shorter it is held the
    more units of work commit side by side. An event queued in a unit that rolls back is
    never written, as before. Every read here flushes first, so a unit reads its own
    events. An event's data is encoded when it is queued: what the caller changes after
    is not what is audited."""

    def __init__(self, conn: sa.Connection, *, readonly: bool = False) -> None:
        self._c = conn
        self._readonly = readonly
        self._closed = False
        #: (tenant id, tenant slug, event, when, the canonical JSON of its data)
        self._pending: list[tuple[int, str, AuditEvent, datetime, str]] = []

    def append(self, tenant_id: int, tenant_slug: str, event: AuditEvent,
               now: datetime) -> None:
        """Queue ``event`` for the tenant's chain, at ``now`` (written by :meth:`flush`).
        Raises RuntimeError in a read-only unit or after its commit: the event would never
        be written."""
        if self._readonly or self._closed:
            raise RuntimeError("an audit event appended in a read-only or committed unit of "
                               "work would never be written")
        self._pending.append((tenant_id, tenant_slug, event, now, canonical_json(event.data)))

    def append_many(self, tenant_id: int, tenant_slug: str, events: list[AuditEvent],
                    now: datetime) -> None:
        """:meth:`append` for several events of one tenant, in order."""
        for event in events:
            self.append(tenant_id, tenant_slug, event, now)

    def close(self) -> None:
        """The unit has committed: nothing more can be appended."""
        self._closed = True

    def flush(self, *, commit: bool = False,
              before: Sequence[tuple[Prepared, Mapping[str, object]]] = ()) -> None:
        """Chain and insert the queued events: tenant by tenant in id order (two units with
        events of the same two tenants take their heads in the same order, so they cannot
        deadlock), each tenant's in the order they were queued. Each head stays locked until
        the commit, so events of one tenant are numbered without gaps even across nodes.

        PostgreSQL: one statement per event takes the head, numbers and hashes the event and
        inserts it (``_APPEND``); with ``commit`` the statements and the transaction's COMMIT
        go in one round trip (one Sync), so a head is held for the time the database takes,
        not for a round trip to this process (which may have to wait for the GIL to read the
        answer). ``before``: the unit's writes sent with its commit (``WithCommit``), sent
        first in the same round trip. The caller ends its transaction object after, as always.
        SQLite (one writer at a time; ``before`` is always empty there): the head is read, the
        events hashed here and written, the head moved; a tenant's first event written
        concurrently raises RaceLost (run the unit again)."""
        if not self._pending:
            if before:
                pipeline(self._c, before, commit=commit)
            return
        pending, self._pending = self._pending, []
        pending.sort(key=lambda queued: queued[0])  # stable: each tenant's events in order
        if self._c.dialect.name == "postgresql":
            pipeline(self._c, [*before, *((_APPEND, _append_params(*queued))
                                          for queued in pending)], commit=commit)
            return
        assert not before  # noqa: S101 - WithCommit runs SQLite's writes at once
        by_tenant: dict[int, tuple[str, list[tuple[AuditEvent, datetime, str]]]] = {}
        for tenant_id, tenant_slug, event, now, data_json in pending:
            by_tenant.setdefault(tenant_id, (tenant_slug, []))[1].append((event, now, data_json))
        for tenant_id, (tenant_slug, events) in by_tenant.items():
            self._write(tenant_id, tenant_slug, events)

    def _write(self, tenant_id: int, tenant_slug: str,
               events: list[tuple[AuditEvent, datetime, str]]) -> None:
        """SQLite: read the head, number and hash the events here (as ``chain`` does, from
        the data's canonical JSON encoded when queued), insert them, move the head."""
        head = _AUDIT_HEAD.first(self._c, {"tenant_id": tenant_id})
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
        rows = []
        for event, now, data_json in events:
            seq += 1
            body = hash_body(tenant=tenant_slug, occurred_at=now, type=event.type,
                             actor=event.actor, account_id=event.account_id,
                             request_id=event.request_id, data_json=data_json)
            digest = link_hash(prev, seq, body)
            rows.append({"tenant_id": tenant_id, "seq": seq, "occurred_at": now,
                         "type": event.type, "actor": event.actor,
                         "account_id": event.account_id, "request_id": event.request_id,
                         "data": data_json, "prev_hash": prev, "hash": digest})
            prev = digest
        if len(rows) == 1:
            _INSERT_AUDIT_EVENT.rowcount(self._c, rows[0])
        else:
            _INSERT_AUDIT_EVENT.many(self._c, rows)
        if head is not None:
            _MOVE_AUDIT_HEAD.rowcount(self._c, {"b_tenant_id": tenant_id, "b_seq": seq,
                                                "b_hash": prev})
            return
        try:
            self._c.execute(t.audit_head.insert(), {
                "tenant_id": tenant_id, "seq": seq, "hash": prev,
                "anchor_seq": 0, "anchor_hash": GENESIS_HASH})
        except sa.exc.IntegrityError as exc:
            raise RaceLost("audit chain head created concurrently") from exc

    def events(self, tenant_id: int, *, after_seq: int = 0,
               batch: int = 1000) -> Iterator[ChainedEvent]:
        """Events of one tenant in chain order, read in batches."""
        self.flush()
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
        self.flush()
        row = self._c.execute(sa.select(t.audit_head.c.anchor_seq, t.audit_head.c.anchor_hash)
                              .where(t.audit_head.c.tenant_id == tenant_id)).first()
        return (0, GENESIS_HASH) if row is None else (row.anchor_seq, row.anchor_hash)

    def prune(self, tenant_id: int, before: datetime) -> int:
        """Remove the events that occurred before ``before`` (retention), keeping the chain
        verifiable: the last removed event becomes the anchor. Returns how many went."""
        self.flush()
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
        self.flush()
        row = self._c.execute(sa.select(t.audit_head.c.seq, t.audit_head.c.hash)
                              .where(t.audit_head.c.tenant_id == tenant_id)).first()
        return None if row is None else (row.seq, row.hash)


def _append_params(tenant_id: int, tenant_slug: str, event: AuditEvent, now: datetime,
                   data_json: str) -> dict[str, object]:
    """``_APPEND``'s parameters: the event's columns and its hashed text around the number."""
    body = hash_body(tenant=tenant_slug, occurred_at=now, type=event.type, actor=event.actor,
                     account_id=event.account_id, request_id=event.request_id,
                     data_json=data_json)
    return {"tenant_id": tenant_id, "first_hash": link_hash(GENESIS_HASH, 1, body),
            "prefix": body[0].encode(), "suffix": body[1].encode(), "occurred_at": now,
            "type": event.type, "actor": event.actor, "account_id": event.account_id,
            "request_id": event.request_id, "data": data_json}
