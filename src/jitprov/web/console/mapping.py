"""The mapping editor of a connection: check (live, with line numbers), test against pasted
claims or a recorded login, preview the impact on the people who recently signed in, save.

One form, one POST per action (``check``, ``test``, ``preview``, ``save``): every step works
without JavaScript. ``static/admin-mapping.js`` adds live validation through the JSON
endpoint ``.../mapping/validate`` (debounced). Saving goes through ``admin.set_mapping``
(compiled again, versioned, audited) and only after an impact preview of exactly that text
against exactly the mapping in force (the form carries the preview's fingerprint).
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jitprov.core.errors import JitprovError, MappingError
from jitprov.core.mapping import load_policy
from jitprov.services import admin, mapping_preview
from jitprov.services.console import AdminPrincipal
from jitprov.services.records import ConnectionRecord
from jitprov.web.console.shell import (
    AdminRefused,
    call,
    check_tenant,
    digits,
    form_with_csrf,
    redirect,
    render,
    require_admin,
)
from jitprov.web.routes.common import ctx_of

SOURCE = "admin console"  # the mapping_source of a mapping saved here
RECENT_LOGINS = 50  # offered in the "test with a recorded login" picker


async def _connection(request: Request, principal: AdminPrincipal) -> ConnectionRecord:
    slug = request.path_params["slug"]
    if not isinstance(slug, str) or len(slug) > 63:
        raise AdminRefused(404, "no such connection")
    conn = await call(admin.get_connection, ctx_of(request), slug)
    check_tenant(principal, conn.tenant_slug)
    return conn


def _mapping_text(form: FormData) -> str:
    value = form.get("mapping")
    # browsers send a textarea's lines with CRLF: keep the file's own LF
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""


def preview_fingerprint(conn: ConnectionRecord, text: str) -> str:
    """Ties a preview to the proposed text and to the mapping in force it was compared with."""
    digest = hashlib.sha256(f"{conn.slug}\n{conn.version}\n{text}".encode("utf-8",
                                                                         "surrogatepass"))
    return digest.hexdigest()


async def edit(request: Request) -> Response:
    principal = await require_admin(request)
    conn = await _connection(request, principal)
    saved = request.query_params.get("saved")
    flash = f"Mapping saved: version {saved} is in force." if saved and digits(saved) \
        else None
    return await _page(request, principal, conn, conn.mapping, flash=flash)


async def _page(request: Request, principal: AdminPrincipal, conn: ConnectionRecord,
                text: str, *, status_code: int = 200, **context: Any) -> Response:
    problems = mapping_preview.validate_mapping(text, SOURCE)
    recent = await call(mapping_preview.recent_logins, ctx_of(request), conn.slug,
                        limit=RECENT_LOGINS)
    context.setdefault("limit", mapping_preview.DEFAULT_PREVIEW_LIMIT)
    return render(request, "admin/mapping.html", principal, status_code=status_code,
                  tenant=conn.tenant_slug, connection=conn, mapping=text, problems=problems,
                  recent=recent, max_limit=mapping_preview.MAX_PREVIEW_LIMIT, **context)


async def act(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    conn = await _connection(request, principal)
    text = _mapping_text(form)
    action = form.get("action")
    claims_text = form.get("claims")
    claims_text = claims_text if isinstance(claims_text, str) else ""
    recorded = form.get("recorded")
    recorded = recorded if isinstance(recorded, str) and recorded else None
    keep: dict[str, Any] = {"claims_text": claims_text[:300_000], "recorded_subject": recorded}
    if action == "test":
        return await _test(request, principal, conn, text, claims_text, recorded, keep)
    if action in ("preview", "save"):
        raw_limit = form.get("limit")
        limit = _limit(raw_limit if isinstance(raw_limit, str) else "")
        keep["limit"] = limit
        if action == "save" and form.get("previewed") == preview_fingerprint(conn, text):
            return await _save(request, principal, conn, text)
        notice = None if action == "preview" else (
            "The mapping (or the one in force) changed since its impact preview: review this "
            "preview, then save.")
        return await _preview(request, principal, conn, text, limit, keep, notice)
    return await _page(request, principal, conn, text, checked=True, **keep)


def _limit(raw: str) -> int:
    if not raw.strip():
        return mapping_preview.DEFAULT_PREVIEW_LIMIT
    if not digits(raw.strip()) or not 1 <= int(raw) <= mapping_preview.MAX_PREVIEW_LIMIT:
        raise AdminRefused(400, f"the number of recorded logins to replay must be 1-"
                                f"{mapping_preview.MAX_PREVIEW_LIMIT}")
    return int(raw)


async def _test(request: Request, principal: AdminPrincipal, conn: ConnectionRecord,
                text: str, claims_text: str, recorded: str | None,
                keep: dict[str, Any]) -> Response:
    try:
        claims = None if recorded else mapping_preview.parse_claims(claims_text or "{}")
        dry = await run_in_threadpool(
            mapping_preview.test_mapping, ctx_of(request), conn.slug, claims=claims,
            recorded_subject=recorded, mapping=text, source=SOURCE)
    except MappingError:
        return await _page(request, principal, conn, text, status_code=422, **keep)
    except JitprovError as exc:  # bad JSON, an unknown or purged recorded login
        return await _page(request, principal, conn, text, status_code=400,
                           test_error=str(exc), **keep)
    return await _page(request, principal, conn, text, test=dry.as_dict(), **keep)


async def _preview(request: Request, principal: AdminPrincipal, conn: ConnectionRecord,
                   text: str, limit: int, keep: dict[str, Any],
                   notice: str | None) -> Response:
    try:
        report = await run_in_threadpool(mapping_preview.preview_impact, ctx_of(request),
                                         conn.slug, text, SOURCE, limit=limit)
    except MappingError:
        return await _page(request, principal, conn, text, status_code=422, **keep)
    return await _page(request, principal, conn, text, preview=report,
                       previewed=preview_fingerprint(conn, text), notice=notice, **keep)


async def _save(request: Request, principal: AdminPrincipal, conn: ConnectionRecord,
                text: str) -> Response:
    try:
        version = await run_in_threadpool(admin.set_mapping, ctx_of(request), conn.slug, text,
                                          SOURCE, actor=principal.actor)
    except MappingError:
        return await _page(request, principal, conn, text, status_code=422)
    return redirect(f"/admin/connections/{conn.slug}/mapping?saved={version}")


async def validate(request: Request) -> Response:
    """JSON for the live check: ``{"ok", "problems": [{"line", "rule", "message"}],
    "summary"}``. 200 for a bad mapping too: the problems are the answer."""
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    await _connection(request, principal)
    text = _mapping_text(form)
    try:
        policy = load_policy(text, SOURCE)
    except MappingError as err:
        problem = mapping_preview.MappingProblem(err.message, err.line, err.rule)
        return JSONResponse({"ok": False, "problems": [problem.as_dict()], "summary": None})
    return JSONResponse({"ok": True, "problems": [], "summary": policy.summary})


ROUTES = [
    ("/admin/connections/{slug}/mapping", edit, ["GET"]),
    ("/admin/connections/{slug}/mapping", act, ["POST"]),
    ("/admin/connections/{slug}/mapping/validate", validate, ["POST"]),
]
