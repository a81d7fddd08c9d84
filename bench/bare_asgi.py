"""The HTTP floor of ``bench.e2e --profile``: an ASGI app that answers ``GET /healthz`` as
jitprov does (the same 15-byte JSON body) and does nothing else, served by the same uvicorn
(``--workers 2``, uvloop and httptools when installed, as ``jitprov serve``). Its CPU per
request is uvicorn's, the kernel's and the loopback's share of every request jitprov serves;
jitprov's own edge (middleware, routing, the request log line) is the difference."""

from __future__ import annotations

from typing import Any

_BODY = b'{"status":"ok"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"15")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        return
    found = scope["path"] == "/healthz"
    await send({"type": "http.response.start", "status": 200 if found else 404,
                "headers": _HEADERS if found else [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": _BODY if found else b""})
