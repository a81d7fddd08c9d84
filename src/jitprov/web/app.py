"""create_app: the composition root. Hot paths (SSO, /me, forward-auth) are bare Starlette
routes; FastAPI serves only the admin API, where its validation and OpenAPI pay for themselves.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitprov import __version__
from jitprov.services.context import ServiceContext, build_context, open_database
from jitprov.services.records import Database
from jitprov.settings import Settings
from jitprov.web import console, errors
from jitprov.web.framing import NoFraming
from jitprov.web.routes import (
    admin_api,
    break_glass,
    dev_idp,
    devices,
    devices_api,
    forward_auth,
    health,
    pages,
    passkeys,
    scim,
    sso,
)
from jitprov.web.text_guard import TextGuard

TEMPLATES = Path(__file__).with_name("templates")

class RequestId:
    """Pure ASGI middleware: a request id per request, echoed as ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings, db: Database | None = None,
               ctx: ServiceContext | None = None) -> FastAPI:
    """Build the ASGI app. ``db``/``ctx`` may be injected (tests); otherwise built from
    ``settings``."""
    if ctx is None:
        ctx = build_context(settings, db or open_database(settings))
    templates = Jinja2Templates(directory=str(TEMPLATES))
    app = FastAPI(title="jitprov", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/openapi.json")
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.templates = templates
    errors.install(app, templates)
    # Starlette tries routes in order: the hot paths first (forward-auth is asked for every
    # request an app gets; SCIM and the login callbacks next). Their paths do not overlap.
    for module in (forward_auth, scim, sso, pages, health, break_glass, dev_idp, passkeys,
                   devices):
        for path, endpoint, methods in module.ROUTES:
            if module is dev_idp and not settings.dev_mode:
                continue
            app.router.add_route(path, endpoint, methods=methods, include_in_schema=False)
    for path, endpoint, methods in console.ROUTES:  # the admin console, under /admin
        app.router.add_route(path, endpoint, methods=methods, include_in_schema=False)
    console.shell.install(app)
    app.mount("/static", StaticFiles(packages=[("jitprov.web", "static")]), name="static")
    app.include_router(admin_api.router)
    app.include_router(admin_api.metrics_router)
    app.include_router(devices_api.router)
    app.add_middleware(TextGuard, templates=templates)  # core.text's rule at the edge
    app.add_middleware(NoFraming)  # every HTML page, the console's and /api/docs included
    app.add_middleware(RequestId)
    return app
