"""JitprovMiddleware (ASGI), driven through httpx's ASGI transport: no web framework needed."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from jitprov_client import JitprovMiddleware
from jitprov_client.asgi import Receive, Scope, Send
from jitprov_stand_in import ACCOUNT, Issuer


async def whoami(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app answering the identity the middleware left in the scope."""
    if scope["type"] != "http":
        scope["seen"] = scope["type"]
        return
    who = scope["state"]["jitprov_identity"]
    body = json.dumps({"sub": who.sub if who else None,
                       "roles": sorted(who.roles) if who else []}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def get(app: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/", headers=headers)

    return anyio.run(call)


def test_required_refuses_without_a_valid_token_and_admits_with_one(issuer: Issuer) -> None:
    app = JitprovMiddleware(whoami, issuer.verifier(), required=True)
    assert get(app).status_code == 401
    assert get(app, {"X-Jitprov-Roles": "admin", "X-Jitprov-User": "x"}).status_code == 401
    assert get(app, {"X-Jitprov-Token": issuer.token(tenant="clinic")}).status_code == 401
    answer = get(app, {"X-Jitprov-Token": issuer.token()})
    assert (answer.status_code, answer.json()["roles"]) == (200, ["nurse", "staff"])


def test_optional_passes_the_request_on_with_no_identity(issuer: Issuer) -> None:
    app = JitprovMiddleware(whoami, issuer.verifier())
    assert get(app).json() == {"sub": None, "roles": []}
    assert get(app, {"X-Jitprov-Token": "forged"}).json() == {"sub": None, "roles": []}


def test_the_header_name_follows_the_proxy(issuer: Issuer) -> None:
    """A jitprov with JITPROV_FORWARD_AUTH_HEADER_PREFIX=X-Auth- passes X-Auth-Token."""
    app = JitprovMiddleware(whoami, issuer.verifier(), required=True, header="X-Auth-Token")
    assert get(app, {"X-Jitprov-Token": issuer.token()}).status_code == 401
    assert get(app, {"X-Auth-Token": issuer.token()}).status_code == 200


def test_lifespan_scopes_go_through_untouched(issuer: Issuer) -> None:
    app = JitprovMiddleware(whoami, issuer.verifier(), required=True)
    scope: dict[str, Any] = {"type": "lifespan"}

    async def nothing() -> dict[str, Any]:
        return {}

    async def drop(message: Any) -> None:
        raise AssertionError(message)

    anyio.run(app, scope, nothing, drop)
    assert scope["seen"] == "lifespan"
    assert issuer.fetches == 0


async def echo_identity(scope: Scope, receive: Receive, send: Send) -> None:
    """A WebSocket endpoint: accepts, sends who it is talking to, closes."""
    assert (await receive())["type"] == "websocket.connect"
    who = scope["state"]["jitprov_identity"]
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": who.sub if who else "nobody"})
    await send({"type": "websocket.close", "code": 1000})


def websocket(app: Any, headers: dict[str, str] | None = None, *,
              denial_response: bool = False) -> list[dict[str, Any]]:
    """The messages ``app`` sends for one WebSocket handshake, as an ASGI server drives it;
    ``denial_response``: the server offers the websocket.http.response extension."""
    scope: dict[str, Any] = {
        "type": "websocket", "path": "/ws", "scheme": "ws", "subprotocols": [],
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "extensions": {"websocket.http.response": {}} if denial_response else {}}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    anyio.run(app, scope, receive, send)
    return sent


def test_required_refuses_a_websocket_handshake_without_a_valid_token(
        issuer: Issuer) -> None:
    app = JitprovMiddleware(echo_identity, issuer.verifier(), required=True)
    assert websocket(app) == [{"type": "websocket.close", "code": 1008}]
    assert websocket(app, {"X-Jitprov-Token": issuer.token(tenant="clinic")}) == [
        {"type": "websocket.close", "code": 1008}]
    assert [m["type"] for m in websocket(app, denial_response=True)] == [
        "websocket.http.response.start", "websocket.http.response.body"]
    assert websocket(app, denial_response=True)[0]["status"] == 403
    assert websocket(app, {"X-Jitprov-Token": issuer.token()}) == [
        {"type": "websocket.accept"}, {"type": "websocket.send", "text": ACCOUNT},
        {"type": "websocket.close", "code": 1000}]


def test_optional_passes_a_websocket_on_with_its_identity_or_none(issuer: Issuer) -> None:
    app = JitprovMiddleware(echo_identity, issuer.verifier())
    assert websocket(app)[1] == {"type": "websocket.send", "text": "nobody"}
    assert websocket(app, {"X-Jitprov-Token": issuer.token()})[1]["text"] == ACCOUNT


def test_a_starlette_websocket_route_is_refused_without_a_token(issuer: Issuer) -> None:
    """The same through Starlette's test client, which offers the denial response: 403."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def ward(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(ws.state.jitprov_identity.sub)
        await ws.close()

    app = JitprovMiddleware(Starlette(routes=[WebSocketRoute("/ws", ward)]),
                            issuer.verifier(), required=True)
    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
            pass
        assert getattr(refused.value, "status_code", None) == 403
        with client.websocket_connect("/ws", headers={"X-Jitprov-Token": issuer.token()}) as ws:
            assert ws.receive_text() == ACCOUNT


def test_a_token_header_given_twice_is_no_token(issuer: Issuer) -> None:
    """A proxy that appends its X-Jitprov-Token after the client's, instead of replacing it,
    must not let the client's value win."""
    app = JitprovMiddleware(whoami, issuer.verifier(), required=True)
    token = issuer.token()

    async def call(headers: list[tuple[bytes, bytes]]) -> int:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": headers,
                 "query_string": b""}
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        return status[0]

    one = (b"x-jitprov-token", token.encode())
    assert anyio.run(call, [one]) == 200
    assert anyio.run(call, [one, one]) == 401
    assert anyio.run(call, [(b"x-jitprov-token", f"{token}, {token}".encode())]) == 401
