"""The per-tenant hash chain: edits, deletions and reorderings are all detected."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from jitprov.core.audit import (
    GENESIS_HASH,
    AuditEvent,
    ChainedEvent,
    canonical_json,
    chain,
    format_instant,
    verify_chain,
)

T0 = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def build(n: int) -> list[ChainedEvent]:
    events: list[ChainedEvent] = []
    prev = GENESIS_HASH
    for i in range(1, n + 1):
        ev = chain(AuditEvent("account.created", "test", {"i": i, "roles": ["a", "b"]}),
                   tenant="t", seq=i, prev_hash=prev, occurred_at=T0 + timedelta(seconds=i))
        events.append(ev)
        prev = ev.hash
    return events


def head(events: list[ChainedEvent]) -> tuple[int, str]:
    return events[-1].seq, events[-1].hash


def test_intact_chain_has_no_problems() -> None:
    events = build(5)
    assert verify_chain("t", events, head(events)) == []


def test_detects_an_edited_event() -> None:
    events = build(5)
    events[2] = dataclasses.replace(events[2], data={"i": 3, "roles": ["a", "b", "admin"]})
    problems = verify_chain("t", events, head(events))
    assert [(p.seq, "edited" in p.problem) for p in problems] == [(3, True)]


def test_detects_a_deleted_event() -> None:
    events = build(5)
    full_head = head(events)
    del events[1]
    problems = verify_chain("t", events, full_head)
    assert problems[0].seq == 3


def test_detects_a_deleted_tail_through_the_head() -> None:
    events = build(5)
    full_head = head(events)
    problems = verify_chain("t", events[:3], full_head)
    assert len(problems) == 1
    assert "deleted" in problems[0].problem


def test_detects_reordered_events() -> None:
    events = build(5)
    events[1], events[2] = events[2], events[1]
    problems = verify_chain("t", events, head(events))
    assert problems[0].seq == 3


def test_hash_depends_on_the_previous_hash() -> None:
    a = chain(AuditEvent("x", "y"), tenant="t", seq=1, prev_hash=GENESIS_HASH, occurred_at=T0)
    b = chain(AuditEvent("x", "y"), tenant="t", seq=1, prev_hash="1" * 64, occurred_at=T0)
    assert a.hash != b.hash


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@given(data=st.dictionaries(st.text(), _JSON, max_size=6), account=st.none() | st.text(),
       request=st.none() | st.text(), actor=st.text(), kind=st.text())
def test_hash_is_sha256_of_the_canonical_event_whatever_its_data(
        data: dict[str, object], account: str | None, request: str | None, actor: str,
        kind: str) -> None:
    # the stored chains' format: prev hash, newline, canonical JSON of every field and data
    ev = chain(AuditEvent(kind, actor, data, account_id=account, request_id=request),
               tenant="t", seq=1, prev_hash=GENESIS_HASH, occurred_at=T0)
    body = canonical_json({"tenant": "t", "seq": 1, "occurred_at": format_instant(T0),
                           "type": kind, "actor": actor, "account_id": account,
                           "request_id": request, "data": data})

    assert hashlib.sha256(f"{GENESIS_HASH}\n{body}".encode()).hexdigest() == ev.hash
    assert verify_chain("t", [ev], (1, ev.hash)) == []
