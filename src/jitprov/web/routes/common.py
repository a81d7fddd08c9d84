"""What every route module needs: the service context, templates and the session cookie."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from jitprov.services.context import ServiceContext
from jitprov.settings import Settings

SESSION_COOKIE = "jitprov_session"


def ctx_of(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def templates_of(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    settings = settings_of(request)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(settings.session_ttl.total_seconds()),
                        httponly=True, samesite="lax", secure=settings.cookie_secure, path="/")


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax",
                           secure=settings_of(request).cookie_secure, path="/")
