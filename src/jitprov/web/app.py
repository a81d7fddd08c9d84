"""create_app: the composition root. Hot paths (SSO, /me, forward-auth) are bare Starlette
routes; FastAPI serves only the admin API, where its validation and OpenAPI pay for themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from jitprov import __version__
from jitprov.services import logs, metrics
from jitprov.services.context import ServiceContext, build_context, open_database
from jitprov.services.ratelimit import RateLimiter
from jitprov.services.records import Database
from jitprov.settings import Settings
from jitprov.web import console, errors, i18n, observability, route_index, tracing
from jitprov.web.framing import NoFraming
from jitprov.web.observability import RateLimit, RequestContext
from jitprov.web.routes import (
    admin_api,
    admin_config_api,
    break_glass,
    dev_idp,
    devices,
    devices_api,
    discovery,
    forward_auth,
    health,
    logout,
    pages,
    passkeys,
    scim,
    sso,
)
from jitprov.web.text_guard import TextGuard

TEMPLATES = Path(__file__).with_name("templates")


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """While the app serves, its event loop watched (:func:`observability.watch_loop`). When
    the server stops: the session cache's listening connection closed, the connections to
    identity providers the event loop opened, the metrics bookkeeping of a worker of
    ``serve --workers``, and the last spans sent when tracing is on."""
    watcher = asyncio.get_running_loop().create_task(observability.watch_loop())
    try:
        yield
    finally:
        watcher.cancel()
    cache = _app.state.ctx.session_cache
    if cache is not None:
        cache.stop()
    metrics.process_exiting()
    provider = getattr(_app.state, "tracer_provider", None)
    if provider is not None:
        provider.shutdown()
    try:
        await _app.state.ctx.close_async()
    finally:
        logs.flush()  # the last requests' lines: uvicorn ends by re-raising the stop signal


def create_app(settings: Settings, db: Database | None = None,
               ctx: ServiceContext | None = None) -> FastAPI:
    """Build the ASGI app. ``db``/``ctx`` may be injected (tests); otherwise built from
    ``settings``."""
    if ctx is None:
        ctx = build_context(settings, db or open_database(settings))
    templates = Jinja2Templates(directory=str(TEMPLATES))
    # the templates ship with the package: outside `jitprov dev`, no stat of each template
    # file at every page to see whether it changed
    templates.env.auto_reload = settings.dev_mode
    i18n.install(templates)  # end-user pages in the reader's language
    templates.env.globals["passkey_advice"] = i18n.advice_for(
        {code: errors.ADVICE[code] for code in errors.PASSKEY_ADVICE})
    # FastAPI's own OpenTelemetry support off: jitprov's traces are web/tracing.py's (the
    # OTEL_* variables); FastAPI's would act only under a process-wide provider, which jitprov
    # never sets, and would then double each server span, and it looks up the process-wide
    # providers on every request to find out
    app = FastAPI(title="jitprov", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/openapi.json", lifespan=_lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.templates = templates
    errors.install(app, templates)
    # Starlette tries routes in order: the hot paths first (forward-auth is asked for every
    # request an app gets; SCIM and the login callbacks next). Their paths do not overlap.
    for module in (forward_auth, scim, sso, logout, pages, health, break_glass, dev_idp,
                   passkeys, devices, discovery):
        for path, endpoint, methods in module.ROUTES:
            if module is dev_idp and not settings.dev_mode:
                continue
            app.router.add_route(path, endpoint, methods=methods, include_in_schema=False)
    for path, endpoint, methods in console.ROUTES:  # the admin console, under /admin
        app.router.add_route(path, endpoint, methods=methods, include_in_schema=False)
    console.shell.install(app)
    app.mount("/static", StaticFiles(packages=[("jitprov.web", "static")]), name="static")
    app.include_router(admin_api.router)
    app.include_router(admin_config_api.router)
    app.include_router(admin_api.metrics_router)
    app.include_router(devices_api.router)
    route_index.install(app.router)  # the routes are all in: a request tries its own only
    app.add_middleware(TextGuard, templates=templates)  # core.text's rule at the edge
    app.add_middleware(NoFraming)  # every HTML page, the console's and /api/docs included
    # outermost last: the request's context (address, id, log line, metrics), then its limit
    app.add_middleware(RateLimit, limiter=RateLimiter(settings.ops), templates=templates)
    app.add_middleware(RequestContext, trusted_proxies=settings.ops.trusted_proxies,
                       routes=app.router.routes, base_url=settings.base_url)
    # OpenTelemetry, only when the OTEL_* variables ask for it (flushed when the server stops)
    app.state.tracer_provider = tracing.install(app, ctx)
    return app
