"""The demo IdP of ``jitprov dev`` (connection kind ``mock``): pick or type a user, and it
signs an assertion for the real login path. Mounted only in dev mode."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jitprov.core.errors import InvalidInput
from jitprov.protocols import mock
from jitprov.services.admin import get_connection
from jitprov.web.routes.common import ctx_of, settings_of, templates_of

DEMO_USERS: list[dict[str, object]] = [
    {"label": "Ana Lima: nurse on Ward 3", "email": "ana.lima@demo.hospital",
     "name": "Ana Lima", "department": "Ward 3", "groups": ["Nurses"],
     "email_verified": True},
    {"label": "Ben Okafor: charge nurse (role needs approval)",
     "email": "ben.okafor@demo.hospital", "name": "Ben Okafor", "department": "Ward 3",
     "groups": ["Nurses", "Charge Nurses"], "email_verified": True},
    {"label": "Chen Wei: pharmacist, IdP group named 'admin'",
     "email": "chen.wei@demo.hospital", "name": "Chen Wei", "department": "Pharmacy",
     "groups": ["Pharmacists", "admin"], "email_verified": True},
    {"label": "Dana Roe: contractor, email not verified (denied)",
     "email": "dana.roe@contractor.example", "name": "Dana Roe", "department": "Facilities",
     "groups": [], "email_verified": False},
]


async def idp_page(request: Request) -> Response:
    slug = request.path_params["connection"]
    conn = await run_in_threadpool(get_connection, ctx_of(request), slug)
    if conn.kind != "mock":
        raise InvalidInput(f"connection {slug} is not a demo connection")
    return templates_of(request).TemplateResponse(request, "dev_idp.html", {
        "connection": slug, "state": request.query_params.get("state", ""),
        "users": DEMO_USERS, "groups_example": "Nurses, Charge Nurses"})  # the demo's data


async def authorize(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    conn = await run_in_threadpool(get_connection, ctx, slug)
    if conn.kind != "mock":
        raise InvalidInput(f"connection {slug} is not a demo connection")
    async with request.form() as form:  # closed after: a multipart file part is a temp file
        fields = {name: str(form.get(name, "")) for name in (
            "email", "groups", "email_verified", "name", "department", "subject", "state")}
    email = fields["email"].strip()
    if not email:
        raise InvalidInput("the demo IdP needs an email to sign someone in")
    groups = [g.strip() for g in fields["groups"].split(",") if g.strip()]
    claims: dict[str, object] = {"email": email, "email_verified": fields["email_verified"]
                                 == "on", "groups": groups}
    for name in ("name", "department"):
        value = fields[name].strip()
        if value:
            claims[name] = value
    subject = fields["subject"].strip() or email.lower()
    state = fields["state"]
    key = ctx.secretbox.open(conn.secrets).get("signing_key", "")
    assertion = mock.sign_assertion(
        key=key, issuer=mock.issuer_for(settings_of(request).base_url, slug), audience=slug,
        subject=subject, claims=claims, state=state)
    return templates_of(request).TemplateResponse(request, "autopost.html", {
        "action": f"/sso/{slug}/mock/callback",
        "fields": {"assertion": assertion, "state": state}},
        headers={"Cache-Control": "no-store"})


ROUTES = [
    ("/dev/idp/{connection}", idp_page, ["GET"]),
    ("/dev/idp/{connection}/authorize", authorize, ["POST"]),
]
