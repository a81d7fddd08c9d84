"""The router's index against the router: the same route for any path and method, fewer
routes tried on the way, and everything the index does not know left to the router."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.testclient import TestClient

from jitprov.services.context import ServiceContext
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app
from jitprov.web.route_index import RouteIndex, index_routes, leading_segment
from tests.web.helpers import make_client


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[BaseRoute]]:
    """The app's routes, in the router's order (no request is served: an empty database)."""
    db = Database.connect(f"sqlite:///{tmp_path_factory.mktemp('routes')}/routes.db")
    ctx = ServiceContext(db=db, secretbox=object())  # type: ignore[arg-type]
    app = create_app(Settings(base_url="https://sso.example", secret_key="k"), ctx=ctx)
    yield list(app.router.routes)
    db.dispose()


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "",
            "headers": [], "query_string": b""}


def _index(routes: list[BaseRoute]) -> RouteIndex:
    """The index of a router holding the app's routes, in their order."""
    return RouteIndex(Router(routes=routes), app=None)  # type: ignore[arg-type]


def _router_choice(routes: list[BaseRoute], scope: dict[str, Any]) -> BaseRoute | None:
    """What Starlette's router serves: the first route that matches in full."""
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            return route
    return None


#: path pieces: every literal segment of the app's routes, values a parameter could take,
#: and the odd ones (empty, dots, encoded slashes, a trailing slash)
SEGMENTS = st.sampled_from(["sso", "scim", "v2", "acme", "Users", "Groups", ".search", "login",
                            "saml", "acs", "oidc", "callback", "me", "token", "healthz", "readyz",
                            "admin", "users", "api", "static", "auth", "verify", ".well-known",
                            "jwks.json", "passkeys", "device", "break-glass", "logout", "x",
                            "", "%2F", "..", "a b", "é"])
PATHS = st.lists(SEGMENTS, min_size=0, max_size=6).map(lambda parts: "/" + "/".join(parts))
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])


@settings(max_examples=600, deadline=None)
@given(method=METHODS, path=PATHS)
def test_the_index_chooses_the_route_the_router_chooses(routes: list[BaseRoute], method: str,
                                                       path: str) -> None:
    """Where the index answers, it names the router's own choice; where it does not, the
    router decides (and may still find a route behind the index: the console, the API)."""
    index = _index(routes)
    scope = _scope(method, path)
    found = index.find(scope)
    if found is not None:
        assert found[0] is _router_choice(routes, scope)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/sso/acme/login"), ("POST", "/sso/acme/saml/acs"),
    ("GET", "/sso/acme/oidc/callback"), ("GET", "/me"), ("GET", "/healthz"),
    ("GET", "/auth/verify"), ("POST", "/scim/v2/acme/Users"),
    ("PATCH", "/scim/v2/acme/Users/42"), ("GET", "/admin/users/7"),
])
def test_the_hot_routes_are_in_the_index(routes: list[BaseRoute], method: str,
                                         path: str) -> None:
    found = _index(routes).find(_scope(method, path))
    assert found is not None and found[0] is _router_choice(routes, _scope(method, path))


def test_the_index_stops_at_the_first_route_it_cannot_file() -> None:
    """A route whose first segment is a parameter, a mount: everything from there on is the
    router's, even a plain route behind them (it could be shadowed)."""

    async def endpoint(_request: Any) -> None:
        raise AssertionError

    first, second = Route("/a/{x}", endpoint), Route("/b", endpoint)
    catch_all, mount, behind = Route("/{page}", endpoint), Mount("/m", routes=[]), \
        Route("/c", endpoint)
    assert index_routes([first, second, catch_all, behind]) == {"a": (first,), "b": (second,)}
    assert index_routes([first, mount, behind]) == {"a": (first,)}
    assert leading_segment("/") == "" and leading_segment("/sso/{c}/login") == "sso"
    assert leading_segment("/{tenant}/x") is None and leading_segment("/x{y}") is None


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths of the routes tried, in order, by any route matching."""
    tried: list[str] = []
    matches = Route.matches

    def counting(self: Route, scope: Any) -> Any:
        tried.append(self.path)
        return matches(self, scope)

    monkeypatch.setattr(Route, "matches", counting)
    yield tried


def test_a_request_tries_only_the_routes_of_its_first_segment(
        ctx: ServiceContext, counted: list[str]) -> None:
    """Through the app: ``/healthz`` stood behind thirty-two routes; with the index it tries
    its own, and ``/me`` tries ``/me`` only."""
    with make_client(ctx) as client:
        counted.clear()
        assert client.get("/healthz").status_code == 200
        assert counted == ["/healthz"]
        counted.clear()
        assert client.get("/me").status_code in (302, 303, 401)
        assert counted == ["/me"]


def test_what_the_index_does_not_match_the_router_answers_as_before(
        ctx: ServiceContext) -> None:
    """A wrong method's 405, the trailing slash's redirect, a 404, HEAD of a GET route."""
    client: TestClient
    with make_client(ctx) as client:
        assert client.post("/healthz").status_code == 405
        assert client.head("/healthz").status_code == 200
        moved = client.get("/healthz/", follow_redirects=False)
        assert moved.status_code in (307, 308)
        assert moved.headers["location"].endswith("/healthz")
        assert client.get("/no-such-page").status_code == 404
        assert client.get("/api/tenants").status_code == 401  # behind the index


def test_the_index_stands_aside_for_a_router_it_cannot_follow() -> None:
    """A router with middleware of its own (a hit would skip it) keeps its dispatch; a route
    added after the index was made sends every request to the router."""
    from starlette.middleware import Middleware

    from jitprov.web import route_index

    async def endpoint(_request: Any) -> None:
        raise AssertionError

    class Noop:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    wrapped = Router(routes=[Route("/a", endpoint)], middleware=[Middleware(Noop)])
    route_index.install(wrapped)
    assert not isinstance(wrapped.middleware_stack, RouteIndex)
    plain = Router(routes=[Route("/a", endpoint)])
    route_index.install(plain)
    index = plain.middleware_stack
    assert isinstance(index, RouteIndex) and index.find(_scope("GET", "/a")) is not None
    plain.routes.insert(0, Route("/a", endpoint))  # would now be the router's choice
    assert index.find(_scope("GET", "/a")) is None
