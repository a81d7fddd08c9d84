"""The app's router with an index: a request tries only the routes that can match it.

Starlette tries an app's routes one by one, in the order they were added, until one matches:
the login callbacks stand behind SCIM's fourteen routes, ``/me`` and ``/healthz`` behind
thirty, and every route tried is a regular expression run on the path (2 µs or so each, in
process). :class:`RouteIndex` files the leading routes (plain routes whose path starts with a
literal segment, up to the first route that is not) by that first segment, and a request whose
first segment has routes in the index tries those only, in the router's order. Every route
left out starts with another literal segment, so cannot match: the first route that matches in
full is the one the router would have chosen. Anything else goes to the router as it is: a
path that no indexed route matches in full (a wrong method's 405, a redirect to the path with
or without its trailing slash, a 404), a route behind the first one the index cannot file
(mounts, included routers), a lifespan or a WebSocket, and every request once a route was
added or removed after the index was made. The shortcut declines when unsure.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send


def leading_segment(path: str) -> str | None:
    """The first segment of a route's path when it is literal (``sso`` for
    ``/sso/{connection}/login``, ``""`` for ``/``); None when it holds a parameter."""
    segment = path[1:].split("/", 1)[0]
    return None if "{" in segment or not path.startswith("/") else segment


def index_routes(routes: Sequence[BaseRoute]) -> dict[str, tuple[Route, ...]]:
    """The leading plain routes by their literal first segment, each list in router order;
    the index stops at the first route it cannot file."""
    filed: dict[str, list[Route]] = {}
    for route in routes:
        if not isinstance(route, Route) or type(route) is not Route:  # a mount, a router...
            break
        segment = leading_segment(route.path)
        if segment is None:
            break
        filed.setdefault(segment, []).append(route)
    return {segment: tuple(found) for segment, found in filed.items()}


class RouteIndex:
    """ASGI: ``router``'s own dispatch, with the index's shortcut in front (see module)."""

    def __init__(self, router: Router, app: ASGIApp) -> None:
        self.router = router
        self.app = app  # the router's dispatch: what the index hands anything else to
        self.index = index_routes(router.routes)
        self._routes = len(router.routes)  # a route added or removed since: the router's

    def find(self, scope: Scope) -> tuple[Route, Scope] | None:
        """The route that matches ``scope`` in full and its child scope, when the index
        knows it; None when the router must decide."""
        if scope["type"] != "http" or scope.get("root_path") or "fastapi.telemetry" in scope \
                or len(self.router.routes) != self._routes:
            return None
        path: str = scope["path"]
        for route in self.index.get(path[1:].split("/", 1)[0], ()):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return route, child_scope
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.find(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        route, child_scope = found
        scope.setdefault("router", self.router)
        scope.update(child_scope)
        await route.handle(scope, receive, send)


def install(router: Router) -> None:
    """Put the index in front of ``router``'s dispatch, once its routes are all added (once
    a route is added or removed, every request goes through the router, as before). A router
    that sets form limits on the request (FastAPI's ``form_limits``) or has middleware of its
    own keeps its own dispatch."""
    dispatch: ASGIApp = router.middleware_stack
    if isinstance(dispatch, RouteIndex):
        dispatch = dispatch.app
    if getattr(router, "form_limits", None) or dispatch != router.app:
        return  # (a router with middleware of its own: a hit would skip it)
    router.middleware_stack = RouteIndex(router, dispatch)
