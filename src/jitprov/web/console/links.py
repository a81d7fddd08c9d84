"""Pending links: a first login under ``linking.by_email: pending`` asked to join an existing
account; an admin reads the claims that asked (redacted as recorded claims are) and approves
or refuses with a reason, or clears a refusal, through ``services/links.py``."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from jitprov.services import links
from jitprov.web.console.shell import (
    AdminRefused,
    call,
    digits,
    form_with_csrf,
    redirect,
    render,
    require_admin,
    tenant_of,
)
from jitprov.web.routes.common import ctx_of

FLASH = {"approved": "Approved: the person's next sign-in opens the linked account.",
         "refused": "Refused: this sign-in is refused until you clear the refusal.",
         "cleared": "Cleared: the person's next sign-in is decided afresh."}
DECISIONS = {"approve": "approved", "refuse": "refused", "clear": "cleared"}


async def list_links(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    found = await call(links.list_links, ctx_of(request), tenant,
                       statuses=("pending", "refused"))
    pending = [{"link": link, "claims": json.dumps(dict(link.claims), indent=2,
                                                   sort_keys=True, ensure_ascii=False)}
               for link in found if link.status == "pending"]
    refused = [link for link in found if link.status == "refused"]
    return render(request, "admin/links.html", principal, tenant=tenant, pending=pending,
                  refused=refused,
                  flash=FLASH.get(request.query_params.get("done") or ""))


async def decide(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    tenant = tenant_of(request, principal, form)
    raw_id = request.path_params["link_id"]
    if not digits(raw_id) or len(raw_id) > 9:
        raise AdminRefused(404, "no such pending link")
    decision = form.get("decision")
    if decision not in DECISIONS:
        raise AdminRefused(400, "choose approve, refuse or clear")
    reason = form.get("reason")
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise AdminRefused(400, "a reason is required")
    ctx = ctx_of(request)
    if decision == "clear":
        await call(links.clear_refusal, ctx, tenant, int(raw_id), reason=reason[:500],
                   actor=principal.actor)
    else:
        await call(links.decide_link, ctx, tenant, int(raw_id), approve=decision == "approve",
                   reason=reason[:500], actor=principal.actor)
    query = urlencode({"tenant": tenant, "done": DECISIONS[str(decision)]})
    return redirect(f"/admin/links?{query}")


ROUTES = [
    ("/admin/links", list_links, ["GET"]),
    ("/admin/links/{link_id}", decide, ["POST"]),
]
