"""An ASGI middleware (Starlette, FastAPI, any ASGI app): the verified identity of a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread  # a dependency of httpx: always installed with it

from jitprov_client.verify import (
    HEADER,
    Identity,
    IdentityVerifier,
    InvalidIdentity,
    single_token,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class JitprovMiddleware:
    """Verifies the token header (``X-Jitprov-Token``) of HTTP requests and WebSocket
    handshakes and puts the Identity (or None) in ``scope["state"]["jitprov_identity"]``
    (``request.state.jitprov_identity`` / ``websocket.state`` in Starlette). With
    ``required=True``, without a valid token, an HTTP request is answered 401 and a
    WebSocket handshake is refused: 403 where the server offers the
    ``websocket.http.response`` extension, else closed with code 1008 (policy violation),
    which the server answers with 403. A header given twice, or with a comma, is no token.
    Other scopes (``lifespan``) go through. Plain ``X-Jitprov-*`` headers are never
    read."""

    def __init__(self, app: ASGIApp, verifier: IdentityVerifier, *, required: bool = False,
                 header: str = HEADER) -> None:
        self.app = app
        self.verifier = verifier
        self.required = required
        self.header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = single_token(v.decode("latin-1") for k, v in scope.get("headers", [])
                             if k.lower() == self.header)
        try:  # verification may fetch keys: keep it off the event loop
            identity: Identity | None = await anyio.to_thread.run_sync(self.verifier.verify,
                                                                       token)
        except InvalidIdentity:
            identity = None
        if identity is None and self.required:
            if scope["type"] == "websocket":
                await _refuse_websocket(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthenticated"})
            return
        scope.setdefault("state", {})["jitprov_identity"] = identity
        await self.app(scope, receive, send)


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a WebSocket handshake (ASGI spec, WebSocket "Connect" and "Close"; the
    "Websocket Denial Response" extension): after ``websocket.connect``, a 403 response when
    the server offers it, else ``websocket.close`` with 1008 before accepting."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return  # the client went away
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "websocket.http.response.body", "body": b"unauthenticated"})
        return
    await send({"type": "websocket.close", "code": 1008})
