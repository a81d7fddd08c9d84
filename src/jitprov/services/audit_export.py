"""Reading the audit log back: export (JSONL, CSV) and chain verification."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

from jitprov.core.audit import ChainedEvent, ChainProblem, canonical_json, verify_chain
from jitprov.services.context import ServiceContext
from jitprov.store.console import AuditFilter
from jitprov.store.unit_of_work import UnitOfWork

CSV_COLUMNS = ["tenant", "seq", "occurred_at", "type", "actor", "account_id", "request_id",
               "data", "prev_hash", "hash"]


@dataclass(frozen=True, slots=True)
class ChainReport:
    tenant: str
    events: int
    problems: list[ChainProblem]

    @property
    def intact(self) -> bool:
        return not self.problems


def iter_events(ctx: ServiceContext, tenant: str | None = None) -> Iterator[ChainedEvent]:
    """Every event of one tenant (or of all, tenant by tenant), in chain order."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        tenants = [uow.config.tenants.get(tenant)] if tenant else uow.config.tenants.list()
        for ten in tenants:
            yield from uow.audit.events(ten.id)


def search(ctx: ServiceContext, flt: AuditFilter, tenant: str | None = None, *,
           limit: int = 50) -> list[ChainedEvent]:
    """The newest ``limit`` events matching ``flt`` of one tenant (or of every tenant, newest
    first): what ``jitprov audit search`` prints. Raises NotFound for an unknown tenant."""
    found: list[ChainedEvent] = []
    with UnitOfWork(ctx.db, readonly=True) as uow:
        tenants = [uow.config.tenants.get(tenant)] if tenant else uow.config.tenants.list()
        for ten in tenants:
            found += uow.console.reads.audit_page(ten.id, flt, limit=limit).events
    found.sort(key=lambda ev: (ev.occurred_at, ev.tenant, ev.seq), reverse=True)
    return found[:limit]


def export_lines(ctx: ServiceContext, fmt: str, tenant: str | None = None) -> Iterator[str]:
    """The audit log as JSONL lines or CSV rows (header first), each ending in a newline.

    An unknown ``tenant`` raises NotFound here, at the call, not at the first line read: a
    streamed HTTP response has not started yet then, so it can still be a 404 (and the CLI
    does not leave an empty output file behind)."""
    if tenant:
        with UnitOfWork(ctx.db, readonly=True) as uow:
            uow.config.tenants.get(tenant)
    return _lines(ctx, fmt, tenant)


def _lines(ctx: ServiceContext, fmt: str, tenant: str | None) -> Iterator[str]:
    if fmt == "jsonl":
        for ev in iter_events(ctx, tenant):
            yield json.dumps(ev.as_dict(), ensure_ascii=False, sort_keys=True) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for ev in iter_events(ctx, tenant):
        row = ev.as_dict()
        row["data"] = canonical_json(row["data"])
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def verify(ctx: ServiceContext, tenant: str | None = None) -> list[ChainReport]:
    """Check each tenant's chain: edited, deleted or reordered events are reported."""
    reports: list[ChainReport] = []
    with UnitOfWork(ctx.db, readonly=True) as uow:
        tenants = [uow.config.tenants.get(tenant)] if tenant else uow.config.tenants.list()
        for ten in tenants:
            anchor = uow.audit.anchor(ten.id)
            events = list(uow.audit.events(ten.id, after_seq=anchor[0]))
            problems = verify_chain(ten.slug, events, uow.audit.head(ten.id), anchor)
            if anchor[0] and not problems:
                problems = _check_anchor(ten.slug, events, anchor)
            reports.append(ChainReport(ten.slug, len(events), problems))
    return reports


ACCESS_REVIEW_COLUMNS = ["account_id", "email", "name", "status", "kind", "provisioned_by",
                         "role", "source", "granted_at", "granted_by", "expires_at",
                         "last_login_at"]


def access_review_rows(ctx: ServiceContext, tenant: str) -> list[dict[str, object]]:
    """The access review's rows (see :func:`access_review`), for the console's page."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return list(uow.console.reads.access_review(uow.config.tenants.get(tenant).id,
                                                    ctx.clock()))


def access_review(ctx: ServiceContext, tenant: str, fmt: str = "csv") -> str:
    """The artefact an auditor asks for: every role of every account of the tenant with its
    provenance (``rule:<connection>/<id>``, ``approval``, ``scim``, ``manual``), when and by
    whom it was granted, its expiry and the holder's last sign-in. CSV or JSON. A grant
    past its expiry is not held, so it is not listed."""
    rows = access_review_rows(ctx, tenant)
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ACCESS_REVIEW_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _check_anchor(tenant: str, events: list[ChainedEvent],
                  anchor: tuple[int, str]) -> list[ChainProblem]:
    """A pruned chain must say so itself: the newest ``audit.pruned`` event names the anchor."""
    pruned = [e for e in events if e.type == "audit.pruned"]
    if pruned and (pruned[-1].data.get("through_seq"), pruned[-1].data.get("through_hash")) \
            == anchor:
        return []
    return [ChainProblem(tenant, anchor[0], "the chain starts after event "
                         f"{anchor[0]} but no audit.pruned event records that retention cut: "
                         "events were deleted")]
