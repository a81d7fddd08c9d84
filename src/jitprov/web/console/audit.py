"""The audit log: filter by type, actor, account, request id and date, newest first, a page
at a time; export (JSONL or CSV, ``services/audit_export.py``) and chain verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from jitprov.core.audit import canonical_json
from jitprov.services import audit_export, console
from jitprov.services.records import AuditFilter
from jitprov.web.console.shell import (
    AdminRefused,
    call,
    digits,
    form_with_csrf,
    render,
    require_admin,
    tenant_of,
)
from jitprov.web.routes.common import ctx_of


def _date(value: str, name: str) -> datetime | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise AdminRefused(400, f"{name}: a date like 2026-11-28 is expected") from exc
    if day.year >= 9999:  # the day after it does not exist
        raise AdminRefused(400, f"{name}: a date before 9999 is expected")
    return day


def _filter(request: Request) -> tuple[AuditFilter, dict[str, str]]:
    params = request.query_params
    raw = {k: params.get(k, "").strip()[:200] for k in ("type", "actor", "account", "request",
                                                         "from", "to")}
    until = _date(raw["to"], "to")
    return AuditFilter(type=raw["type"] or None, actor=raw["actor"] or None,
                       account_id=raw["account"] or None, request_id=raw["request"] or None,
                       since=_date(raw["from"], "from"),
                       until=until + timedelta(days=1) if until else None), raw


async def audit_log(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    flt, raw = _filter(request)
    before = request.query_params.get("before", "")
    if before and (not digits(before) or len(before) > 12):
        raise AdminRefused(400, "before: a sequence number is expected")
    page = await call(console.audit_page, ctx_of(request), tenant, flt,
                      before_seq=int(before) if before else None)
    return render(request, "admin/audit.html", principal, tenant=tenant, page=page,
                  f=raw, rows=[(e, canonical_json(dict(e.data))) for e in page.events],
                  first_page=not before, report=None)


async def verify(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    tenant = tenant_of(request, principal, form)
    reports = await call(audit_export.verify, ctx_of(request), tenant)
    flt, raw = _filter(request)
    page = await call(console.audit_page, ctx_of(request), tenant, flt)
    return render(request, "admin/audit.html", principal, tenant=tenant, page=page, f=raw,
                  rows=[(e, canonical_json(dict(e.data))) for e in page.events],
                  first_page=True, report=reports[0])


async def export(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise AdminRefused(400, "format: jsonl or csv")
    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    return StreamingResponse(
        audit_export.export_lines(ctx_of(request), fmt, tenant), media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit-{tenant}.{fmt}"'})


ROUTES = [
    ("/admin/audit", audit_log, ["GET"]),
    ("/admin/audit/verify", verify, ["POST"]),
    ("/admin/audit/export", export, ["GET"]),
]
