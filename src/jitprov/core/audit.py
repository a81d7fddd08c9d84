"""Audit events and the per-tenant hash chain. Pure: hashing is computation, not I/O.

Every event's ``hash`` is SHA-256 over the previous event's hash and the canonical JSON of the
event (sorted keys, no spaces, UTF-8). Editing, deleting or reordering any stored event breaks
the chain at that point, and :func:`verify_chain` names the first broken sequence number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing that happened. ``type`` is dotted past tense: ``account.created``."""

    type: str
    actor: str
    data: Mapping[str, object] = field(default_factory=dict)
    account_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChainedEvent:
    """An event as stored: its place in the tenant's chain and its hashes."""

    tenant: str
    seq: int
    occurred_at: datetime
    type: str
    actor: str
    account_id: str | None
    request_id: str | None
    data: Mapping[str, object]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, object]:
        return {"tenant": self.tenant, "seq": self.seq,
                "occurred_at": format_instant(self.occurred_at), "type": self.type,
                "actor": self.actor, "account_id": self.account_id,
                "request_id": self.request_id, "data": dict(self.data),
                "prev_hash": self.prev_hash, "hash": self.hash}


def format_instant(instant: datetime) -> str:
    """UTC, microseconds, ``Z``: the one textual form that goes into a hash."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def compute_hash(prev_hash: str, *, tenant: str, seq: int, occurred_at: datetime, type: str,
                 actor: str, account_id: str | None, request_id: str | None,
                 data: Mapping[str, object]) -> str:
    """SHA-256 of ``prev_hash``, a newline and the canonical JSON of the event (its fields
    and ``data``, keys sorted)."""
    return _digest(prev_hash, tenant=tenant, seq=seq, occurred_at=occurred_at, type=type,
                   actor=actor, account_id=account_id, request_id=request_id,
                   data_json=canonical_json(data))


def _digest(prev_hash: str, *, tenant: str, seq: int, occurred_at: datetime, type: str,
            actor: str, account_id: str | None, request_id: str | None, data_json: str) -> str:
    return link_hash(prev_hash, seq, hash_body(
        tenant=tenant, occurred_at=occurred_at, type=type, actor=actor, account_id=account_id,
        request_id=request_id, data_json=data_json))


def link_hash(prev_hash: str, seq: int, body: tuple[str, str]) -> str:
    """The hash of the event whose :func:`hash_body` is ``body``, numbered ``seq`` after
    ``prev_hash``: SHA-256 of the previous hash, a newline and the body."""
    prefix, suffix = body
    return hashlib.sha256(f"{prev_hash}\n{prefix}{seq}{suffix}".encode()).hexdigest()


def hash_body(*, tenant: str, occurred_at: datetime, type: str, actor: str,
              account_id: str | None, request_id: str | None,
              data_json: str) -> tuple[str, str]:
    """The hashed canonical JSON of an event, split around its ``seq``: the body is
    ``prefix + str(seq) + suffix``. So the database can number and hash an event at the
    moment it takes the chain's head, with the JSON still encoded here, once.

    ``data_json`` is the canonical JSON of the event's data. Keys sort as account_id < actor
    < data < occurred_at < request_id < seq < tenant < type, so the encoded data goes in the
    middle of the first half and the number between the two halves."""
    before = canonical_json({"account_id": account_id, "actor": actor})
    around = canonical_json({"occurred_at": format_instant(occurred_at),
                             "request_id": request_id})
    after = canonical_json({"tenant": tenant, "type": type})
    return f'{before[:-1]},"data":{data_json},{around[1:-1]},"seq":', f",{after[1:]}"


def chain(event: AuditEvent, *, tenant: str, seq: int, prev_hash: str,
          occurred_at: datetime) -> ChainedEvent:
    """Place ``event`` after ``prev_hash`` as number ``seq`` of the tenant's chain."""
    data_json = canonical_json(event.data)
    data = json.loads(data_json)  # exactly what a JSON column gives back
    # canonical JSON is a fixed point: canonical_json(json.loads(data_json)) == data_json
    digest = _digest(prev_hash, tenant=tenant, seq=seq, occurred_at=occurred_at,
                     type=event.type, actor=event.actor, account_id=event.account_id,
                     request_id=event.request_id, data_json=data_json)
    return ChainedEvent(tenant=tenant, seq=seq, occurred_at=occurred_at, type=event.type,
                        actor=event.actor, account_id=event.account_id,
                        request_id=event.request_id, data=data, prev_hash=prev_hash, hash=digest)


@dataclass(frozen=True, slots=True)
class ChainProblem:
    tenant: str
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"tenant {self.tenant}: event {self.seq}: {self.problem}"


def verify_chain(tenant: str, events: Iterable[ChainedEvent],
                 head: tuple[int, str] | None,
                 anchor: tuple[int, str] = (0, GENESIS_HASH)) -> list[ChainProblem]:
    """Check one tenant's events (in ``seq`` order) against each other and the stored head.

    Returns the problems found (empty: intact). ``head`` is (last seq, last hash) as recorded
    when the last event was written; it catches a deleted tail. ``anchor`` is the last event
    the retention policy removed (seq 0 and the genesis hash when none was): the kept events
    must start right after it, so a deletion at the start is caught too.
    """
    problems: list[ChainProblem] = []
    expected_seq = anchor[0] + 1
    prev = anchor[1]
    for ev in events:
        if ev.seq != expected_seq:
            problems.append(ChainProblem(tenant, ev.seq,
                                         f"expected event {expected_seq} here: "
                                         "events deleted or reordered"))
        if ev.prev_hash != prev:
            problems.append(ChainProblem(tenant, ev.seq, "does not follow the previous event"))
        recomputed = compute_hash(ev.prev_hash, tenant=ev.tenant, seq=ev.seq,
                                  occurred_at=ev.occurred_at, type=ev.type, actor=ev.actor,
                                  account_id=ev.account_id, request_id=ev.request_id,
                                  data=ev.data)
        if recomputed != ev.hash:
            problems.append(ChainProblem(tenant, ev.seq, "content does not match its hash: "
                                         "the event was edited"))
        prev = ev.hash
        expected_seq = ev.seq + 1
        if problems:
            return problems
    last_seq = expected_seq - 1
    if head is not None and (head[0] != last_seq or head[1] != prev):
        problems.append(ChainProblem(tenant, head[0], f"the chain head records event {head[0]} "
                                     f"but the log ends at {last_seq}: events deleted"))
    return problems
