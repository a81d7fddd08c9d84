"""No page of jitprov may be framed by another site (clickjacking a Sign-in, Approve or
Sign-out button): every HTML response carries ``X-Frame-Options: DENY`` (older browsers) and
the CSP directive ``frame-ancestors 'none'``.

A page that sets its own Content-Security-Policy keeps it: the directive is appended to it
(a policy that already names ``frame-ancestors`` is left as its page chose). A page without
one gets a policy holding only that directive, which restricts nothing else: ``/api/docs``
still loads its Swagger UI assets and inline script.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FRAME_ANCESTORS = "frame-ancestors 'none'"
#: the headers of an HTML response that has none of its own (see ``frame_headers``)
FRAMING_HEADERS: dict[str, str] = {"X-Frame-Options": "DENY",
                                   "Content-Security-Policy": FRAME_ANCESTORS}

_HTML_TYPES = (b"text/html", b"application/xhtml+xml", b"image/svg+xml")
_CSP = b"content-security-policy"
_XFO = b"x-frame-options"


def with_frame_ancestors(policy: str) -> str:
    """``policy`` with ``frame-ancestors 'none'`` appended unless it names frame-ancestors."""
    directives = [d.strip() for d in policy.split(";") if d.strip()]
    if any(d.split()[0].lower() == "frame-ancestors" for d in directives):
        return policy
    return "; ".join([*directives, FRAME_ANCESTORS])


def frame_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Raw ASGI response ``headers`` with the anti-framing headers merged in, when the
    response is HTML; unchanged otherwise."""
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    if not content_type.lower().lstrip().startswith(_HTML_TYPES):
        return headers
    merged: list[tuple[bytes, bytes]] = []
    has_csp = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == _XFO:
            continue
        if lowered == _CSP:
            has_csp = True
            value = with_frame_ancestors(value.decode("latin-1")).encode("latin-1")
        merged.append((name, value))
    merged.append((_XFO, b"DENY"))
    if not has_csp:
        merged.append((_CSP, FRAME_ANCESTORS.encode()))
    return merged


class NoFraming:
    """Pure ASGI middleware: ``frame_headers`` on every HTTP response, whoever produced it
    (a page, the console, FastAPI's docs, an error handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_framed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = frame_headers(list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, send_framed)
